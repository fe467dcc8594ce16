"""Reading other people's vocabularies: HF ``tokenizer.json``, tiktoken files and zoo tokenizers.

Both analyses here need a tokenizer's tokens as *bytes*: mixture inference replays a BPE's merges
on byte strings, and embedding transfer matches tokens of two vocabularies by their bytes. Byte-level
BPEs (GPT-2, Llama 3, tiktoken) write bytes as printable characters (GPT-2's ``bytes_to_unicode``
table: ``" "`` is ``"Ġ"``, held once in ``zoo.text.bytelevel``); ``bytes_to_symbols`` / ``symbols_to_bytes``
translate both ways, and every byte string in this package is kept in that alphabet so that merges and
pieces compare as ``str``.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.text.bytelevel import CHAR_TO_BYTE, from_byte_chars, to_byte_chars

# The analyses' name for the byte-level spelling of bytes (zoo.text.bytelevel holds the one table).
bytes_to_symbols = to_byte_chars


def symbols_to_bytes(symbols: str) -> bytes:
    """Inverse of ``bytes_to_symbols``; an error names the first character outside the byte-level alphabet."""
    data = from_byte_chars(symbols)
    if data is None:
        stray = next(c for c in symbols if c not in CHAR_TO_BYTE)
        raise ZooError(f"{symbols!r} is not written in the byte-level alphabet (character {stray!r})")
    return data


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
    from zoo.loading import load_tokenizer

    try:
        tokenizer = load_tokenizer(spec)
    except ZooError as err:
        raise ZooError(f"tokenizer {str(spec)!r}: not a tokenizer.json, a .tiktoken file, a checkpoint folder "
                       f"or a registry name ({err})") from None
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


_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_METASPACE = "▁"


class Vocabulary:
    """A tokenizer seen as bytes: each id's byte string, its special tokens, and its splits of new strings.

    Built from an HF ``tokenizers.Tokenizer`` (byte-level BPEs exactly; SentencePiece-style ``▁`` and
    ``<0xNN>`` tokens by their text) or, for zoo tokenizers without a ``tokenizer.json``, from
    ``decode`` / ``encode``. Special tokens have no bytes; they match by their text.
    """

    def __init__(self, size: int, token_bytes: list[bytes | None], specials: dict[str, int], split, encode, name: str):
        self.size = size
        self.token_bytes = token_bytes
        self.specials = specials
        self._split = split
        self._encode = encode
        self.name = name

    def split(self, data: bytes) -> list[int]:
        """This vocabulary's ids for a byte string (the model's own segmentation, no pre-tokenization)."""
        return self._split(data) if data else []

    def encode(self, text: str) -> list[int]:
        """The tokenizer's ids for text, without added special tokens."""
        return self._encode(text)

    def symbol(self, token_id: int) -> str | None:
        """A whitespace-free string naming the token (its bytes in the byte-level alphabet), e.g. for fastText."""
        data = self.token_bytes[token_id]
        if data is not None:
            return bytes_to_symbols(data)
        names = {i: s for s, i in self.specials.items()}
        return names.get(token_id)

    def index(self) -> dict[bytes, int]:
        """bytes -> lowest id with those bytes."""
        found: dict[bytes, int] = {}
        for i, data in enumerate(self.token_bytes):
            if data is not None:
                found.setdefault(data, i)
        return found

    @classmethod
    def from_hf(cls, tokenizer, name: str = "tokenizer.json") -> Vocabulary:
        data = json.loads(tokenizer.to_str())
        byte_level = is_byte_level(data)
        size = tokenizer.get_vocab_size(with_added_tokens=True)
        token_bytes: list[bytes | None] = [None] * size
        specials: dict[str, int] = {}
        added = tokenizer.get_added_tokens_decoder()
        for token, i in tokenizer.get_vocab(with_added_tokens=True).items():
            if i >= size:
                size = i + 1
                token_bytes.extend([None] * (size - len(token_bytes)))
            if i in added:
                if added[i].special:
                    specials[token] = i
                else:
                    token_bytes[i] = token.encode("utf-8")
            elif byte_level:
                token_bytes[i] = symbols_to_bytes(token)
            elif match := _BYTE_FALLBACK.match(token):
                token_bytes[i] = bytes([int(match.group(1), 16)])
            else:
                token_bytes[i] = token.replace(_METASPACE, " ").encode("utf-8")
        model = tokenizer.model

        def split(piece: bytes) -> list[int]:
            if byte_level:
                return [t.id for t in model.tokenize(bytes_to_symbols(piece))]
            text = piece.decode("utf-8", errors="replace").replace(" ", _METASPACE)
            return [t.id for t in model.tokenize(text)]

        def encode(text: str) -> list[int]:
            return tokenizer.encode(text, add_special_tokens=False).ids

        return cls(size, token_bytes, specials, split, encode, name)

    @classmethod
    def from_zoo(cls, tokenizer, name: str) -> Vocabulary:
        """Any zoo text tokenizer, through ``decode`` of single ids and ``encode`` of text."""
        from zoo.text.base import bytes_to_text, text_to_bytes

        token_bytes: list[bytes | None] = []
        for i in range(tokenizer.vocab_size):
            text = tokenizer.decode([i])
            token_bytes.append(text_to_bytes(text) if text else None)
        specials = {}
        if hasattr(tokenizer, "special_ids"):
            specials = {str(k): int(v) for k, v in tokenizer.special_ids.items()}
            for i in specials.values():
                token_bytes[i] = None
        if type(tokenizer).__name__ == "ByteTokenizer":  # single bytes >= 0x80 do not decode alone
            for i in range(256):
                token_bytes[i] = bytes([i])
        return cls(
            tokenizer.vocab_size,
            token_bytes,
            specials,
            lambda piece: tokenizer.encode(bytes_to_text(piece)),
            tokenizer.encode,
            name,
        )


def load_vocabulary(spec) -> Vocabulary:
    """A ``Vocabulary`` from a tokenizer.json, a folder holding one, a zoo checkpoint folder or registry name,
    an HF ``tokenizers.Tokenizer`` or a zoo text tokenizer object."""
    from tokenizers import Tokenizer

    if isinstance(spec, Tokenizer):
        return Vocabulary.from_hf(spec, "tokenizer")
    if hasattr(spec, "encode") and getattr(spec, "modality", None) == "text":
        data = hf_json_of_zoo_tokenizer(spec)
        name = type(spec).__name__
        return (
            Vocabulary.from_hf(Tokenizer.from_str(json.dumps(data)), name) if data else Vocabulary.from_zoo(spec, name)
        )
    json_path = find_tokenizer_json(spec)
    if json_path is not None:
        read_json(json_path)
        return Vocabulary.from_hf(Tokenizer.from_file(str(json_path)), str(json_path))
    path = Path(spec).expanduser()
    if path.suffix == ".json":
        raise ZooError(f"tokenizer {str(spec)!r}: file does not exist")
    return load_vocabulary(load_zoo_tokenizer(spec))
