"""BEATs' normalised-EMA vector quantizer (``quantizer.py::NormEMAVectorQuantizer``).

Inputs and codes live on the unit sphere, so the nearest code by squared L2 is the one of highest
cosine. The codebook is initialised by cosine k-means (10 iterations) on the first training batch, then
follows an EMA of the l2-normalised mean of the vectors assigned to each code, re-normalised after
every update; a code no vector chose keeps its vector. The loss is BEATs'
``beta * ||sg[z_q] - z||^2`` with straight-through gradients (https://arxiv.org/abs/2212.09058, Eq. 2).

BEATs restarts no dead code. At small scale the codebook collapses onto a handful of codes, so
``dead_code_threshold > 0`` (off by default) adds EnCodec's remedy: a code whose EMA usage per batch
falls below the threshold is moved onto a random vector of the current batch.

vector-quantize-pytorch's cosine codebook averages sums rather than normalised means and, with a mask,
applies its commitment loss to the un-normalised input, so the update is written here; its k-means
is reused for the initialisation. Padding positions never reach the codebook statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import distributed as dist
from torch import nn


def _all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


class NormEMAVectorQuantizer(nn.Module):
    """``z [B, N, D]`` + padding mask ``[B, N]`` -> ``(z_q [B, N, D] unit vectors, ids [B, N], loss)``.

    Args:
        codebook_size, dim: the codebook ``[K, D]`` (BEATs: 1024 x 256).
        decay: EMA decay of the codebook (0.99).
        beta: weight of the commitment term (BEATs: 1.0).
        kmeans_iters: cosine k-means iterations of the initialisation (10).
        dead_code_threshold: restart codes whose EMA usage per batch is below this (0: never, as BEATs).
    """

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        decay: float = 0.99,
        beta: float = 1.0,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 0.0,
    ):
        super().__init__()
        self.codebook_size = codebook_size
        self.decay = decay
        self.beta = beta
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        self.register_buffer("codebook", F.normalize(torch.randn(codebook_size, dim), dim=-1))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("initted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def _kmeans_init(self, vectors: torch.Tensor) -> None:
        """Cosine k-means on the first batch's (valid, normalised) vectors ``[M, D]``."""
        from vector_quantize_pytorch.vector_quantize_pytorch import kmeans

        means, bins = kmeans(vectors.unsqueeze(0), self.codebook_size, self.kmeans_iters, use_cosine_sim=True)
        means, bins = means[0].to(self.codebook), bins[0].to(self.cluster_size)
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(means, src=0)
            dist.broadcast(bins, src=0)
        self.codebook.copy_(means)
        self.cluster_size.copy_(bins)
        self.initted.fill_(True)

    @torch.no_grad()
    def _ema_update(self, vectors: torch.Tensor, ids: torch.Tensor) -> None:
        """EMA of the normalised per-code means; unused codes keep their vector."""
        onehot = F.one_hot(ids, self.codebook_size).to(vectors.dtype)  # [M, K]
        bins = _all_reduce(onehot.sum(0))  # [K]
        sums = _all_reduce(onehot.t() @ vectors)  # [K, D]
        self.cluster_size.mul_(self.decay).add_(bins, alpha=1 - self.decay)
        used = bins > 0
        means = F.normalize(sums / bins.clamp(min=1).unsqueeze(1), dim=-1)
        means = torch.where(used.unsqueeze(1), means, self.codebook)
        self.codebook.copy_(F.normalize(self.codebook * self.decay + means * (1 - self.decay), dim=-1))

    @torch.no_grad()
    def _restart_dead_codes(self, vectors: torch.Tensor) -> None:
        """Move codes used less than ``dead_code_threshold`` times per batch onto random batch vectors."""
        dead = self.cluster_size < self.dead_code_threshold
        count = int(dead.sum())
        if count == 0:
            return
        picks = vectors[torch.randint(len(vectors), (count,), device=vectors.device)]
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(picks, src=0)
        self.codebook[dead] = picks
        self.cluster_size[dead] = self.dead_code_threshold

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Ids of the nearest codes by squared L2 for unit vectors ``z [..., D]``."""
        distances = 2 - 2 * z @ self.codebook.t()  # ||z - c||^2 for unit z, c
        return distances.argmin(dim=-1)

    def forward(self, z: torch.Tensor, pad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = F.normalize(z.float(), dim=-1)
            valid = ~pad
            if self.training and not bool(self.initted) and valid.any():
                self._kmeans_init(z[valid].detach())
            ids = self.nearest(z)  # [B, N]
            z_q = self.codebook[ids]  # [B, N, D]
            if self.training and valid.any():
                self._ema_update(z[valid].detach(), ids[valid])
                if self.dead_code_threshold > 0:
                    self._restart_dead_codes(z[valid].detach())
            if valid.any():
                loss = self.beta * F.mse_loss(z_q[valid].detach(), z[valid])
            else:
                loss = z.sum() * 0.0
            z_q = z + (z_q - z).detach()  # straight-through
        return z_q, ids, loss
