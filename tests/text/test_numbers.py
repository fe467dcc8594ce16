"""NumberTokenizer: the three digit groupings by hand, agreement with zoo.text.digits, one shared id layout,
lossless round trips on arithmetic and on any text, and the registry entries."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import zoo
from zoo.errors import ZooError
from zoo.text.digits import pre_tokenize
from zoo.text.numbers import GROUPINGS, NumberTokenizer, group_digits

DIGITS_MODE = {"1": "single", "l2r3": "l2r3", "r2l3": "r2l3"}  # the same cuts, as zoo.text.digits names them


@pytest.mark.parametrize(("grouping", "expected"), [
    ("1", ["1", "2", "3", "4", "5", "6", "7"]),
    ("l2r3", ["123", "456", "7"]),
    ("r2l3", ["1", "234", "567"]),
])
def test_a_seven_digit_number_is_cut_as_the_paper_shows(grouping, expected):
    assert group_digits("1234567", grouping) == expected
    assert NumberTokenizer(grouping).pieces("1234567") == expected


def test_r2l3_aligns_groups_with_place_value_and_l2r3_does_not():
    # 12345 + 678 = 13023: right-to-left, every group below the top one is a whole power of 1000.
    r2l, l2r = NumberTokenizer("r2l3"), NumberTokenizer("l2r3")
    assert r2l.pieces("12345+678=13023") == ["12", "345", "+", "678", "=", "13", "023"]
    assert l2r.pieces("12345+678=13023") == ["123", "45", "+", "678", "=", "130", "23"]
    for length in range(1, 13):
        run = "9" * length
        assert all(len(piece) == 3 for piece in group_digits(run, "r2l3")[1:])
        assert all(len(piece) == 3 for piece in group_digits(run, "l2r3")[:-1])
        assert "".join(group_digits(run, "r2l3")) == "".join(group_digits(run, "l2r3")) == run


@pytest.mark.parametrize("grouping", GROUPINGS)
def test_digit_runs_are_cut_as_the_byte_level_pre_tokenizer_cuts_them(grouping):
    tok = NumberTokenizer(grouping)
    for text in ["0", "10", "999", "1000", "12345678901", "1+22=23", "4096*512=2097152", "007+0=7"]:
        expected = [piece for piece in pre_tokenize(text, DIGITS_MODE[grouping])]
        assert tok.pieces(text) == expected, text


def test_ids_follow_the_documented_layout_and_are_shared_by_every_grouping():
    tok = NumberTokenizer("r2l3")
    assert tok.vocab_size == 1368 and (tok.pad_id, tok.eos_id) == (1366, 1367)
    assert tok.encode("+*=") == [43, 42, 61]  # bytes
    assert tok.encode("7") == [263] and tok.encode("05") == [271] and tok.encode("007") == [373]
    assert tok.encode("1234") == [257, 600]  # "1" -> 256 + 1, "234" -> 366 + 234
    ids = {grouping: NumberTokenizer(grouping).encode("1234+5=1239") for grouping in GROUPINGS}
    assert ids["1"] == [257, 258, 259, 260, 43, 261, 61, 257, 258, 259, 265]
    assert ids["l2r3"] == [489, 260, 43, 261, 61, 489, 265]  # "123" -> 366 + 123
    assert NumberTokenizer("l2r3").token_strings(ids["l2r3"]) == ["123", "4", "+", "5", "=", "123", "9"]


def test_leading_zeros_survive_and_specials_decode_to_nothing():
    tok = NumberTokenizer("l2r3")
    assert tok.decode(tok.encode("0000012")) == "0000012"
    assert tok.decode([257, tok.eos_id, 258, tok.pad_id]) == "12"
    assert tok.token_bytes([257, 43, tok.eos_id]) == [b"1", b"+", b""]


@pytest.mark.parametrize("grouping", GROUPINGS)
@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet="0123456789+*=", max_size=40))
def test_arithmetic_text_round_trips(grouping, text):
    tok = NumberTokenizer(grouping)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert "".join(tok.token_strings(ids)) == text  # every id stands for whole characters here


@pytest.mark.parametrize("grouping", GROUPINGS)
@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=30))
def test_any_text_round_trips_through_the_byte_fallback(grouping, text):
    tok = NumberTokenizer(grouping)
    assert tok.decode(tok.encode(text)) == text


def test_other_unicode_digits_are_bytes_not_number_pieces():
    tok = NumberTokenizer("r2l3")
    assert tok.encode("١٢") == list("١٢".encode())  # Arabic-Indic digits: not ASCII 0-9
    assert tok.decode(tok.encode("héllo 🌍 12")) == "héllo 🌍 12"


def test_bad_groupings_and_ids_are_refused_with_what_was_expected():
    with pytest.raises(ZooError, match=r"grouping must be one of \['1', 'l2r3', 'r2l3'\], got 'r2l4'"):
        NumberTokenizer("r2l4")
    with pytest.raises(ZooError, match="grouping must be one of"):
        group_digits("123", "single")
    with pytest.raises(ZooError, match=r"ids must be ints in \[0, 1368\), got 1368"):
        NumberTokenizer().decode([1368])


@pytest.mark.parametrize(("name", "grouping"), [("numbers-digits", "1"), ("numbers-l2r3", "l2r3"),
                                                ("numbers-r2l3", "r2l3")])
def test_registry_entries_build_their_grouping_without_weights(name, grouping, tmp_path):
    tok = zoo.load(name, pretrained=True)
    assert isinstance(tok, NumberTokenizer) and tok.grouping == grouping and tok.config == {"grouping": grouping}
    tok.save_pretrained(tmp_path / name)
    again = zoo.load(tmp_path / name)
    assert again.encode("98765+4321=103086") == tok.encode("98765+4321=103086")
