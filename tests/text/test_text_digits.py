"""The split pattern: digit modes, full coverage of any text, and agreement between regex engines."""

from __future__ import annotations

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.errors import ZooError
from zoo.text.digits import pre_tokenize, split_pattern


@pytest.mark.parametrize(
    "digits, expected",
    [
        ("single", ["1", "2", "3", "4", "5", "6", "7"]),
        ("l2r3", ["123", "456", "7"]),
        ("r2l3", ["1", "234", "567"]),
    ],
)
def test_digit_modes_split_1234567(digits, expected):
    assert pre_tokenize("1234567", digits) == expected


def test_r2l3_aligns_every_run_to_place_value():
    assert pre_tokenize("12 1234 123456 ١٢٣٤", "r2l3") == ["12", " ", "1", "234", " ", "123", "456", " ", "١", "٢٣٤"]
    assert pre_tokenize("x12345y", "r2l3") == ["x", "12", "345", "y"]
    assert pre_tokenize("3.14159", "r2l3") == ["3", ".", "14", "159"]


def test_words_keep_leading_space_and_marks():
    assert pre_tokenize("Hello world, naïve नमस्ते!", "l2r3") == ["Hello", " world", ",", " naïve", " नमस्ते", "!"]
    assert pre_tokenize("don't\n\n  x", "l2r3") == ["don", "'t", "\n\n", " ", " x"]


def test_unknown_digit_mode_is_an_error():
    with pytest.raises(ZooError, match="digits must be one of"):
        split_pattern("r2l4")


# Characters assigned in the interpreter's Unicode version: engines with newer tables agree on them
# (unassigned code points may be letters to one engine and not to another).
text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cn"]), max_size=40)


@settings(max_examples=300, deadline=None)
@given(text=text, digits=st.sampled_from(["single", "l2r3", "r2l3"]))
def test_pieces_cover_the_text_in_both_engines(text, digits):
    # tokenizers (Oniguruma) keeps unmatched gaps, tiktoken's fancy-regex drops them: the pattern must
    # match every character so the two agree and nothing is lost (Python's regex stands in for the
    # second engine here; tests/text/test_text_fast.py compares tiktoken's ids directly).
    pieces = pre_tokenize(text, digits)
    assert "".join(pieces) == text
    assert regex.findall(split_pattern(digits), text) == pieces
