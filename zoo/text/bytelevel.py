"""The byte-level alphabet shared by GPT-2-style tokenizers, and the lone-surrogate splitter.

Byte-level tokenizers write every byte as one printable character (GPT-2's ``bytes_to_unicode``:
printable Latin-1 bytes stand for themselves, the other 68 bytes map to U+0100 onwards), so a
vocabulary of strings covers all 256 bytes and is lossless on any UTF-8 text. HF ``tokenizers``
(``pre_tokenizers.ByteLevel``) uses this same table; zoo decodes through it itself, byte-exact.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from zoo.text.base import text_to_bytes


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (https://github.com/openai/gpt-2, encoder.py).

    Printable Latin-1 bytes stand for themselves; the 68 others (controls, space, NBSP, soft hyphen)
    take the code points 256, 257, ... in byte order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_TO_CHAR: dict[int, str] = _bytes_to_unicode()
CHAR_TO_BYTE: dict[str, int] = {c: b for b, c in BYTE_TO_CHAR.items()}
ALPHABET: list[str] = [BYTE_TO_CHAR[b] for b in range(256)]


def to_byte_chars(data: bytes) -> str:
    """Bytes as byte-level characters (``b" a" -> "Ġa"``)."""
    return "".join(BYTE_TO_CHAR[b] for b in data)


def from_byte_chars(token: str) -> bytes | None:
    """Inverse of ``to_byte_chars``; None when ``token`` holds a character outside the alphabet."""
    try:
        return bytes(CHAR_TO_BYTE[c] for c in token)
    except KeyError:
        return None


_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def encode_keeping_surrogates(text: str, encode_valid: Callable[[str], list[int]], byte_ids: list[int]) -> list[int]:
    """Encode ``text`` with ``encode_valid`` (an engine that needs valid Unicode), writing each lone
    surrogate as the byte tokens of its 3-byte generalised UTF-8 form (the policy of ``zoo.text.base``).

    The surrogate is a hard boundary: the text on each side is encoded on its own.
    """
    if not has_lone_surrogate(text):
        return encode_valid(text)
    ids: list[int] = []
    start = 0
    for match in _SURROGATE.finditer(text):
        if match.start() > start:
            ids += encode_valid(text[start : match.start()])
        ids += [byte_ids[b] for b in text_to_bytes(match.group())]
        start = match.end()
    if start < len(text):
        ids += encode_valid(text[start:])
    return ids
