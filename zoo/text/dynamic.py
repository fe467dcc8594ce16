"""Dynamic tokenization: batch-level BPE merges on top of any base tokenizer.

Feher, Vulić and Minixhofer, "Retrofitting (Large) Language Models with Dynamic Tokenization"
(ACL 2025, https://arxiv.org/abs/2411.18553; code ``DariusFeher/dynamic-tokenization``,
``tokenizations/dynamic_bpe.py``). The batch is encoded with the base tokenizer, then the most
frequent adjacent pair across the whole batch is merged everywhere, again and again, so frequent
words of *this* batch become single tokens and sequences get shorter. A merge must stay inside one
word (``boundary="word"``: whitespace only as a leading run, or an all-whitespace token) or one
pre-token of the split pattern (``boundary="pretoken"``). New tokens get batch-local ids after the
base vocabulary; their embeddings come from elsewhere (the paper uses a hypernetwork).

    >>> merger = DynamicMerger(zoo.load("bpe-32k", pretrained=True))
    >>> batch = merger.merge(texts)              # batch.ids, batch.merges, batch.reduction
    >>> merger.decode(batch, batch.ids[0]) == texts[0]
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property

from zoo.errors import ZooError
from zoo.text.base import TextTokenizer, bytes_to_text
from zoo.text.digits import split_pattern

BOUNDARIES = ("word", "pretoken")


@dataclass
class DynamicBatch:
    """Merged sequences of one batch.

    Attributes:
        ids: merged id sequences; an id ``>= base_vocab_size`` is this batch's merged token
            ``merges[id - base_vocab_size]``.
        merges: ``(left, right)`` ids of each merge, in the order made.
        base_vocab_size: the base tokenizer's vocabulary size.
        base_lengths: sequence lengths before merging.
    """

    ids: list[list[int]]
    merges: list[tuple[int, int]]
    base_vocab_size: int
    base_lengths: list[int]
    token_bytes: dict[int, bytes] = field(repr=False, default_factory=dict)

    @property
    def lengths(self) -> list[int]:
        return [len(row) for row in self.ids]

    @property
    def reduction(self) -> float:
        """Fraction of tokens saved over the batch: ``1 - merged / base``."""
        base = sum(self.base_lengths)
        return 1.0 - sum(self.lengths) / base if base else 0.0

    def expand(self, ids: list[int]) -> list[int]:
        """Merged ids back to base ids."""
        out: list[int] = []
        stack = list(reversed(ids))
        while stack:
            i = stack.pop()
            if i < self.base_vocab_size:
                out.append(i)
                continue
            k = i - self.base_vocab_size
            if not 0 <= k < len(self.merges):
                raise ZooError(
                    f"DynamicBatch.expand: id {i} is neither a base id nor one of the {len(self.merges)} merges"
                )
            left, right = self.merges[k]
            stack += [right, left]
        return out

    def token_text(self, i: int) -> str:
        """A token's text (merged or base), for inspection."""
        return bytes_to_text(self.token_bytes[i])


class DynamicMerger:
    """Merge frequent pairs within a batch, over any zoo text tokenizer.

    Args:
        base: the tokenizer whose ids are merged.
        boundary: ``word`` (no whitespace inside a merged token except a leading run) or ``pretoken``
            (a merged token must be one piece of the split pattern, ``zoo.text.digits``).
        max_merges: stop after this many merges (None: until no pair is frequent enough).
        min_frequency: a pair must occur at least this often in the batch to be merged.
    """

    def __init__(
        self, base: TextTokenizer, boundary: str = "word", max_merges: int | None = None, min_frequency: int = 2
    ):
        if getattr(base, "modality", None) != "text":
            raise ZooError(f"DynamicMerger: the base must be a text tokenizer, got {type(base).__name__}")
        if boundary not in BOUNDARIES:
            raise ZooError(f"DynamicMerger: boundary must be one of {BOUNDARIES}, got {boundary!r}")
        if min_frequency < 1 or (max_merges is not None and max_merges < 0):
            raise ZooError(
                f"DynamicMerger: need min_frequency >= 1 and max_merges >= 0, got {min_frequency} and {max_merges}"
            )
        self.base, self.boundary, self.max_merges, self.min_frequency = base, boundary, max_merges, min_frequency
        self._valid: dict[bytes, bool] = {}

    @cached_property
    def _pattern(self):
        import regex

        return regex.compile(getattr(self.base, "pattern", None) or split_pattern())

    def _allowed(self, merged: bytes) -> bool:
        """May ``merged`` be one token? Cached per byte string."""
        ok = self._valid.get(merged)
        if ok is None:
            text = merged.decode("utf-8", "replace")  # a part of a character reads as U+FFFD, a non-space
            body = text.lstrip()
            if not body:
                ok = True  # runs of whitespace compress like any other pair
            elif self.boundary == "word":
                ok = not any(c.isspace() for c in body)
            else:
                ok = len(self._pattern.findall(text)) == 1
            self._valid[merged] = ok
        return ok

    def merge(self, texts: list[str]) -> DynamicBatch:
        """Encode ``texts`` with the base tokenizer and merge the batch's frequent pairs."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ZooError("DynamicMerger.merge: expected a list of str (one batch)")
        rows = self.base.encode(list(texts))
        vocab = self.base.vocab_size
        token_bytes = {i: raw for row in rows for i, raw in zip(row, self.base.token_bytes(row))}
        batch = DynamicBatch([list(r) for r in rows], [], vocab, [len(r) for r in rows], token_bytes)
        while self.max_merges is None or len(batch.merges) < self.max_merges:
            pairs: Counter = Counter()
            for row in batch.ids:
                pairs.update(zip(row, row[1:]))
            best, count = None, 0
            for pair, n in pairs.items():  # first of the most frequent in order of appearance, as Counter's max
                if n > count and self._allowed(token_bytes[pair[0]] + token_bytes[pair[1]]):
                    best, count = pair, n
            if best is None or count < self.min_frequency:
                break
            new = vocab + len(batch.merges)
            batch.merges.append(best)
            token_bytes[new] = token_bytes[best[0]] + token_bytes[best[1]]
            batch.ids = [_replace_pair(row, best, new) for row in batch.ids]
        return batch

    def decode(self, batch: DynamicBatch, ids: list[int]) -> str:
        """Text of a merged sequence (through the base tokenizer)."""
        return self.base.decode(batch.expand(ids))


def _replace_pair(row: list[int], pair: tuple[int, int], new: int) -> list[int]:
    """Replace every non-overlapping occurrence of ``pair`` in ``row``, left to right."""
    left, right = pair
    if left not in row:
        return row
    out: list[int] = []
    i, n = 0, len(row)
    while i < n:
        if i + 1 < n and row[i] == left and row[i + 1] == right:
            out.append(new)
            i += 2
        else:
            out.append(row[i])
            i += 1
    return out
