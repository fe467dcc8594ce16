"""Adjacent-pair counts of a text sample, recorded before every merge of a BPE merge list.

Data mixture inference (Hayase, Liu et al. 2024, https://arxiv.org/abs/2407.16607, §3) needs, for each
category i and merge step t, the count c_{i,p}^{(t)} of every adjacent pair p once the first t merges
are applied. Recounting the sample for every t would cost O(T · |sample|); instead the sample is
reduced to its distinct pre-tokens with frequencies (as BPE training does), every pair remembers the
pre-tokens it occurs in, and applying merge t rewrites only those pre-tokens, updating the counts of the
pairs they lose and gain. The history keeps the counts before any merge plus, for each step, the new
counts of the pairs that step changed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from zoo.analysis.merges import BPEMerges
from zoo.errors import ZooError

_SHIFT = 32  # pair key = left id << 32 | right id


class SymbolTable:
    """Ids for token strings, shared by every category so that pair keys agree across them."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def id(self, symbol: str) -> int:
        found = self.ids.get(symbol)
        if found is None:
            found = self.ids[symbol] = len(self.ids)
        return found

    def pair_key(self, left: str, right: str) -> int:
        return self.id(left) << _SHIFT | self.id(right)


@dataclass
class PairCountHistory:
    """One category's pair counts through the merges: ``initial`` counts, then each step's changed counts.

    ``steps[t]`` holds ``(keys, counts)``: the pairs whose count merge ``t`` changed and their counts after it,
    so the counts *before* merge ``t`` are ``initial`` updated with ``steps[:t]``.
    """

    initial: dict[int, int]
    steps: list[tuple[np.ndarray, np.ndarray]]
    merge_keys: list[int]
    num_bytes: int
    num_pairs: int = field(init=False)

    def __post_init__(self) -> None:
        self.num_pairs = int(sum(self.initial.values()))

    def counts_before(self, step: int) -> dict[int, int]:
        """Every pair's count before merge ``step`` (a full replay; for tests and inspection)."""
        counts = dict(self.initial)
        for keys, values in self.steps[:step]:
            counts.update(zip(keys.tolist(), values.tolist()))
        return {k: v for k, v in counts.items() if v}


def pretoken_counts(texts: Iterable[str], bpe: BPEMerges, chunk_chars: int = 1 << 20) -> tuple[Counter, int]:
    """Distinct pre-tokens of ``texts`` with their frequencies, and the texts' UTF-8 byte count.

    Long texts are pre-tokenized in chunks cut after a newline, so memory stays bounded.
    """
    counts: Counter = Counter()
    num_bytes = 0
    for text in texts:
        if not isinstance(text, str):
            raise ZooError(f"category sample: expected text (str), got {type(text).__name__}")
        num_bytes += len(text.encode("utf-8", "surrogatepass"))
        start = 0
        while start < len(text):
            end = len(text) if len(text) - start <= chunk_chars else text.rfind("\n", start, start + chunk_chars) + 1
            if end <= start:
                end = start + chunk_chars
            counts.update(bpe.pretokenize(text[start:end]))
            start = end
    return counts, num_bytes


def _merge_word(word: list[int], left: int, right: int, merged: int) -> list[int] | None:
    """``word`` with every non-overlapping ``left right`` (scanned left to right) replaced; None if absent."""
    out: list[int] = []
    i, n, hit = 0, len(word), False
    while i < n:
        if i + 1 < n and word[i] == left and word[i + 1] == right:
            out.append(merged)
            i += 2
            hit = True
        else:
            out.append(word[i])
            i += 1
    return out if hit else None


def count_pairs_through_merges(
    pieces: Counter,
    num_bytes: int,
    merges: list[tuple[str, str]],
    symbols: SymbolTable,
) -> PairCountHistory:
    """Apply ``merges`` in order to the pre-token frequency table ``pieces``, recording pair counts."""
    words: list[list[int]] = []
    freqs: list[int] = []
    counts: dict[int, int] = defaultdict(int)
    where: dict[int, set[int]] = defaultdict(set)  # pair key -> indices of words that (may) hold it
    for piece, freq in pieces.items():
        word = [symbols.id(ch) for ch in piece]
        index = len(words)
        words.append(word)
        freqs.append(freq)
        for a, b in zip(word, word[1:]):
            key = a << _SHIFT | b
            counts[key] += freq
            where[key].add(index)
    initial = dict(counts)

    steps: list[tuple[np.ndarray, np.ndarray]] = []
    merge_keys: list[int] = []
    for left, right in merges:
        a, b, ab = symbols.id(left), symbols.id(right), symbols.id(left + right)
        merge_key = a << _SHIFT | b
        merge_keys.append(merge_key)
        before: dict[int, int] = {}
        # Every occurrence of the pair is merged, so no word holds it afterwards.
        for index in where.pop(merge_key, ()):
            old = words[index]
            new = _merge_word(old, a, b, ab)
            if new is None:
                continue
            freq = freqs[index]
            for x, y in zip(old, old[1:]):
                key = x << _SHIFT | y
                before.setdefault(key, counts[key])
                counts[key] -= freq
            for x, y in zip(new, new[1:]):
                key = x << _SHIFT | y
                before.setdefault(key, counts[key])
                counts[key] += freq
                where[key].add(index)
            words[index] = new
        changed = [key for key, old_count in before.items() if counts[key] != old_count]
        values = [counts[key] for key in changed]
        for key in changed:
            if not counts[key]:
                del counts[key]
        steps.append((np.array(changed, dtype=np.int64), np.array(values, dtype=np.int64)))
    return PairCountHistory(initial, steps, merge_keys, num_bytes)


def count_category(
    texts: Iterable[str], bpe: BPEMerges, symbols: SymbolTable, num_merges: int | None = None
) -> PairCountHistory:
    """Pair-count history of one category's sample under the first ``num_merges`` merges of ``bpe``."""
    pieces, num_bytes = pretoken_counts(texts, bpe)
    if not pieces:
        raise ZooError("category sample is empty: no text to count pairs in")
    merges = bpe.merges if num_merges is None else bpe.merges[:num_merges]
    return count_pairs_through_merges(pieces, num_bytes, merges, symbols)
