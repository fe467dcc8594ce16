"""Where a tokenizer's tokens sit in a text, for the data builders and the text metrics above them.

Both need the byte offset of every character boundary (to place byte-level tokens, which may end inside a
character) and each id's bytes; they live here, in the lower layer, so neither keeps its own copy.
"""

from __future__ import annotations

import numpy as np

from zoo.errors import ZooError


def utf8_offsets(text: str) -> np.ndarray:
    """Byte offset of every character boundary (``len(text) + 1`` values; lone surrogates take 3 bytes)."""
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    sizes = 1 + (points >= 0x80).astype(np.int64) + (points >= 0x800) + (points >= 0x10000)
    return np.concatenate([[0], np.cumsum(sizes)])


def vocabulary(tokenizer) -> tuple[list[bytes | None], set[int]]:
    """Every id's bytes (None for ids that are no token) and the special ids."""
    specials = set(getattr(tokenizer, "special_ids", {}).values())
    try:
        return list(tokenizer.token_bytes(range(tokenizer.vocab_size))), specials
    except ZooError:  # ids with holes (tiktoken ranks, unused ids): ask one by one
        pieces: list[bytes | None] = []
        for i in range(tokenizer.vocab_size):
            try:
                pieces.append(tokenizer.token_bytes([i])[0])
            except ZooError:
                pieces.append(None)
        return pieces, specials
