"""Sampled tokenizers for training a ZeTT hypernetwork: byte-level UnigramLM vocabularies of varying size and data.

The paper (https://arxiv.org/abs/2405.07883, §3.3) draws a new UnigramLM tokenizer for every batch: unigram pieces
counted on the batch's text, their log-probabilities perturbed by Gaussian noise whose scale is itself sampled,
and the top ``n`` pieces kept. Training a Unigram model per step costs seconds on a CPU, so here a small *pool* of
Unigram models is trained once (HF ``tokenizers``' ``UnigramTrainer``), each on a different random share of the
training text, and every step draws one member, a vocabulary size (log-uniform in ``[min_vocab, max_vocab]``) and a
noise scale (log-uniform in ``noise``), perturbs the pieces' scores and keeps the best ``n``. The 256 byte symbols
always stay, so every sampled tokenizer encodes every string (byte-level, as the paper converts all tokenizers).
"""

from __future__ import annotations

import json
import math

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from zoo.errors import ZooError

BYTE_SYMBOLS = frozenset(pre_tokenizers.ByteLevel.alphabet())


def byte_level(model) -> Tokenizer:
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def train_unigram(texts: list[str], vocab_size: int) -> Tokenizer:
    """A byte-level UnigramLM tokenizer with ``vocab_size`` pieces trained on ``texts`` (all 256 bytes included)."""
    if vocab_size <= len(BYTE_SYMBOLS):
        raise ZooError(f"Unigram: vocab_size must exceed the {len(BYTE_SYMBOLS)} byte symbols, got {vocab_size}")
    tokenizer = byte_level(models.Unigram())
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        initial_alphabet=sorted(BYTE_SYMBOLS),
        max_piece_length=16,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def unigram_pieces(tokenizer: Tokenizer) -> list[tuple[str, float]]:
    """(byte-level piece, log-probability) of a Unigram tokenizer, as its ``tokenizer.json`` holds them."""
    model = json.loads(tokenizer.to_str())["model"]
    if model.get("type") != "Unigram":
        raise ZooError(f"expected a Unigram tokenizer, got a {model.get('type')} model")
    return [(piece, float(score)) for piece, score in model["vocab"]]


def unigram_from_pieces(pieces: list[tuple[str, float]]) -> Tokenizer:
    return byte_level(models.Unigram(pieces, unk_id=None, byte_fallback=False))


class TokenizerSampler:
    """Draws noisy, truncated Unigram vocabularies from a pool trained on random shares of ``texts``."""

    def __init__(
        self,
        texts: list[str],
        pool_size: int = 4,
        pool_vocab: int = 4096,
        pool_share: float = 0.3,
        min_vocab: int = 1024,
        max_vocab: int = 4096,
        noise: tuple[float, float] = (0.01, 1.0),
        seed: int = 0,
    ):
        if not texts:
            raise ZooError("TokenizerSampler: no training text to sample tokenizers from")
        if not len(BYTE_SYMBOLS) < min_vocab <= max_vocab <= pool_vocab:
            raise ZooError(
                f"TokenizerSampler: need {len(BYTE_SYMBOLS)} < min_vocab <= max_vocab <= pool_vocab, got "
                f"{min_vocab}, {max_vocab}, {pool_vocab}"
            )
        if not 0 < pool_share <= 1 or pool_size < 1:
            raise ZooError(f"TokenizerSampler: need pool_size >= 1 and 0 < pool_share <= 1, got {pool_size}, "
                           f"{pool_share}")
        self.min_vocab, self.max_vocab, self.noise = min_vocab, max_vocab, noise
        rng = np.random.default_rng(seed)
        self.pool = []
        for _ in range(pool_size):
            share = rng.choice(len(texts), max(1, int(len(texts) * pool_share)), replace=False)
            pieces = unigram_pieces(train_unigram([texts[i] for i in share], pool_vocab))
            # bytes the share never showed still need a piece, or a sampled tokenizer cannot encode them
            missing = sorted(BYTE_SYMBOLS - {p for p, _ in pieces})
            floor = min(s for _, s in pieces)
            # HF's UnigramTrainer returns the same pieces in a run-dependent order (scores differing by ~1e-11), and
            # the noise is drawn per position: sorting by piece makes a seed draw the same vocabularies every run
            self.pool.append(sorted(pieces + [(p, floor) for p in missing]))

    def sample(self, rng: np.random.Generator) -> Tokenizer:
        pieces = self.pool[int(rng.integers(len(self.pool)))]
        size = int(round(math.exp(rng.uniform(math.log(self.min_vocab), math.log(self.max_vocab)))))
        scale = math.exp(rng.uniform(math.log(self.noise[0]), math.log(self.noise[1])))
        scores = np.array([s for _, s in pieces]) + scale * rng.standard_normal(len(pieces))
        always = [i for i, (p, _) in enumerate(pieces) if p in BYTE_SYMBOLS]
        others = [i for i in np.argsort(-scores).tolist() if pieces[i][0] not in BYTE_SYMBOLS]
        chosen = sorted(always + others[: max(0, size - len(always))], key=lambda i: -scores[i])
        return unigram_from_pieces([(pieces[i][0], float(scores[i])) for i in chosen])
