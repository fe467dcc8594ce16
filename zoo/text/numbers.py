"""A small fixed-vocabulary tokenizer for arithmetic text, with the choice of how runs of digits are grouped.

Singh & Strouse 2024, "Tokenization counts: the impact of tokenization on arithmetic in frontier LLMs"
(https://arxiv.org/abs/2402.14903), compare the same numbers cut three ways; ``grouping`` picks one:

=========  ==============================  ==========================================================
``1``      every digit alone               1234567 -> 1|2|3|4|5|6|7
``l2r3``   groups of 3 from the left       1234567 -> 123|456|7 (GPT-3.5/4's ``\\p{N}{1,3}``)
``r2l3``   groups of 3 from the right      1234567 -> 1|234|567 (aligned with place value)
=========  ==============================  ==========================================================

The cuts are those of ``zoo.text.digits`` (``single`` / ``l2r3`` / ``r2l3``) on ASCII digit runs; the tests check
both agree. One vocabulary serves all three groupings, so models trained on them have the same size and only
the segmentation differs:

==============  ==================================================================================
ids 0-255       UTF-8 bytes: everything that is not an ASCII digit (``+``, ``*``, ``=`` included)
ids 256-265     the digit pieces ``0`` .. ``9``
ids 266-365     the two-digit pieces ``00`` .. ``99`` (a left-to-right run ends in one: 12345 -> 123|45)
ids 366-1365    the three-digit pieces ``000`` .. ``999``
1366, 1367      ``<pad>``, ``<eos>``: never produced by ``encode``; ``decode`` drops them
==============  ==================================================================================

Text outside the arithmetic alphabet falls back to bytes, so ``decode(encode(s)) == s`` holds for every Python
string, lone surrogates included (``zoo.text.base``), as the text contract asks. Only ASCII ``0-9`` are
grouped (other Unicode digits are bytes), and pieces with leading zeros (``05``, ``007``) are ids of their own,
distinct from ``5`` and ``7``: a piece is its characters, not its value.
"""

from __future__ import annotations

import re
from typing import ClassVar

from zoo.errors import ZooError
from zoo.text.base import TextTokenizer, bytes_to_text, text_to_bytes

GROUPINGS = ("1", "l2r3", "r2l3")
SPECIAL_TOKENS = ("<pad>", "<eos>")
_PIECE_WIDTHS = (1, 2, 3)
# The first id of the pieces of each width: 256 for "0".."9", then 266 for "00".."99", then 366 for "000".."999".
_FIRST_ID = {1: 256, 2: 266, 3: 366}
_NUMBER_END = 1366
_DIGIT_RUN = re.compile(r"[0-9]+")


def group_digits(run: str, grouping: str) -> list[str]:
    """The pieces a run of ASCII digits is cut into: ``group_digits("1234567", "r2l3") == ["1", "234", "567"]``."""
    if grouping == "1":
        return list(run)
    if grouping == "l2r3":
        return [run[i : i + 3] for i in range(0, len(run), 3)]
    if grouping == "r2l3":
        head = len(run) % 3 or 3  # the leftmost group takes the remainder; every later group is full
        return [run[:head]] + [run[i : i + 3] for i in range(head, len(run), 3)]
    raise ZooError(f"grouping must be one of {list(GROUPINGS)}, got {grouping!r}")


class NumberTokenizer(TextTokenizer):
    """Digits grouped by ``grouping`` (``"1"``, ``"l2r3"`` or ``"r2l3"``) as number pieces; all else as bytes."""

    requires_weights: ClassVar[bool] = False

    def __init__(self, grouping: str = "1"):
        if grouping not in GROUPINGS:
            raise ZooError(f"NumberTokenizer: grouping must be one of {list(GROUPINGS)}, got {grouping!r}")
        self.grouping = grouping
        self.special_ids = {token: _NUMBER_END + i for i, token in enumerate(SPECIAL_TOKENS)}
        self._pieces = [f"{value:0{width}d}" for width in _PIECE_WIDTHS for value in range(10**width)]

    @property
    def vocab_size(self) -> int:
        return _NUMBER_END + len(SPECIAL_TOKENS)

    @property
    def eos_id(self) -> int:
        return self.special_ids["<eos>"]

    @property
    def pad_id(self) -> int:
        return self.special_ids["<pad>"]

    def _segments(self, text: str):
        """``(is_number_piece, string)`` in order: each digit group, and the text between digit runs."""
        start = 0
        for match in _DIGIT_RUN.finditer(text):
            if match.start() > start:
                yield False, text[start : match.start()]
            for piece in group_digits(match.group(), self.grouping):
                yield True, piece
            start = match.end()
        if start < len(text):
            yield False, text[start:]

    def pieces(self, text: str) -> list[str]:
        """``text`` cut into the strings its ids stand for: digit groups, and every other character alone."""
        return [p for number, segment in self._segments(text) for p in ([segment] if number else list(segment))]

    def encode_one(self, text: str) -> list[int]:
        ids: list[int] = []
        for number, segment in self._segments(text):
            if number:
                ids.append(_FIRST_ID[len(segment)] + int(segment))
            else:
                ids.extend(text_to_bytes(segment))
        return ids

    def decode_one(self, ids: list[int]) -> str:
        # Bytes between number pieces are gathered first: a character of several bytes spans several ids.
        out, pending = [], bytearray()
        for i in ids:
            if i < 256:
                pending.append(i)
            elif i < _NUMBER_END:
                out.append(bytes_to_text(bytes(pending)))
                pending.clear()
                out.append(self._pieces[i - 256])
        out.append(bytes_to_text(bytes(pending)))
        return "".join(out)

    def token_bytes(self, ids: list[int]) -> list[bytes]:
        return [bytes([i]) if i < 256 else self._pieces[i - 256].encode() if i < _NUMBER_END else b"" for i in ids]

    def token_strings(self, ids: list[int]) -> list[str]:
        names = {v: k for k, v in self.special_ids.items()}
        return [names[i] if i in names else bytes([i]).decode("latin-1") if i < 256 else self._pieces[i - 256]
                for i in ids]
