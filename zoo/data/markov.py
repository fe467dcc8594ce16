"""k-th order Markov sources with a known entropy rate, and texts sampled from them.

The sources of Rajaraman, Jiao and Ramchandran, "Toward a Theory of Tokenization in LLMs"
(https://arxiv.org/abs/2404.08335): next to a tokenizer's cross-entropy, the entropy rate is the floor
any model can reach and the stationary symbol entropy is what a character-unigram model gets.

A source of order ``k`` over an alphabet of ``m`` characters is a table ``T [m^k, m]``: row ``s`` is the
distribution of the next character after the context ``s`` (the last ``k`` characters read as a base-``m``
number, oldest digit first). Two kinds:

- ``switching`` (binary, the paper's process): the next character repeats the one ``k`` places back,
  except that after ``a`` (0) it switches to ``b`` (1) with probability ``p`` and after ``b`` switches
  to ``a`` with probability ``q``; ``delta`` sets ``p = q``. It then reads as ``k`` interleaved
  first-order chains, so ``π = (q, p) / (p + q)`` and ``H = (q h(p) + p h(q)) / (p + q)``.
- ``random``: every row drawn from a symmetric Dirichlet(``concentration``) by ``seed``; small
  concentrations give peaked rows, hence low entropy rates.

Quantities are exact: the stationary distribution ``π`` over contexts solves ``π P = π`` for the
context chain ``P`` (a linear solve), the entropy rate is ``Σ_s π(s) H(T[s])`` and the unigram entropy is
``H(Σ_s π(s) T[s])``, all in bits per character. Each text starts in a context drawn from ``π``, so every
position of every text is stationary and per-character averages estimate these numbers without bias.

Characters are letters (``ab`` by default), not ``0``/``1``: zoo's byte-level BPE and Unigram cut digit
runs into groups of at most three before learning (``zoo.text.digits``), which would cap their tokens.
"""

from __future__ import annotations

import bisect
import math
from functools import cached_property

import numpy as np
from torch.utils.data import Dataset

from zoo.errors import ZooError

KINDS = ("switching", "random")
_SPLITS = {"train": 0, "val": 1, "test": 2}
_DEFAULT_COUNTS = {"train": 1024, "val": 128, "test": 128}
MAX_CONTEXTS = 2048  # m^k: the stationary solve is dense, O(contexts^2) memory


def entropy_bits(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy in bits along the last axis (``0 log 0 = 0``)."""
    probs = np.asarray(probs, dtype=np.float64)
    logs = np.log2(np.where(probs > 0, probs, 1.0))
    return -(probs * logs).sum(-1)


def _checked_alphabet(alphabet: str) -> str:
    if not isinstance(alphabet, str) or len(alphabet) < 2 or len(set(alphabet)) != len(alphabet):
        raise ZooError(f"markov: alphabet must hold at least 2 distinct characters, got {alphabet!r}")
    return alphabet


def _check_contexts(m: int, order: int) -> None:
    if isinstance(order, bool) or not isinstance(order, int) or order < 0:
        raise ZooError(f"markov: order k must be an integer >= 0, got {order!r}")
    if m**order > MAX_CONTEXTS:
        raise ZooError(f"markov: {m}^{order} = {m**order} contexts; at most {MAX_CONTEXTS} are supported")


class MarkovSource:
    """A stationary k-th order Markov chain over ``alphabet`` given by its next-character table [m^k, m]."""

    def __init__(self, alphabet: str, order: int, table: np.ndarray):
        m = len(_checked_alphabet(alphabet))
        _check_contexts(m, order)
        table = np.asarray(table, dtype=np.float64)
        if table.shape != (m**order, m) or (table < 0).any() or not np.allclose(table.sum(1), 1.0):
            raise ZooError(f"markov: table must be [m^k={m**order}, m={m}] rows of probabilities, got {table.shape}")
        self.alphabet, self.order, self.table = alphabet, order, table
        self.contexts = m**order

    # -- the two kinds --------------------------------------------------------------------------------
    @classmethod
    def switching(cls, order: int, p: float, q: float, alphabet: str = "ab") -> MarkovSource:
        """The binary switching source: ``x_t`` copies ``x_{t-k}``, switching a->b with prob p and b->a with q."""
        if len(alphabet) != 2:
            raise ZooError(f"markov: the switching source is binary; alphabet must have 2 characters, got {alphabet!r}")
        if order < 1 or not (0 < p < 1 and 0 < q < 1):
            raise ZooError(f"markov: switching needs k >= 1 and p, q in (0, 1), got k={order}, p={p}, q={q}")
        oldest = np.arange(2**order) >> (order - 1)  # the character k places back: the context's top digit
        table = np.where(oldest[:, None] == 0, [[1 - p, p]], [[q, 1 - q]])
        return cls(alphabet, order, table)

    @classmethod
    def random(cls, order: int, alphabet: str = "ab", concentration: float = 1.0, seed: int = 0) -> MarkovSource:
        """Rows drawn from a symmetric Dirichlet(concentration), fixed by ``seed``."""
        if concentration <= 0:
            raise ZooError(f"markov: concentration must be > 0, got {concentration}")
        m = len(_checked_alphabet(alphabet))
        _check_contexts(m, order)  # before drawing m^k rows
        rng = np.random.default_rng([seed, 0x4D41524B])  # own stream: the table never moves with sampling
        table = rng.dirichlet(np.full(m, float(concentration)), size=m**order)
        # Keep every transition possible (a row of exact zeros could make the chain reducible).
        table = np.maximum(table, 1e-12)
        return cls(alphabet, order, table / table.sum(1, keepdims=True))

    # -- exact quantities -----------------------------------------------------------------------------
    def next_context(self, context: np.ndarray | int, symbol: np.ndarray | int):
        """The context after reading ``symbol`` in ``context``: drop the oldest digit, append the new one."""
        return (context * len(self.alphabet) + symbol) % self.contexts

    @cached_property
    def stationary(self) -> np.ndarray:
        """π over contexts [m^k]: the solution of π P = π with Σ π = 1 (P the context chain)."""
        n, m = self.contexts, len(self.alphabet)
        chain = np.zeros((n, n))
        rows = np.repeat(np.arange(n), m)
        np.add.at(chain, (rows, self.next_context(rows, np.tile(np.arange(m), n))), self.table.reshape(-1))
        system = np.vstack([chain.T - np.eye(n), np.ones((1, n))])
        target = np.zeros(n + 1)
        target[-1] = 1.0
        pi, *_ = np.linalg.lstsq(system, target, rcond=None)
        pi = np.clip(pi, 0.0, None)
        return pi / pi.sum()

    @cached_property
    def entropy_rate(self) -> float:
        """H = Σ_s π(s) H(T[s]) bits per character: the lowest cross-entropy any model can reach."""
        return float(self.stationary @ entropy_bits(self.table))

    @cached_property
    def symbol_probs(self) -> np.ndarray:
        """Stationary probability of each character [m]."""
        return self.stationary @ self.table

    @cached_property
    def unigram_entropy(self) -> float:
        """H(π_1) bits per character: the cross-entropy of the best character-unigram model."""
        return float(entropy_bits(self.symbol_probs))

    # -- sampling and scoring -------------------------------------------------------------------------
    @cached_property
    def _cut_points(self) -> list[list[float]]:
        """Per context, the m - 1 cumulative probabilities that split [0, 1) into the next characters."""
        return [np.cumsum(row)[:-1].tolist() for row in self.table]

    def sample(self, length: int, rng: np.random.Generator) -> str:
        """A stationary text of ``length`` characters: a context drawn from π, then the chain."""
        if length < self.order:
            raise ZooError(f"markov: texts need at least k={self.order} characters, got length={length}")
        m, cumulative = len(self.alphabet), self._cut_points
        context = int(rng.choice(self.contexts, p=self.stationary))
        symbols = [(context // m**i) % m for i in reversed(range(self.order))]  # its digits, oldest first
        for u in rng.random(length - self.order).tolist():
            symbol = bisect.bisect_right(cumulative[context], u)
            symbols.append(symbol)
            context = (context * m + symbol) % self.contexts
        return "".join(self.alphabet[s] for s in symbols)

    def conditional_bits(self, text: str) -> tuple[float, int]:
        """``(Σ -log2 T[context, x_t], count)`` over the positions of ``text`` after its first k characters:
        the true model's code length, whose mean converges to the entropy rate."""
        index = {c: i for i, c in enumerate(self.alphabet)}
        try:
            symbols = [index[c] for c in text]
        except KeyError as err:
            raise ZooError(f"markov: text holds {err.args[0]!r}, outside the alphabet {self.alphabet!r}") from None
        context, total = 0, 0.0
        for t, symbol in enumerate(symbols):
            if t >= self.order:
                total -= math.log2(self.table[context, symbol])
            context = (context * len(self.alphabet) + symbol) % self.contexts
        return total, max(0, len(symbols) - self.order)

    def describe(self) -> dict:
        """The numbers a report prints beside a tokenizer's cross-entropy."""
        return {"order": self.order, "alphabet": self.alphabet, "entropy_rate": self.entropy_rate,
                "unigram_entropy": self.unigram_entropy}


class MarkovTexts(Dataset):
    """``{"text": str}`` items sampled from one source; item ``i`` of a split is fixed by ``(seed, split, i)``.

    ``entropy_rate`` and ``unigram_entropy`` (bits per character) are attributes, so a metric handed
    the dataset can print them beside what a tokenizer reaches.
    """

    def __init__(self, source: MarkovSource, split: str, seed: int, count: int, length: int):
        self.source, self.split, self.seed, self.count, self.length = source, split, seed, count, length

    @property
    def entropy_rate(self) -> float:
        return self.source.entropy_rate

    @property
    def unigram_entropy(self) -> float:
        return self.source.unigram_entropy

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.count:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], index])
        return {"text": self.source.sample(self.length, rng)}

    @property
    def texts(self) -> list[str]:
        return [self[i]["text"] for i in range(self.count)]


def build_source(
    k: int, kind: str = "switching", p: float | None = None, q: float | None = None, delta: float | None = None,
    alphabet: str | None = None, concentration: float = 1.0, seed: int = 0,
) -> MarkovSource:
    """The source a ``markov`` spec names (see ``markov``)."""
    if kind not in KINDS:
        raise ZooError(f"markov: kind must be one of {KINDS}, got {kind!r}")
    alphabet = "ab" if alphabet is None else str(alphabet)
    if kind == "random":
        if p is not None or q is not None or delta is not None:
            raise ZooError("markov: p, q and delta belong to kind=switching; kind=random takes concentration")
        return MarkovSource.random(k, alphabet, concentration, seed)
    if delta is not None and (p is not None or q is not None):
        raise ZooError(f"markov: give delta (p = q) or p and q, not both; got delta={delta}, p={p}, q={q}")
    if delta is not None:
        p = q = delta
    p = 0.1 if p is None else p
    q = p if q is None else q
    return MarkovSource.switching(k, float(p), float(q), alphabet)


def markov(
    split: str = "train",
    seed: int = 0,
    limit: int | None = None,
    count: int | None = None,
    k: int = 1,
    kind: str = "switching",
    p: float | None = None,
    q: float | None = None,
    delta: float | None = None,
    alphabet: str | None = None,
    concentration: float = 1.0,
    length: int = 512,
) -> MarkovTexts:
    """Texts of ``length`` characters from a k-th order source: ``markov:k=2,delta=0.1,split=test``.

    ``kind=switching`` (default; ``p``, ``q`` or ``delta``, default 0.1) or ``kind=random``
    (``alphabet``, ``concentration``; the table is fixed by ``seed``). Splits hold 1024 / 128 / 128 texts
    unless ``count`` says otherwise; their texts come from disjoint seeds.
    """
    if split not in _SPLITS:
        raise ZooError(f"dataset 'markov': split must be one of {sorted(_SPLITS)}, got {split!r}")
    count = _DEFAULT_COUNTS[split] if count is None else count
    for name, value in (("count", count), ("length", length), ("limit", limit)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ZooError(f"dataset 'markov': {name} must be a positive integer, got {value!r}")
    source = build_source(k, kind, p, q, delta, alphabet, concentration, seed)
    return MarkovTexts(source, split, seed, min(count, limit) if limit is not None else count, length)
