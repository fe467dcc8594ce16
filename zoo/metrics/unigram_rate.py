"""Cross-entropy per character of the best unigram model over a tokenizer's tokens, on held-out text.

The measure of Rajaraman, Jiao and Ramchandran, "Toward a Theory of Tokenization in LLMs"
(https://arxiv.org/abs/2404.08335): fit a unigram distribution ``Q`` over the tokens of training text,
then code held-out text token by token with it. Bits per character are

    Σ_tokens -log2 Q(token) / Σ characters

(the paper's ``E[-log Q(t)] / E[|t|]``). A good dictionary lets this token-independent model approach
the source's entropy rate; with single characters as tokens it is the character-unigram rate.

``Q`` is additive (Lidstone) smoothing over the tokenizer's whole vocabulary,
``Q(t) = (n_t + alpha) / (N + alpha V)``, so held-out tokens unseen in training cost a finite amount;
``alpha = 0.5`` is the Krichevsky-Trofimov / Jeffreys choice. Ids that can never occur (unused bytes,
specials) take ``alpha V / (N + alpha V)`` of the mass: keep the fit data large next to ``V``.

The character-unigram baseline is computed the same way (counts over the characters of the fit text,
one more cell for characters it never holds, the same ``alpha``). When the fit dataset knows its
source (``zoo.data.markov``: ``entropy_rate``, ``unigram_entropy``), those exact numbers are
reported beside the measured ones.

The fit text is ``fit`` (a dataset spec) or, by default, the evaluated dataset with ``split`` set to
``fit_split`` (``train``): a suite evaluating ``markov:k=2,split=test`` fits on ``markov:k=2,split=train``.
Held-out counts are summed tensors, so sharded runs give the single-process value.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import ClassVar

import numpy as np
import torch

from zoo.errors import ZooError
from zoo.metrics.base import EvalContext, Metric


def smoothed_log2(counts: np.ndarray, alpha: float) -> np.ndarray:
    """log2 of the additive-smoothed distribution ``(n + alpha) / (N + alpha V)`` over the cells of ``counts``."""
    counts = np.asarray(counts, dtype=np.float64)
    return np.log2(counts + alpha) - np.log2(counts.sum() + alpha * len(counts))


@lru_cache(maxsize=8)
def _fit_data(spec: str, limit: int | None) -> tuple[tuple[str, ...], dict[str, float]]:
    """The fit texts of a spec (JSON) and what its dataset knows of its source; cached, as every tokenizer of a
    run reads the same fit data."""
    from zoo.data import load_dataset

    dataset = load_dataset(json.loads(spec))
    count = len(dataset) if limit is None else min(limit, len(dataset))
    known = {key: float(getattr(dataset, attr)) for key, attr in
             (("entropy_rate", "entropy_rate"), ("source_unigram_bits", "unigram_entropy"))
             if isinstance(getattr(dataset, attr, None), (int, float))}
    return tuple(dataset[i]["text"] for i in range(count)), known


class UnigramCrossEntropy(Metric):
    """Bits per character of held-out text under a token unigram fitted on training text.

    Args:
        fit: dataset spec of the training text; default: the evaluated data with ``split=fit_split``.
        fit_split: the split used when ``fit`` is not given.
        fit_limit: read at most this many fit items.
        alpha: additive smoothing (> 0) of the token and character unigrams.
    """

    name: ClassVar[str] = "unigram-cross-entropy"
    higher_is_better: ClassVar[bool | None] = False
    directions: ClassVar[dict[str, bool | None]] = {
        "bits_per_char": False,
        "char_unigram_bits": None,
        "chars_per_token": None,
        "entropy_rate": None,
        "source_unigram_bits": None,
        "excess_bits": False,
    }
    modalities: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(self, fit: str | dict | None = None, fit_split: str = "train", fit_limit: int | None = None,
                 alpha: float = 0.5) -> None:
        super().__init__()
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            raise ZooError(f"unigram-cross-entropy: alpha must be a number > 0, got {alpha!r}")
        if fit_limit is not None and (isinstance(fit_limit, bool) or not isinstance(fit_limit, int) or fit_limit < 1):
            raise ZooError(f"unigram-cross-entropy: fit_limit must be a positive integer, got {fit_limit!r}")
        self.fit, self.fit_split, self.fit_limit, self.alpha = fit, fit_split, fit_limit, float(alpha)
        self.source: dict[str, float] = {}
        self._token_log2: np.ndarray | None = None

    # -- fitting on the training text ----------------------------------------------------------------
    def fit_spec(self, data_key: str | None) -> str | dict:
        """The fit text's spec: ``fit``, or the evaluated data (the runner's ``data_key``) at ``fit_split``."""
        if self.fit is not None:
            return self.fit
        try:
            evaluated = json.loads(data_key) if data_key else None
            spec = {"name": evaluated["name"], **evaluated["options"], "split": self.fit_split}
        except (TypeError, KeyError, ValueError):
            raise ZooError(
                "unigram-cross-entropy: no 'fit' dataset given and the evaluated data is unknown; "
                "set fit: '<dataset spec of the training text>'"
            ) from None
        spec.pop("limit", None)  # the suite's limit counts evaluated items, not fit items
        return spec

    def setup(self, tokenizer, data_key: str | None = None) -> None:
        spec = self.fit_spec(data_key)
        texts, self.source = _fit_data(json.dumps(spec, sort_keys=True), self.fit_limit)
        texts = list(texts)
        if not any(texts):
            raise ZooError(f"unigram-cross-entropy: the fit data {spec!r} holds no text")
        vocab = int(tokenizer.vocab_size)
        ids = [i for row in tokenizer.encode(texts) for i in row]
        self._token_log2 = smoothed_log2(np.bincount(np.asarray(ids, dtype=np.int64), minlength=vocab), self.alpha)
        self.chars = sorted(set("".join(texts)))
        self._char_index = {c: i for i, c in enumerate(self.chars)}
        # One more cell for characters the fit text never holds (empty here, filled only by held-out text).
        char_counts = sum((self._char_counts(t) for t in texts), np.zeros(len(self.chars) + 1))
        self._char_log2 = smoothed_log2(char_counts, self.alpha)
        self.fit_record = {"spec": spec, "items": len(texts), "tokens": len(ids), "chars": sum(map(len, texts))}
        self.add_state("token_counts", torch.zeros(vocab, dtype=torch.float64))  # held-out count per id
        self.add_state("char_counts", torch.zeros(len(self.chars) + 1, dtype=torch.float64))

    def _char_counts(self, text: str) -> np.ndarray:
        index = self._char_index
        codes = np.fromiter((index.get(c, len(index)) for c in text), dtype=np.int64, count=len(text))
        return np.bincount(codes, minlength=len(index) + 1).astype(np.float64)

    # -- held-out counts ---------------------------------------------------------------------------
    def update(self, ctx: EvalContext) -> None:
        if self._token_log2 is None:
            raise ZooError("unigram-cross-entropy: setup(tokenizer) must run before update")
        texts = ctx.inputs
        texts = [texts] if isinstance(texts, str) else list(texts)
        ids = np.asarray([i for row in ctx.ids for i in row], dtype=np.int64)
        tokens = np.bincount(ids, minlength=len(self._token_log2))
        chars = sum((self._char_counts(t) for t in texts), np.zeros(len(self.chars) + 1))
        self.token_counts = self.token_counts + torch.from_numpy(tokens.astype(np.float64))
        self.char_counts = self.char_counts + torch.from_numpy(chars)

    def compute(self) -> dict[str, float]:
        if self._token_log2 is None:
            raise ZooError("unigram-cross-entropy: setup(tokenizer) must run before compute")
        chars = float(self.char_counts.sum())
        if not chars:
            raise ZooError("unigram-cross-entropy: the evaluated data held no characters")
        token_bits = -float(self.token_counts.numpy() @ self._token_log2)
        char_bits = -float(self.char_counts.numpy() @ self._char_log2)
        result = {
            "bits_per_char": token_bits / chars,
            "char_unigram_bits": char_bits / chars,
            "chars_per_token": chars / float(self.token_counts.sum()) if self.token_counts.sum() else math.nan,
            **self.source,
        }
        if "entropy_rate" in self.source:
            result["excess_bits"] = result["bits_per_char"] - self.source["entropy_rate"]
        return result
