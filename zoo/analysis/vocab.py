"""Reading other people's vocabularies: HF ``tokenizer.json``, tiktoken files and zoo tokenizers.

Both analyses here need a tokenizer's tokens as *bytes*: mixture inference replays a BPE's merges
on byte strings, and embedding transfer matches tokens of two vocabularies by their bytes. Byte-level
BPEs (GPT-2, Llama 3, tiktoken) write bytes as printable characters (GPT-2's ``bytes_to_unicode``
table: ``" "`` is ``"Ġ"``); ``BYTE_TO_CHAR`` / ``CHAR_TO_BYTE`` translate both ways, and every
byte string in this package is kept in that alphabet so that merges and pieces compare as ``str``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from zoo.errors import ZooError


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (https://github.com/openai/gpt-2, encoder.py).

    Printable Latin-1 bytes stand for themselves; the 68 others (controls, space, NBSP, soft hyphen)
    take the code points 256, 257, ... in byte order.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


BYTE_TO_CHAR: dict[int, str] = _byte_alphabet()
CHAR_TO_BYTE: dict[str, int] = {c: b for b, c in BYTE_TO_CHAR.items()}


def bytes_to_symbols(data: bytes) -> str:
    """Bytes written in the byte-level alphabet, one character per byte."""
    return "".join(BYTE_TO_CHAR[b] for b in data)


def symbols_to_bytes(symbols: str) -> bytes:
    try:
        return bytes(CHAR_TO_BYTE[c] for c in symbols)
    except KeyError as err:
        raise ZooError(f"{symbols!r} is not written in the byte-level alphabet (character {err.args[0]!r})") from None


def is_byte_level(tokenizer_json: dict) -> bool:
    """True when a ``tokenizer.json`` pre-tokenizes or decodes with ByteLevel (GPT-2 style)."""

    def mentions(node: Any) -> bool:
        if isinstance(node, dict):
            return node.get("type") == "ByteLevel" or any(mentions(v) for v in node.values())
        if isinstance(node, list):
            return any(mentions(v) for v in node)
        return False

    return mentions(tokenizer_json.get("pre_tokenizer")) or mentions(tokenizer_json.get("decoder"))


def find_tokenizer_json(spec: str | Path) -> Path | None:
    """The ``tokenizer.json`` a spec points at: the file itself, or one inside a (zoo checkpoint) folder."""
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".json":
        return path
    if path.is_dir() and (path / "tokenizer.json").is_file():
        return path / "tokenizer.json"
    return None


def load_zoo_tokenizer(spec: str | Path):
    """A zoo text tokenizer from a checkpoint folder or a registry name (pretrained when it ships weights)."""
    import zoo

    path = Path(spec).expanduser()
    if path.is_dir():
        tokenizer = zoo.load(path)
    else:
        try:
            entry = zoo.registry.get(str(spec))
        except ZooError as err:
            raise ZooError(
                f"tokenizer {str(spec)!r}: not a tokenizer.json, a .tiktoken file, a checkpoint folder "
                f"or a registry name ({err})"
            ) from None
        tokenizer = zoo.load(str(spec), pretrained=entry.pretrained)
    if getattr(tokenizer, "modality", None) != "text":
        raise ZooError(f"tokenizer {str(spec)!r} is a {tokenizer.modality} tokenizer; expected a text tokenizer")
    return tokenizer


def hf_json_of_zoo_tokenizer(tokenizer) -> dict | None:
    """The ``tokenizer.json`` a zoo text tokenizer saves (tokenizers built on HF ``tokenizers`` do), or None."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            tokenizer.save_pretrained(tmp)
        except ZooError:
            return None
        path = Path(tmp) / "tokenizer.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ZooError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(data, dict) or "model" not in data:
        raise ZooError(f"{path}: not a Hugging Face tokenizer.json (no 'model' section)")
    return data
