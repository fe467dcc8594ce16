"""The pre-tokenizer split pattern, with the choice of how runs of digits are cut.

``digits`` decides how numbers reach the subword model (Singh & Strouse 2024, "Tokenization counts:
the impact of tokenization on arithmetic in frontier LLMs", https://arxiv.org/abs/2402.14903):

=========  ==============================  ======================================================
``single``  every digit alone               1234567 -> 1|2|3|4|5|6|7 (LLaMA, PaLM)
``l2r3``    groups of 3 from the left       1234567 -> 123|456|7 (GPT-3.5/4's ``\\p{N}{1,3}``)
``r2l3``    groups of 3 from the right      1234567 -> 1|234|567 (aligned with place value, as
                                            when numbers are written with thousands separators)
=========  ==============================  ======================================================

The rest of the pattern is GPT-4's (contractions, letter runs with one leading non-letter,
punctuation runs, newlines, whitespace) with combining marks kept inside letter runs, so Indic and
other scripts with vowel signs are not split mid-word. The same string runs in HF ``tokenizers``
(Oniguruma) and in tiktoken (fancy-regex); ``tests/text/test_text_digits.py`` checks both agree.
"""

from __future__ import annotations

from zoo.errors import ZooError

# Oniguruma reads ``{1,3}+`` as "repeat {1,3} one or more times", not as a possessive quantifier:
# quantifier-plus is avoided on bounded repeats for that reason.
DIGIT_PATTERNS: dict[str, str] = {
    "single": r"\p{N}",
    "l2r3": r"\p{N}{1,3}",
    # A group of 1-3 digits followed by a whole number of 3-digit groups and then a non-digit:
    # the first group takes the remainder, every later group is full (checked by lookahead).
    "r2l3": r"\p{N}{1,3}(?=(?:\p{N}{3})*(?!\p{N}))",
}

_WORDS = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{M}\p{N}]?+[\p{L}\p{M}]++"
_REST = r" ?[^\s\p{L}\p{M}\p{N}]++[\r\n]*+|\s*[\r\n]|\s+(?!\S)|\s"


def split_pattern(digits: str = "l2r3") -> str:
    """The pre-tokenizer regex for a digit mode; every character of any text falls in some piece."""
    if digits not in DIGIT_PATTERNS:
        raise ZooError(f"digits must be one of {sorted(DIGIT_PATTERNS)}, got {digits!r}")
    return f"{_WORDS}|{DIGIT_PATTERNS[digits]}|{_REST}"


def byte_level_pre_tokenizer(pattern: str):
    """HF pre-tokenizer: split on ``pattern`` (matches kept as pieces), then map bytes to characters."""
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=False),
        ]
    )


def pre_tokenize(text: str, digits: str = "l2r3") -> list[str]:
    """The pieces ``text`` is cut into before the subword model sees it."""
    from tokenizers import Regex, pre_tokenizers

    splitter = pre_tokenizers.Split(Regex(split_pattern(digits)), behavior="isolated")
    return [piece for piece, _ in splitter.pre_tokenize_str(text)]
