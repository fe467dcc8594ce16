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

# GPT-2's byte-level regex (what ``ByteLevel(use_regex=True)`` applies), in tiktoken's spelling.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

# Real text in several scripts, digits, code and odd whitespace: a cheap agreement check at build time.
PROBE = (
    "The quick brown fox — it's 1234567 km/h, isn't it?  Yes!!\n\n\tdef f(x): return x ** 2  # ok\r\n"
    "Größenwahn und Übermut: 3,14159 € pro Stück. Ça coûte 12 345,67 € ; l'été dernier…\n"
    "Москва — столица России; в 2024 году 146 150 789 жителей.  Ёлка!\n"
    "東京は日本の首都です。人口は約1400万人。「こんにちは」と言った。\n"
    "नमस्ते दुनिया, यह एक परीक्षण है। العربية: مرحبا بالعالم ١٢٣٤ ελληνικά: Καλημέρα κόσμε\n"
    "emoji 🌍🎉👩‍👩‍👧 and    spaces   \u00a0nbsp\u3000ideographic\u2028line sep 0x1F 1e-9 ½ ² ⅷ\n"
)


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


def split_pattern(pre: dict | None) -> str | None:
    """The split regex of a byte-level ``tokenizer.json`` pre-tokenizer (tiktoken's spelling), or None when the
    pre-tokenizer is anything else."""
    if not pre:
        return None
    if pre.get("type") == "ByteLevel":
        return GPT2_PATTERN if pre.get("use_regex", True) and not pre.get("add_prefix_space") else None
    if pre.get("type") != "Sequence" or len(pre.get("pretokenizers", [])) != 2:
        return None
    split, byte_level = pre["pretokenizers"]
    if (
        split.get("type") != "Split"
        or "Regex" not in split.get("pattern", {})
        or split.get("behavior") != "Isolated"
        or split.get("invert")
        or byte_level.get("type") != "ByteLevel"
        or byte_level.get("use_regex", True)
        or byte_level.get("add_prefix_space")
    ):
        return None
    return split["pattern"]["Regex"]
