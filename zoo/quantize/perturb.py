"""Latent perturbation (RobusTok, "Robust Latent Matters", https://arxiv.org/abs/2503.08354).

A plug-in for any quantiser with a codebook (``zoo.quantize.Quantizer``: VQ, residual VQ, and FSQ /
LFQ through their implicit codebooks), shared by training and by the pFID metric.

Training (``latent_perturbation``), following the public code (``add_perturbation`` in
lxa9867/ImageFolder) rather than the paper's wording where they differ:

* ``beta`` -- fraction of images perturbed: the **first** ``floor(B * beta)`` images of the batch;
  the others keep the clean quantisation.
* ``delta`` -- neighbourhood: the ``delta`` codes **nearest to the encoder output z** (in the
  quantiser's code space: l2-normalised for cosine VQ, the per-level residual for residual VQ).
* ``alpha`` -- per-token probability of drawing a replacement: a drawn token takes a uniform rank
  in ``[0, delta)`` of that neighbourhood (rank 0, the clean code, stays possible with
  probability 1/delta); an undrawn token keeps its clean code.
* straight-through: ``z + (e_perturbed - z).detach()``, so the decoder sees the perturbed codes
  and the encoder still gets the reconstruction gradient. Codebook and commitment losses come from
  the clean quantisation; decoder-side losses (reconstruction, perceptual, GAN) use the perturbed one.

Annealing (``PerturbationSchedule``): ``alpha`` and ``delta`` are multiplied by a ratio that is 1
before ``anneal_start``, falls linearly to ``end_ratio`` at ``anneal_end`` and stays there;
``delta = max(1, floor(ratio * delta0))``. The public code computes ``1 - t * end_ratio``, which
is continuous only for its default ``end_ratio = 0.5``; here the ramp ends at ``end_ratio`` for every
value (identical at 0.5). Units are epochs, ``steps_per_epoch`` converts trainer steps.

Evaluation (``perturb_token_ids``, used by pFID): there is no encoder output, only ids, so the
neighbourhood of a token is the ``delta`` codes nearest to **its own code** e_k (itself excluded),
as the paper words it; a drawn token always changes to one of them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from einops import rearrange

from zoo.errors import ZooError
from zoo.quantize.quantizer import Quantizer, QuantizerOutput

_MAX_DISTANCE_ELEMENTS = 1 << 24  # rows x codes per chunk when ranking distances (64 MB of float32)


@dataclass(frozen=True)
class PerturbationSchedule:
    """RobusTok's latent-perturbation settings (defaults: the paper's 256^2 ImageNet recipe)."""

    alpha: float = 1.0
    beta: float = 0.1
    delta: int = 100
    anneal_start: float = 40.0
    anneal_end: float = 120.0
    end_ratio: float = 0.5
    steps_per_epoch: int = 1

    def __post_init__(self) -> None:
        checks = {
            "alpha": 0.0 <= self.alpha <= 1.0,
            "beta": 0.0 <= self.beta <= 1.0,
            "delta": isinstance(self.delta, int) and self.delta >= 1,
            "end_ratio": 0.0 <= self.end_ratio <= 1.0,
            "anneal_end": self.anneal_end >= self.anneal_start,
            "steps_per_epoch": isinstance(self.steps_per_epoch, int) and self.steps_per_epoch >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                expected = {
                    "alpha": "a probability in [0, 1]",
                    "beta": "a fraction in [0, 1]",
                    "delta": "an integer >= 1",
                    "end_ratio": "a ratio in [0, 1]",
                    "anneal_end": f">= anneal_start ({self.anneal_start})",
                    "steps_per_epoch": "an integer >= 1",
                }[name]
                raise ZooError(f"perturbation.{name}: expected {expected}, got {getattr(self, name)!r}")

    @classmethod
    def from_config(cls, config: dict | None) -> PerturbationSchedule | None:
        """Build from a model config mapping; ``None`` (or ``{}``) means no perturbation."""
        if not config:
            return None
        if not isinstance(config, dict):
            raise ZooError(f"perturbation: expected a mapping of settings, got {type(config).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ZooError(f"perturbation: unknown setting(s) {unknown}; expected some of {sorted(known)}")
        return cls(**config)

    def as_dict(self) -> dict:
        return asdict(self)

    def ratio(self, step: int) -> float:
        """The annealing ratio at a trainer step (epoch = step // steps_per_epoch)."""
        return anneal_ratio(step // self.steps_per_epoch, self.anneal_start, self.anneal_end, self.end_ratio)

    def at_step(self, step: int) -> tuple[float, int]:
        """(alpha, delta) in force at a trainer step."""
        ratio = self.ratio(step)
        return self.alpha * ratio, max(1, int(ratio * self.delta))


def anneal_ratio(epoch: float, anneal_start: float, anneal_end: float, end_ratio: float) -> float:
    """1 before ``anneal_start``, linear down to ``end_ratio`` at ``anneal_end``, ``end_ratio`` after."""
    if epoch < anneal_start:
        return 1.0
    if epoch >= anneal_end:
        return end_ratio
    progress = (epoch - anneal_start) / (anneal_end - anneal_start)
    return 1.0 - progress * (1.0 - end_ratio)


def perturbed_image_count(batch_size: int, beta: float) -> int:
    """floor(B * beta), robust to float error: 100 * 0.29 is 28.999999999999996 in floats, the count is 29."""
    return int(math.floor(batch_size * beta + 1e-9))


def nearest_codes(queries: torch.Tensor, codebook: torch.Tensor, k: int) -> torch.Tensor:
    """Ids of the ``k`` codes nearest (squared L2) to each query, nearest first, ties by lower id.

    queries ``[N, D]``, codebook ``[K, D]`` -> ``[N, k]`` long. Rows are processed in chunks so memory
    stays bounded for large codebooks.
    """
    if queries.ndim != 2 or codebook.ndim != 2 or queries.shape[1] != codebook.shape[1]:
        raise ZooError(f"nearest_codes: expected queries [N, D] and codebook [K, D], got "
                       f"{list(queries.shape)} and {list(codebook.shape)}")
    if not 1 <= k <= codebook.shape[0]:
        raise ZooError(f"nearest_codes: k must lie in [1, {codebook.shape[0]}], got {k}")
    codebook = codebook.detach().float()
    code_norms = codebook.pow(2).sum(dim=1)  # [K]
    rows = max(1, _MAX_DISTANCE_ELEMENTS // codebook.shape[0])
    out = []
    for chunk in queries.detach().float().split(rows):
        distances = chunk.pow(2).sum(dim=1, keepdim=True) - 2 * chunk @ codebook.T + code_norms  # [n, K]
        # Rounding can make equal distances differ in the last bit; snap them so ties break by id. The snap is
        # relative to each row's largest distance: a fixed number of decimals merges every code of a codebook
        # whose distances are all small (unit-norm or tiny latents) into one tie.
        scale = distances.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(distances.dtype).tiny)
        distances = torch.round(distances / scale, decimals=6)
        out.append(torch.sort(distances, dim=1, stable=True).indices[:, :k])
    return torch.cat(out) if out else torch.empty(0, k, dtype=torch.long)


def sample_ranks(shape: tuple[int, ...], alpha: float, delta: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-token neighbourhood ranks: 0 with probability 1 - alpha, else uniform in [0, delta)."""
    drawn = torch.rand(shape, generator=generator, device=device) < alpha
    ranks = torch.randint(0, delta, shape, generator=generator, device=device)
    return torch.where(drawn, ranks, torch.zeros_like(ranks))


@dataclass
class PerturbedLatent:
    """The decoder's input after latent perturbation, and what was done to produce it."""

    quantized: torch.Tensor  # [B, D, h, w]
    indices: torch.Tensor  # ids actually decoded, shaped like QuantizerOutput.indices
    changed: torch.Tensor  # bool, shaped like indices: id differs from the clean one
    num_perturbed_images: int


def latent_perturbation(quantizer: Quantizer, out: QuantizerOutput, alpha: float, beta: float, delta: int,
                        generator: torch.Generator | None = None) -> PerturbedLatent:
    """Perturb the first floor(B * beta) images of a quantised batch (see the module docstring).

    https://arxiv.org/abs/2503.08354, section 3 ("latent perturbation"): each token of a perturbed
    image is, with probability alpha, swapped for one of the delta codes nearest to its encoder output.
    """
    batch = out.quantized.shape[0]
    count = perturbed_image_count(batch, beta)
    clean = PerturbedLatent(out.quantized, out.indices, torch.zeros_like(out.indices, dtype=torch.bool), 0)
    if count == 0 or alpha <= 0.0:
        return clean
    codebooks = quantizer.level_codebooks()  # [q, K, D]
    delta = min(int(delta), codebooks.shape[1])
    ids = out.indices if out.indices.ndim == 4 else out.indices.unsqueeze(-1)  # [B, h, w, q]
    queries = out.queries[:count]  # [n, h, w, q, D]
    ranks = sample_ranks(tuple(ids[:count].shape), alpha, delta, generator, device=ids.device)  # [n, h, w, q]
    chosen = ids[:count].clone()
    for level in range(codebooks.shape[0]):
        flat_queries = rearrange(queries[..., level, :], "n h w d -> (n h w) d")
        neighbours = nearest_codes(flat_queries, codebooks[level], delta)  # [(n h w), delta]
        picked = neighbours.gather(1, rearrange(ranks[..., level], "n h w -> (n h w) 1")).view_as(ranks[..., level])
        # Rank 0 keeps the clean id (the nearest code, up to ties); drawn ranks take the neighbour.
        chosen[..., level] = torch.where(ranks[..., level] > 0, picked, ids[:count, ..., level])
    codes = quantizer.indices_to_codes(chosen).to(out.latent.dtype)  # [n, D, h, w]
    latent = out.latent[:count]
    perturbed = latent + (codes - latent).detach()  # straight-through to the encoder
    quantized = torch.cat([perturbed, out.quantized[count:]])
    new_ids = torch.cat([chosen, ids[count:]])
    if out.indices.ndim == 3:
        new_ids = new_ids.squeeze(-1)
    return PerturbedLatent(quantized, new_ids, new_ids != out.indices, count)


def code_neighbours(codebook: torch.Tensor, delta: int, ids: torch.Tensor | None = None) -> torch.Tensor:
    """The ``delta`` nearest other codes of each code (or of ``ids`` only): ``[K or len(ids), delta]``."""
    if not 1 <= delta < codebook.shape[0]:
        raise ZooError(f"delta must lie in [1, {codebook.shape[0] - 1}] for a codebook of {codebook.shape[0]} codes, "
                       f"got {delta}")
    rows = torch.arange(codebook.shape[0], device=codebook.device) if ids is None else ids
    ranked = nearest_codes(codebook[rows], codebook, delta + 1)  # [n, delta + 1]
    # Drop the code itself (distance 0); with duplicate codes it may not sit at rank 0, so mask by id.
    not_self = ranked != rows.unsqueeze(1)
    keep = not_self.cumsum(dim=1) <= delta
    return ranked[not_self & keep].view(-1, delta)


def perturb_token_ids(ids: torch.Tensor, codebook: torch.Tensor, alpha: float, delta: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """pFID's perturbation: each token, with probability alpha, becomes one of its delta nearest codes.

    ids ``[B, ...]`` (last axis = level when ``codebook`` is ``[q, K, D]``); the neighbours of a token
    are the codes nearest to its own code vector, itself excluded, drawn uniformly.
    """
    codebooks = codebook if codebook.ndim == 3 else codebook.unsqueeze(0)  # [q, K, D]
    levels = ids.unsqueeze(-1) if codebook.ndim == 2 else ids  # [..., q]
    if levels.shape[-1] != codebooks.shape[0]:
        raise ZooError(f"ids: last axis {levels.shape[-1]} does not match {codebooks.shape[0]} codebook levels")
    drawn = torch.rand(levels.shape, generator=generator, device=ids.device) < alpha
    ranks = torch.randint(0, delta, levels.shape, generator=generator, device=ids.device)
    result = levels.clone()
    for level in range(codebooks.shape[0]):
        column = levels[..., level]
        unique, inverse = torch.unique(column, return_inverse=True)
        table = code_neighbours(codebooks[level], delta, unique)  # [U, delta]
        replacement = table[inverse, ranks[..., level]]
        result[..., level] = torch.where(drawn[..., level], replacement, column)
    return result if codebook.ndim == 3 else result.squeeze(-1)
