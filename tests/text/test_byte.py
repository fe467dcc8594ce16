"""The byte tokenizer: exact ids, specials, lone surrogates, invalid byte sequences."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import zoo
from zoo.errors import ZooError


def test_ids_are_utf8_bytes():
    tok = zoo.load("byte")
    assert tok.encode("hé") == [104, 195, 169]
    assert tok.encode(["a", ""]) == [[97], []]
    assert tok.vocab_size == 259


def test_specials_wrap_and_are_dropped_on_decode():
    tok = zoo.load("byte", add_special_tokens=True)
    assert tok.encode("a") == [257, 97, 258]
    assert tok.decode([257, 97, 258, 256]) == "a"
    assert tok.token_strings([257, 97]) == ["<bos>", "a"]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40))
def test_lossless_including_lone_surrogates(text):
    tok = zoo.load("byte")
    assert tok.decode(tok.encode(text)) == text


def test_adjacent_surrogates_stay_two_code_points():
    tok = zoo.load("byte")
    pair = "\ud83c\udf0d"  # two lone surrogates, not the code point U+1F30D
    assert tok.decode(tok.encode(pair)) == pair and tok.decode(tok.encode("🌍")) == "🌍"


def test_invalid_utf8_decodes_to_replacement_characters():
    tok = zoo.load("byte")
    assert tok.decode([0xFF, 97, 0xC3]) == "\ufffda\ufffd"


@pytest.mark.parametrize(("ids", "message"), [([300], r"ints in \[0, 259\)"), ([-1], "got -1"), (["a"], "got 'a'")])
def test_bad_ids(ids, message):
    with pytest.raises(ZooError, match=message):
        zoo.load("byte").decode(ids)


def test_bad_input_type():
    with pytest.raises(ZooError, match="expected a str or a list of str, got int"):
        zoo.load("byte").encode(5)
