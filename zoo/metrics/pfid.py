"""pFID: FID of images decoded from perturbed tokens (RobusTok, https://arxiv.org/abs/2503.08354).

RobusTok introduced pFID to say how gracefully a tokenizer's decoder handles the token errors an
autoregressive generator makes; its code was never released, so this is zoo's definition.

Definition. For a tokenizer with ``K`` codes per codebook and a held-out image set X:

1. ``ids = encode(x)`` for every x in X.
2. For each perturbation rate ``alpha`` (default 0.1, 0.2, 0.3), each token independently, with
   probability ``alpha``, is replaced by one of its ``delta`` nearest codebook neighbours, chosen
   uniformly. The neighbours of id k are the ``delta`` codes e_j (j != k) nearest to e_k in squared
   Euclidean distance, in the codebook space ``tokenizer.codebook`` lives in (the implicit grid for
   FSQ / LFQ; each level's own codebook for residual VQ, each level perturbed independently); ties
   break by lower id. ``delta`` defaults to ``ceil(0.025 * K)`` (RobusTok trains with 100 of 4096),
   at least 1; ``delta`` as an option fixes it instead.
3. ``x_alpha = decode(perturbed ids)``.
4. ``pFID_alpha = FID(X, {x_alpha})`` with the suite's feature extractor (Inception by default):
   the same reference statistics as rFID, so they share one cache.

Reported: ``alpha=0.1``, ``alpha=0.2``, ``alpha=0.3`` and their ``mean`` (the headline pFID).
Randomness comes from one ``torch.Generator`` seeded with ``seed`` (default 0) when the metric is
set up, consumed batch after batch in the suite's fixed order, so a run is reproducible. The
perturbation itself is ``zoo.quantize.perturb.perturb_token_ids``, beside training's latent
perturbation. The report shows a perturbation strip: the first image, its reconstruction, and its
decodes at each alpha.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from zoo.errors import ZooError
from zoo.metrics.base import EvalContext, Metric
from zoo.metrics.fid import FrechetMetric, moments_distance
from zoo.metrics.image import psnr, reconstruction_pair
from zoo.quantize.perturb import perturb_token_ids


def default_delta(vocab_size: int, fraction: float = 0.025) -> int:
    """ceil(fraction * K), at least 1 and at most K - 1."""
    return int(min(max(1, math.ceil(fraction * vocab_size)), vocab_size - 1))


class TokenPerturbation:
    """The rates, the neighbourhood and the seeded draws of step 2, shared by ``pfid`` and ``perturbed-psnr``."""

    def __init__(self, metric: str, alphas=(0.1, 0.2, 0.3), delta: int | None = None, delta_fraction: float = 0.025,
                 seed: int = 0):
        alphas = [float(a) for a in alphas]
        if not alphas or any(not 0.0 <= a <= 1.0 for a in alphas):
            raise ZooError(f"{metric}: alphas must be a non-empty list of rates in [0, 1], got {alphas}")
        if delta is not None and (not isinstance(delta, int) or delta < 1):
            raise ZooError(f"{metric}: delta must be an integer >= 1 (or omitted for ceil({delta_fraction} K)), "
                           f"got {delta!r}")
        if not 0.0 < delta_fraction < 1.0:
            raise ZooError(f"{metric}: delta_fraction must lie in (0, 1), got {delta_fraction!r}")
        self.metric, self.alphas, self.fixed_delta, self.delta_fraction = metric, alphas, delta, delta_fraction
        self.seed = seed
        self.delta: int | None = None
        self.generator = torch.Generator().manual_seed(seed)

    def setup(self, tokenizer) -> str:
        """Fix delta for this tokenizer's codebook and restart the draws; returns the note for the results."""
        vocab = int(tokenizer.vocab_size)
        if vocab < 2:
            raise ZooError(f"{self.metric}: {type(tokenizer).__name__} has {vocab} code(s); perturbation needs "
                           "at least 2")
        delta = self.fixed_delta if self.fixed_delta is not None else default_delta(vocab, self.delta_fraction)
        if delta >= vocab:
            raise ZooError(f"{self.metric}: delta {delta} must be smaller than the codebook size {vocab}")
        self.delta = delta
        self.reset()
        return f"delta {delta} nearest codes of {vocab}, seed {self.seed}"

    def reset(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)

    def decoded(self, ctx: EvalContext):
        """``(index, alpha, decode(perturbed ids))`` for each alpha, images clamped to [0, 1] (after ``setup``)."""
        tokenizer = ctx.tokenizer
        codebook = tokenizer.codebook.detach()
        ids = torch.as_tensor(ctx.ids)
        with torch.no_grad():
            for i, alpha in enumerate(self.alphas):
                perturbed = perturb_token_ids(ids, codebook.to(ids.device), alpha, self.delta, self.generator)
                yield i, alpha, tokenizer.decode(perturbed).float().clamp(0, 1)


class PerturbedFID(FrechetMetric):
    """pFID at several perturbation rates and their mean (see the module docstring for the definition)."""

    name: ClassVar[str] = "pfid"
    needs_decoder: ClassVar[bool] = True

    def __init__(self, alphas: list[float] | tuple[float, ...] = (0.1, 0.2, 0.3), delta: int | None = None,
                 delta_fraction: float = 0.025, seed: int = 0, extractor: str | dict = "inception",
                 batch_size: int = 50):
        super().__init__(extractor=extractor, batch_size=batch_size)
        self.perturbation = TokenPerturbation(self.name, alphas, delta, delta_fraction, seed)
        dim = self.extractor.dim
        for i in range(len(self.alphas)):
            self.add_state(f"gen{i}_count", torch.zeros((), dtype=torch.float64))
            self.add_state(f"gen{i}_total", torch.zeros(dim, dtype=torch.float64))
            self.add_state(f"gen{i}_outer", torch.zeros(dim, dim, dtype=torch.float64))
        self.strip: list[torch.Tensor] = []

    @property
    def alphas(self) -> list[float]:
        return self.perturbation.alphas

    @property
    def delta(self) -> int | None:
        return self.perturbation.delta

    def setup(self, tokenizer, data_key: str | None = None) -> None:
        super().setup(tokenizer, data_key)
        self.notes.append(self.perturbation.setup(tokenizer))
        self.strip = []

    def reset(self) -> None:
        super().reset()
        self.perturbation.reset()
        self.strip = []

    def update(self, ctx: EvalContext) -> None:
        if self.delta is None:
            self.setup(ctx.tokenizer)
        if self.cached_reference is None:
            self._add("ref", ctx.inputs.float().clamp(0, 1))
        keep_strip = not self.strip
        if keep_strip:
            self.strip = [ctx.inputs[0].float().clamp(0, 1).cpu(), ctx.reconstruction[0].float().clamp(0, 1).cpu()]
        for i, _, images in self.perturbation.decoded(ctx):
            self._add(f"gen{i}", images)
            if keep_strip:
                self.strip.append(images[0].cpu())

    def compute(self) -> dict[str, float]:
        reference = self.reference_moments()
        values = {f"alpha={alpha:g}": moments_distance(reference, self._moments(f"gen{i}"))
                  for i, alpha in enumerate(self.alphas)}
        values["mean"] = float(np.mean(list(values.values())))
        return values

    def figures(self) -> dict:
        """One strip: original | reconstruction | decoded at each alpha, as uint8 ``[H, W, 3]``."""
        if not self.strip:
            return {}
        gap = torch.ones(3, self.strip[0].shape[1], 2)
        tiles = []
        for tile in self.strip:
            tiles += [tile, gap]
        strip = torch.cat(tiles[:-1], dim=2)  # [3, H, n*W + gaps]
        labels = ", ".join(["original", "reconstruction", *(f"alpha {a:g}" for a in self.alphas)])
        array = (strip.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        return {f"perturbation strip ({labels}; delta {self.delta})": array}


class PerturbedPSNR(Metric):
    """PSNR of ``decode(perturbed ids)`` against the originals, at pFID's rates, draws and neighbourhoods.

    zoo's companion to pFID (not in RobusTok): the same perturbed decodes scored per image instead of
    by a Fréchet distance, so it needs no feature extractor and a few hundred images resolve small
    differences. Reported per alpha, their ``mean``, and ``drop``: clean PSNR minus that mean (how
    much the token errors cost, in dB).
    """

    name: ClassVar[str] = "perturbed-psnr"
    higher_is_better: ClassVar[bool | None] = True
    directions: ClassVar[dict[str, bool | None]] = {"drop": False}
    modalities: ClassVar[tuple[str, ...]] = ("image",)
    needs_decoder: ClassVar[bool] = True

    def __init__(self, alphas: list[float] | tuple[float, ...] = (0.1, 0.2, 0.3), delta: int | None = None,
                 delta_fraction: float = 0.025, seed: int = 0):
        super().__init__()
        self.perturbation = TokenPerturbation(self.name, alphas, delta, delta_fraction, seed)
        self.add_state("sums", torch.zeros(len(self.perturbation.alphas) + 1, dtype=torch.float64))  # clean last
        self.add_state("count", torch.zeros((), dtype=torch.float64))
        self.notes: list[str] = []

    def setup(self, tokenizer, data_key: str | None = None) -> None:
        self.notes = [self.perturbation.setup(tokenizer)]

    def reset(self) -> None:
        super().reset()
        self.perturbation.reset()

    def update(self, ctx: EvalContext) -> None:
        if self.perturbation.delta is None:
            self.setup(ctx.tokenizer)
        original, reconstruction = reconstruction_pair(ctx)  # the pair PSNR scores, shape-checked
        row = torch.zeros_like(self.sums)
        row[-1] = psnr(original, reconstruction).sum()
        for i, _, images in self.perturbation.decoded(ctx):
            row[i] = psnr(original, images.to(original.device)).sum()
        self.sums = self.sums + row
        self.count = self.count + len(original)

    def compute(self) -> dict[str, float]:
        if float(self.count) == 0:
            return {"mean": math.nan}
        means = (self.sums / self.count).tolist()
        values = {f"alpha={alpha:g}": means[i] for i, alpha in enumerate(self.perturbation.alphas)}
        values["mean"] = float(np.mean(list(values.values())))
        values["drop"] = means[-1] - values["mean"]
        return values
