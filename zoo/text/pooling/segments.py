"""Where a text's segments (the units that are pooled into one vector each) begin: the rule, and its byte offsets.

The rule is the word split of the byte-to-word line ("Learn Your Tokens", Thawani et al. 2023,
https://arxiv.org/abs/2310.11628; HAT, https://arxiv.org/abs/2501.10322): a segment is a run of word characters or a
run of punctuation, each with at most one leading space, or a run of whitespace (the last space of a run before a
word goes with the word, as in GPT-2's pre-tokenizer). Punctuation stands apart, so `" world"`, `" world,"` and
`" world!"` share one segment and the codebook is not spent on their variants.

Segments are byte strings (``zoo.text.base.text_to_bytes``, lone surrogates kept): one longer than
``max_bytes`` is cut into pieces of ``max_bytes``, possibly inside a character. Nothing needs the cuts to fall on
characters: decoding joins every segment's bytes before turning them back into text, so the split is lossless.
"""

from __future__ import annotations

import re

from zoo.errors import ZooError
from zoo.text.base import text_to_bytes

# Every character is \w, \s or neither, so the alternatives cover any string (the tests check it).
WORD_PATTERN = re.compile(r" ?\w+| ?[^\s\w]+|\s+(?!\S)|\s+")


def rule_segments(text: str) -> list[str]:
    """The text cut by the word rule (the module docstring); ``"".join`` of the result is ``text``."""
    return WORD_PATTERN.findall(text)


def cut_long(pieces: list[bytes], max_bytes: int) -> list[bytes]:
    """Pieces longer than ``max_bytes`` cut into ``max_bytes`` chunks (the last one shorter)."""
    out = []
    for piece in pieces:
        out += [piece[i : i + max_bytes] for i in range(0, len(piece), max_bytes)]
    return out


def rule_byte_segments(text: str, max_bytes: int) -> list[bytes]:
    """The text's segments by the word rule, as bytes of at most ``max_bytes``."""
    return cut_long([text_to_bytes(word) for word in rule_segments(text)], max_bytes)


def segment_starts(segments: list[bytes]) -> list[int]:
    """Byte offsets at which the segments begin (the first is 0 when there are any)."""
    starts, offset = [], 0
    for segment in segments:
        starts.append(offset)
        offset += len(segment)
    return starts


def rule_start_targets(data_segments: list[bytes]) -> list[float]:
    """One target per byte for a boundary predictor: 1.0 where a segment begins, else 0.0."""
    targets = [0.0] * sum(len(s) for s in data_segments)
    for start in segment_starts(data_segments):
        targets[start] = 1.0
    return targets


def split_at(data: bytes, starts: list[bool], max_bytes: int) -> list[bytes]:
    """``data`` cut before every byte flagged in ``starts`` (byte 0 always starts a segment), then cut to at most
    ``max_bytes`` per segment."""
    if len(starts) != len(data):
        raise ZooError(f"split_at: {len(starts)} boundary flags for {len(data)} bytes")
    pieces, begin = [], 0
    for index in range(1, len(data)):
        if starts[index]:
            pieces.append(data[begin:index])
            begin = index
    if data:
        pieces.append(data[begin:])
    return cut_long(pieces, max_bytes)
