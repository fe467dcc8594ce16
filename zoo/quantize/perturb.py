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
as the paper words it; a drawn token always changes to one of them. On a sign grid (LFQ: the 2^bits corners of
{-s, +s}^bits, ids = bit patterns) squared L2 is 4 s^2 x Hamming distance, so the neighbours are enumerated by
bit flips (``grid_nearest_codes``) instead of ranking all 2^bits codes; the table is the same.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, fields

import torch
from einops import rearrange

from zoo.errors import ZooError
from zoo.quantize.quantizer import Quantizer, QuantizerOutput

_MAX_DISTANCE_ELEMENTS = 1 << 24  # rows x codes per chunk when ranking distances (64 MB of float32)
_MAX_GRID_BITS = 57  # sign-grid ids and their sort key (shell << bits | id) stay inside int64


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


def sign_grid_bits(codebook: torch.Tensor) -> int | None:
    """``bits`` when ``codebook`` is the 2^bits corners of a sign grid in bit order, else ``None``.

    A sign grid: ``[2^bits, bits]``, every entry +-s for one s > 0, and each channel is one bit of the id
    (any channel-to-bit order, any polarity: Open-MAGVIT2's LSB-first and vector-quantize-pytorch's
    MSB-first LFQ both qualify). Then ``|e_a - e_b|^2 = 4 s^2 hamming(a, b)`` in id space. The check is
    exact (every entry compared) and costs O(K bits) comparisons, no distances.
    """
    if codebook.ndim != 2 or not 1 <= codebook.shape[1] <= _MAX_GRID_BITS:
        return None
    bits = codebook.shape[1]
    if codebook.shape[0] != 1 << bits:
        return None
    codebook = codebook.detach()
    first = codebook[0]  # [bits]
    scale = first[0].abs()
    if not (torch.isfinite(scale) and scale > 0 and (first.abs() == scale).all()):
        return None
    device = codebook.device
    powers = torch.ones(bits, dtype=torch.long, device=device) << torch.arange(bits, device=device)
    flips = codebook[powers] != first  # [bit, channel]: which channels id 2^bit changes
    if not (flips.sum(dim=1) == 1).all():
        return None
    channel_of_bit = flips.long().argmax(dim=1)  # [bits]
    if torch.unique(channel_of_bit).numel() != bits:
        return None
    # Codes 2^b .. 2^(b+1) - 1 are codes 0 .. 2^b - 1 with bit b's channel negated: by induction from code 0,
    # one pass of comparisons checks every entry.
    for bit, channel in enumerate(channel_of_bit.tolist()):
        low = codebook[: 1 << bit].clone()
        low[:, channel].neg_()
        if not torch.equal(low, codebook[1 << bit: 2 << bit]):
            return None
    return bits


def _flip_masks(bits: int, count: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Every bit mask of popcount 0, 1, 2, ... until at least ``count`` masks: ``(masks [M], popcounts [M])``."""
    masks, popcounts = [0], [0]
    for flipped in range(1, bits + 1):
        if len(masks) >= count:
            break
        # itertools, not torch.combinations: the latter builds all bits^flipped tuples before filtering.
        shell = [sum(1 << position for position in combo) for combo in itertools.combinations(range(bits), flipped)]
        masks += shell
        popcounts += [flipped] * len(shell)
    return (torch.tensor(masks, dtype=torch.long, device=device),
            torch.tensor(popcounts, dtype=torch.long, device=device))


def grid_nearest_codes(ids: torch.Tensor, bits: int, k: int) -> torch.Tensor:
    """``nearest_codes`` of each code ``ids [N]`` on a ``bits``-bit sign grid, by enumeration: ``[N, k]`` long.

    Distance is 4 s^2 x Hamming distance, so the ranking is the code itself, then the ids one bit flip away
    in increasing id, then two flips away, ...: exactly ``nearest_codes``' order (ties by lower id). Only
    the masks of the Hamming shells the k nearest reach are generated; no distance is computed.
    """
    if not 1 <= bits <= _MAX_GRID_BITS:
        raise ZooError(f"grid_nearest_codes: bits must lie in [1, {_MAX_GRID_BITS}], got {bits}")
    if not 1 <= k <= 1 << bits:
        raise ZooError(f"grid_nearest_codes: k must lie in [1, {1 << bits}], got {k}")
    ids = ids.reshape(-1).long()
    if ids.numel() and (ids.min() < 0 or ids.max() >= 1 << bits):
        raise ZooError(f"grid_nearest_codes: ids must lie in [0, {(1 << bits) - 1}], got {ids.min()}..{ids.max()}")
    masks, popcounts = _flip_masks(bits, k, ids.device)  # [M]
    shell = popcounts << bits  # sort key: Hamming shell first, then the neighbour's id
    rows = max(1, _MAX_DISTANCE_ELEMENTS // masks.numel())
    out = []
    for chunk in ids.split(rows):
        key = shell + (chunk.unsqueeze(1) ^ masks)  # [n, M]
        # Keys are distinct, so the k smallest in order are unambiguous; topk beats a full sort of the last shell.
        smallest = torch.topk(key, k, dim=1, largest=False, sorted=True).values
        out.append(smallest & ((1 << bits) - 1))
    return torch.cat(out) if out else torch.empty(0, k, dtype=torch.long, device=ids.device)


def code_neighbours(codebook: torch.Tensor, delta: int, ids: torch.Tensor | None = None,
                    sign_grid: bool | None = None) -> torch.Tensor:
    """The ``delta`` nearest other codes of each code (or of ``ids`` only): ``[K or len(ids), delta]``.

    ``sign_grid``: ``None`` detects a sign grid (``sign_grid_bits``) and enumerates its neighbours; ``True``
    declares one (``[2^bits, bits]``, not checked entry by entry); ``False`` always ranks all distances.
    Both paths give the same table.
    """
    _check_delta(delta, codebook.shape[0])
    rows = torch.arange(codebook.shape[0], device=codebook.device) if ids is None else ids
    bits = _grid_bits(codebook, sign_grid)
    if bits is not None:
        return grid_nearest_codes(rows, bits, delta + 1)[:, 1:]  # rank 0 is the code itself (no duplicates)
    ranked = nearest_codes(codebook[rows], codebook, delta + 1)  # [n, delta + 1]
    # Drop the code itself (distance 0); with duplicate codes it may not sit at rank 0, so mask by id.
    not_self = ranked != rows.unsqueeze(1)
    keep = not_self.cumsum(dim=1) <= delta
    return ranked[not_self & keep].view(-1, delta)


def _check_delta(delta: int, size: int) -> None:
    if not 1 <= delta < size:
        raise ZooError(f"delta must lie in [1, {size - 1}] for a codebook of {size} codes, got {delta}")


def _grid_bits(codebook: torch.Tensor, sign_grid: bool | None) -> int | None:
    """The sign grid's bit count to enumerate with, or ``None`` to rank distances (see ``code_neighbours``)."""
    if sign_grid is None:
        return sign_grid_bits(codebook)
    if not sign_grid:
        return None
    size, dim = codebook.shape[-2:]
    if not 1 <= dim <= _MAX_GRID_BITS or size != 1 << dim:
        raise ZooError(f"sign_grid=True: expected a codebook of [2^bits, bits] codes with bits <= {_MAX_GRID_BITS}, "
                       f"got {list(codebook.shape)}")
    return dim


def perturb_token_ids(ids: torch.Tensor, codebook: torch.Tensor, alpha: float, delta: int,
                      generator: torch.Generator | None = None, sign_grid: bool | None = None) -> torch.Tensor:
    """pFID's perturbation: each token, with probability alpha, becomes one of its delta nearest codes.

    ids ``[B, ...]`` (last axis = level when ``codebook`` is ``[q, K, D]``); the neighbours of a token
    are the codes nearest to its own code vector, itself excluded, drawn uniformly. Neighbour tables are
    built for the distinct ids of the drawn tokens only; ``sign_grid`` as in ``code_neighbours`` (LFQ grids
    are detected by default). The draws do not depend on either, so a seed gives the same result.
    """
    codebooks = codebook if codebook.ndim == 3 else codebook.unsqueeze(0)  # [q, K, D]
    levels = ids.unsqueeze(-1) if codebook.ndim == 2 else ids  # [..., q]
    if levels.shape[-1] != codebooks.shape[0]:
        raise ZooError(f"ids: last axis {levels.shape[-1]} does not match {codebooks.shape[0]} codebook levels")
    _check_delta(delta, codebooks.shape[1])  # also when no token is drawn and no table is built
    drawn = torch.rand(levels.shape, generator=generator, device=ids.device) < alpha
    ranks = torch.randint(0, delta, levels.shape, generator=generator, device=ids.device)
    result = levels.clone()
    for level in range(codebooks.shape[0]):
        column, chosen = levels[..., level], drawn[..., level]
        if not chosen.any():
            continue
        unique, inverse = torch.unique(column[chosen], return_inverse=True)
        table = code_neighbours(codebooks[level], delta, unique, sign_grid)  # [U, delta]
        result[..., level][chosen] = table[inverse, ranks[..., level][chosen]]
    return result if codebook.ndim == 3 else result.squeeze(-1)
