"""UTF-8 bytes as tokens: 256 byte ids, then the special tokens (MonoByte style).

ids 0-255 are the bytes; 256 ``<pad>``, 257 ``<bos>``, 258 ``<eos>``. ``encode`` never adds
specials (``add_special_tokens=True`` wraps the sequence in ``<bos>`` / ``<eos>``) and ``decode``
drops them. Lossless on every Python string, lone surrogates included (see ``zoo.text.base``).
"""

from __future__ import annotations

from typing import ClassVar

from zoo.text.base import TextTokenizer, bytes_to_text, text_to_bytes

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")


class ByteTokenizer(TextTokenizer):
    requires_weights: ClassVar[bool] = False

    def __init__(self, add_special_tokens: bool = False):
        self.add_special_tokens = add_special_tokens
        self.special_ids = {token: 256 + i for i, token in enumerate(SPECIAL_TOKENS)}

    @property
    def vocab_size(self) -> int:
        return 256 + len(SPECIAL_TOKENS)

    def encode_one(self, text: str) -> list[int]:
        ids = list(text_to_bytes(text))
        if self.add_special_tokens:
            ids = [self.special_ids["<bos>"], *ids, self.special_ids["<eos>"]]
        return ids

    def decode_one(self, ids: list[int]) -> str:
        return bytes_to_text(bytes(i for i in ids if i < 256))

    def token_bytes(self, ids: list[int]) -> list[bytes]:
        return [bytes([i]) if i < 256 else b"" for i in ids]

    def token_strings(self, ids: list[int]) -> list[str]:
        names = {v: k for k, v in self.special_ids.items()}
        return [names[i] if i in names else bytes([i]).decode("latin-1") for i in ids]
