"""What every text tokenizer shares: batching, id checks and the lone-surrogate policy.

Lone surrogates (``"\\ud800"``) are Python strings but not Unicode text, so no UTF-8 encoder accepts
them. zoo's policy: byte-level tokenizers keep them, writing each as its 3-byte generalised UTF-8
form (``surrogatepass``), so ``decode(encode(s)) == s`` holds for every Python string; tokenizers
whose engine needs valid Unicode reject them with an error naming the position.
"""

from __future__ import annotations

import codecs
from abc import abstractmethod
from typing import ClassVar

from zoo.errors import ZooError
from zoo.tokenizer import Tokenizer


def _surrogatepass_or_replace(err: UnicodeDecodeError):
    """Decode error handler: a surrogate's 3-byte form becomes the surrogate, other bad bytes U+FFFD."""
    chunk = err.object[err.start : err.start + 3]
    if len(chunk) == 3 and chunk[0] == 0xED and 0xA0 <= chunk[1] <= 0xBF and 0x80 <= chunk[2] <= 0xBF:
        return chunk.decode("utf-8", "surrogatepass"), err.start + 3
    return "\ufffd", err.start + 1


codecs.register_error("zoo-surrogates", _surrogatepass_or_replace)


def text_to_bytes(text: str) -> bytes:
    """UTF-8, keeping lone surrogates as their generalised 3-byte form."""
    return text.encode("utf-8", "surrogatepass")


def bytes_to_text(data: bytes) -> str:
    """Inverse of ``text_to_bytes``; bytes that are not UTF-8 become U+FFFD."""
    return data.decode("utf-8", "zoo-surrogates")


def reject_lone_surrogates(text: str, owner: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ZooError(
            f"{owner}: text holds a lone surrogate {text[err.start]!r} at index {err.start}; "
            "it is not Unicode text (use the 'byte' tokenizer to keep such strings)"
        ) from None


class TextTokenizer(Tokenizer):
    """Base for text: ``encode(str) -> list[int]`` and ``encode(list[str]) -> list[list[int]]``.

    ``lossless`` says whether ``decode(encode(s)) == s`` holds for every string the tokenizer accepts
    (external tokenizers that normalise text, e.g. WordPiece or many SentencePiece models, set it False).
    """

    modality: ClassVar[str] = "text"
    lossless: ClassVar[bool] = True

    @abstractmethod
    def encode_one(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode_one(self, ids: list[int]) -> str: ...

    def encode(self, text: str | list[str]):
        if isinstance(text, str):
            return self.encode_one(text)
        if isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text):
            return self.encode_batch(list(text))
        raise ZooError(f"{type(self).__name__}.encode: expected a str or a list of str, got {type(text).__name__}")

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode_one(t) for t in texts]

    def decode(self, ids):
        ids = self._as_id_list(ids)
        if ids and isinstance(ids[0], list):
            return [self.decode_one(row) for row in ids]
        return self.decode_one(ids)

    def _as_id_list(self, ids) -> list:
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        if not isinstance(ids, (list, tuple)):
            raise ZooError(f"{type(self).__name__}.decode: expected a list of ints, got {type(ids).__name__}")
        ids = list(ids)
        rows = ids if ids and isinstance(ids[0], (list, tuple)) else [ids]
        for row in rows:
            for i in row:
                if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.vocab_size:
                    raise ZooError(
                        f"{type(self).__name__}.decode: ids must be ints in [0, {self.vocab_size}), got {i!r}"
                    )
        return [list(r) for r in ids] if rows is ids else ids

    def token_strings(self, ids: list[int]) -> list[str]:
        """Each id's text, for inspection and vocabulary metrics."""
        return [self.decode_one([i]) for i in ids]

    def token_bytes(self, ids: list[int]) -> list[bytes]:
        """Each id's UTF-8 bytes (``b""`` for specials), for byte offsets and compression metrics.

        The default decodes ids one at a time, exact when every token is whole characters; tokenizers
        whose tokens may be parts of a character (byte-level ones) override it.
        """
        return [text_to_bytes(self.decode_one([i])) for i in ids]
