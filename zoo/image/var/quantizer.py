"""VAR's multi-scale residual quantiser (a port of ``VectorQuantizer2`` in FoundationVision/VAR ``models/quant.py``).

Tian et al., https://arxiv.org/abs/2404.02905, algorithm 1 (encoding) and 2 (reconstruction). One codebook,
``K`` scales ``s_1 < ... < s_K`` (``v_patch_nums``), the last the latent grid::

    f_rest = f, f_hat = 0                                        f [B, C, s_K, s_K]
    for k in 1..K:
        r_k  = area-downsample(f_rest, s_k)        (the last scale: f_rest itself)
        ids_k = nearest code of each position of r_k               ids_k [B, s_k * s_k]
        h_k  = phi_k(bicubic-upsample(E[ids_k], s_K))  (the last scale: no resampling)
        f_hat += h_k,  f_rest -= h_k

``phi_k(h) = (1 - r) h + r conv3x3(h)`` with ``r = quant_resi`` (0.5). VAR shares ``share_quant_resi`` convs
among the K scales: scale ``k`` uses the conv whose tick in ``linspace(1/3/n, 1 - 1/3/n, n)`` (n = 4; other
counts use ``1/2/n``) lies nearest to ``k / (K - 1)`` (``PhiPartiallyShared``); 1 shares one conv (``PhiShared``),
0 gives each scale its own (``PhiNonShared``); ``quant_resi: 0`` makes every phi the identity.

Decoding from ids (``latent_from_ids``) repeats the ``h_k`` sums, so ``encode`` then ``decode`` gives exactly the
``f_hat`` the encoder built. The nearest code is Euclidean (``using_znorm: false``, VAR's released VQVAE) or
cosine (``using_znorm: true``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from zoo.errors import ZooError


def checked_scales(scales) -> tuple[int, ...]:
    """Strictly increasing positive sides, at least two (the phi schedule divides by ``K - 1``)."""
    scales = tuple(int(s) for s in scales)
    if len(scales) < 2 or scales[0] < 1 or any(b <= a for a, b in zip(scales, scales[1:])):
        raise ZooError(f"v_patch_nums: expected at least two strictly increasing positive scales (coarse to fine, "
                       f"e.g. [1, 2, 3, 4, 5, 6, 8, 10, 13, 16]), got {list(scales)}")
    return scales


def phi_schedule(num_scales: int, num_phi: int) -> list[int]:
    """Which of ``num_phi`` shared convs each scale uses: the nearest tick to ``k / (K - 1)``, ties to the first.

    Computed with numpy in float64 as the authors do, because the schedule has exact ties (for K = 10 and four
    convs, 2/9 lies as far from 1/12 as from 13/36) that only their rounding decides."""
    count = num_phi
    ticks = np.linspace(1 / 3 / count, 1 - 1 / 3 / count, count) if count == 4 else \
        np.linspace(1 / 2 / count, 1 - 1 / 2 / count, count)
    return [int(np.argmin(np.abs(ticks - k / (num_scales - 1)))) for k in range(num_scales)]


class Phi(nn.Conv2d):
    """``(1 - r) h + r conv3x3(h)``: the residual conv VAR applies to each scale's upsampled codes."""

    def __init__(self, channels: int, ratio: float):
        super().__init__(channels, channels, 3, padding=1)
        self.ratio = abs(ratio)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * (1 - self.ratio) + super().forward(h) * self.ratio


class MultiScaleQuantizer(nn.Module):
    """One codebook ``[vocab_size, dim]`` over ``scales``; ids per scale, coarse to fine (see the module docstring)."""

    def __init__(self, vocab_size: int, dim: int, scales, quant_resi: float = 0.5, share_quant_resi: int = 4,
                 default_qresi_counts: int = 0, using_znorm: bool = False):
        super().__init__()
        self.scales = checked_scales(scales)
        if vocab_size < 2 or dim < 1:
            raise ZooError(f"vocab_size must be >= 2 and z_channels >= 1, got {vocab_size} and {dim}")
        if share_quant_resi < 0 or default_qresi_counts < 0:
            raise ZooError(f"share_quant_resi and default_qresi_counts must be >= 0, got {share_quant_resi} and "
                           f"{default_qresi_counts}")
        self.using_znorm = bool(using_znorm)
        self.embedding = nn.Embedding(vocab_size, dim)
        count = {0: default_qresi_counts or len(self.scales), 1: 1}.get(share_quant_resi, share_quant_resi)
        identity = abs(quant_resi) <= 1e-6  # the authors' test: no conv at all, phi is the identity
        self.phi = nn.ModuleList([] if identity else [Phi(dim, quant_resi) for _ in range(count)])
        self.phi_index = [0] * len(self.scales) if count == 1 else phi_schedule(len(self.scales), count)

    @property
    def num_tokens(self) -> int:
        return sum(s * s for s in self.scales)

    def scale_slices(self) -> list[tuple[int, slice]]:
        """``(side, slice of the flat ids)`` for every scale, coarse to fine."""
        out, start = [], 0
        for side in self.scales:
            out.append((side, slice(start, start + side * side)))
            start += side * side
        return out

    def _phi(self, index: int, h: torch.Tensor) -> torch.Tensor:
        return self.phi[self.phi_index[index]](h) if len(self.phi) else h

    def _scale_codes(self, index: int, codes: torch.Tensor, contiguous: bool) -> torch.Tensor:
        """``h_k``: one scale's codes ``[B, C, s_k, s_k]`` brought to the latent grid and through its phi.

        The codes arrive as channels-last views of the embedding rows. The authors make them contiguous before
        phi when encoding and not when decoding; the conv rounds differently in the two layouts, so each path
        keeps theirs and a converted checkpoint gives their floats exactly."""
        side = self.scales[-1]
        if index != len(self.scales) - 1:
            codes = F.interpolate(codes, size=(side, side), mode="bicubic")
        return self._phi(index, codes.contiguous() if contiguous else codes)

    def _nearest(self, rest: torch.Tensor) -> torch.Tensor:
        """Rows ``[N, C]`` -> nearest code ids ``[N]`` (the authors' expansion of the squared distance)."""
        codes = self.embedding.weight
        if self.using_znorm:
            return torch.argmax(F.normalize(rest, dim=-1) @ F.normalize(codes.T, dim=0), dim=1)
        distance = rest.square().sum(dim=1, keepdim=True) + codes.square().sum(dim=1)
        return torch.argmin(torch.addmm(distance, rest, codes.T, alpha=-2, beta=1), dim=1)

    def ids_from_latent(self, f: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, C, s_K, s_K]`` -> ids ``[B, L]``, ``L = sum(s_k^2)``, scale after scale, row-major within."""
        side = self.scales[-1]
        if f.ndim != 4 or tuple(f.shape[-2:]) != (side, side):
            raise ZooError(f"multi-scale quantiser input: expected [B, C, {side}, {side}] (the last scale is the "
                           f"latent grid), got {list(f.shape)}")
        rest, ids = f.detach().float().clone(), []
        for index, scale in enumerate(self.scales):
            coarse = rest if index == len(self.scales) - 1 else F.interpolate(rest, size=(scale, scale), mode="area")
            found = self._nearest(rearrange(coarse, "b c h w -> (b h w) c"))
            codes = rearrange(self.embedding(found), "(b h w) c -> b c h w", b=f.shape[0], h=scale)
            rest = rest - self._scale_codes(index, codes, contiguous=True)
            ids.append(found.view(f.shape[0], scale * scale))
        return torch.cat(ids, dim=1)

    def latent_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, L]`` -> ``f_hat`` ``[B, C, s_K, s_K]``: every scale's ``h_k`` summed (VAR's ``embed_to_fhat``)."""
        if ids.ndim != 2 or ids.shape[1] != self.num_tokens:
            raise ZooError(f"ids: expected [B, {self.num_tokens}] (scales {list(self.scales)}), got {list(ids.shape)}")
        grid = self.scales[-1]
        # A contiguous sum added into in place, as the authors': post_quant_conv then sees their memory layout.
        f_hat = self.embedding.weight.new_zeros(ids.shape[0], self.embedding.embedding_dim, grid, grid)
        for index, (side, part) in enumerate(self.scale_slices()):
            codes = rearrange(self.embedding(ids[:, part]), "b (h w) c -> b c h w", h=side)
            f_hat.add_(self._scale_codes(index, codes, contiguous=False))
        return f_hat
