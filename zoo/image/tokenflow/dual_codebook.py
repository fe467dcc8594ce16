"""TokenFlow's dual codebook: a semantic and a pixel codebook that share one index.

TokenFlow (Qu et al., https://arxiv.org/abs/2412.03069, section 3.2, "shared mapping") keeps two
l2-normalised tables of the same size K, ``E_sem [K, D_sem]`` and ``E_pix [K, D_pix]``. A position
with features ``(z_sem, z_pix)`` (each l2-normalised) takes the one id minimising both distances::

    i* = argmin_i  ||z_sem - E_sem[i]||^2 + w_pix * ||z_pix - E_pix[i]||^2

and its code is the concatenation ``[E_sem[i*]; E_pix[i*]]``: one token, two views. Losses are the
VQ-VAE pair on the concatenated vectors (codebook ``||sg(z) - z_q||^2``, commitment
``||z - sg(z_q)||^2``) with a straight-through gradient. ``MultiScaleDualCodebook`` adds VAR's
multi-scale residual quantisation (Tian et al., https://arxiv.org/abs/2404.02905, algorithm 1):
area-downsample the residual to each scale, quantise it with the same codebook, bicubic-upsample,
accumulate; ids of all scales are concatenated coarse to fine.

``restart_unused_after`` (0: off, as in TokenFlow's code) is zoo's remedy for unused codes, the
dead-code restart of VQ practice (Dhariwal et al.'s Jukebox, vector-quantize-pytorch's
``threshold_ema_dead_code``): a code that no position chose in that many consecutive training batches is
moved onto a random latent of the next batch, both halves at once since they share the index.
Under ``torch.distributed`` the choices are agreed across processes (hits summed, new codes from rank 0).
"""

from __future__ import annotations

import random

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from zoo.errors import ZooError

_MAX_DISTANCE_ELEMENTS = 1 << 24  # rows x codes per chunk when computing distances (64 MB of float32)


class DualCodebook(nn.Module):
    """Two l2-normalised codebooks ``[K, D_sem]`` and ``[K, D_pix]`` with one shared index."""

    def __init__(self, codebook_size: int, semantic_dim: int, pixel_dim: int, pixel_weight: float = 1.0,
                 restart_unused_after: int = 0):
        super().__init__()
        if codebook_size < 2 or semantic_dim < 1 or pixel_dim < 1:
            raise ZooError(f"dual codebook: codebook_size must be >= 2 and semantic_dim, pixel_dim >= 1, got "
                           f"{codebook_size}, {semantic_dim}, {pixel_dim}")
        if pixel_weight < 0:
            raise ZooError(f"pixel_weight: expected a weight >= 0, got {pixel_weight}")
        if not isinstance(restart_unused_after, int) or restart_unused_after < 0:
            raise ZooError(f"restart_unused_after: expected a number of training steps >= 0 (0: never restart "
                           f"unused codes), got {restart_unused_after!r}")
        self.codebook_size, self.semantic_dim, self.pixel_dim = codebook_size, semantic_dim, pixel_dim
        self.pixel_weight = float(pixel_weight)
        self.restart_unused_after = restart_unused_after
        if restart_unused_after:  # saved with the weights, so a resumed run restarts the same codes
            self.register_buffer("idle_steps", torch.zeros(codebook_size, dtype=torch.long))
        # TokenFlow's initialisation: uniform in [-1/K, 1/K], then onto the unit sphere.
        self.semantic = nn.Parameter(F.normalize(torch.empty(codebook_size, semantic_dim).uniform_(
            -1.0 / codebook_size, 1.0 / codebook_size), dim=-1))
        self.pixel = nn.Parameter(F.normalize(torch.empty(codebook_size, pixel_dim).uniform_(
            -1.0 / codebook_size, 1.0 / codebook_size), dim=-1))

    @property
    def code_dim(self) -> int:
        return self.semantic_dim + self.pixel_dim

    def codebooks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalised tables ``([K, D_sem], [K, D_pix])``."""
        return F.normalize(self.semantic, dim=-1), F.normalize(self.pixel, dim=-1)

    @property
    def codebook(self) -> torch.Tensor:
        """Concatenated codes ``[K, D_sem + D_pix]``: what a token id stands for."""
        return torch.cat(self.codebooks(), dim=-1)

    def split(self, z: torch.Tensor, dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.split(z, [self.semantic_dim, self.pixel_dim], dim=dim)

    def distances(self, z_sem: torch.Tensor, z_pix: torch.Tensor) -> torch.Tensor:
        """``d_sem + w_pix * d_pix`` ``[N, K]`` for normalised rows ``[N, D_sem]``, ``[N, D_pix]``."""
        e_sem, e_pix = self.codebooks()
        # ||a - b||^2 = 2 - 2 a.b for unit vectors.
        return (2 - 2 * z_sem @ e_sem.t()) + self.pixel_weight * (2 - 2 * z_pix @ e_pix.t())

    @torch.no_grad()
    def nearest(self, z_sem: torch.Tensor, z_pix: torch.Tensor) -> torch.Tensor:
        """The shared index ``i*`` ``[N]`` (TokenFlow's shared mapping), in chunks of rows."""
        rows = max(1, _MAX_DISTANCE_ELEMENTS // self.codebook_size)
        return torch.cat([self.distances(z_sem[i:i + rows], z_pix[i:i + rows]).argmin(dim=-1)
                          for i in range(0, z_sem.shape[0], rows)]) if z_sem.shape[0] else z_sem.new_zeros(0).long()

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[...]`` -> concatenated codes ``[..., D_sem + D_pix]``."""
        return self.codebook[ids]

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Features ``[B, D_sem + D_pix, h, w]`` -> (codes with a straight-through gradient, ids ``[B, h, w]``,
        unweighted ``codebook`` / ``commitment`` losses). Each half is l2-normalised before the lookup."""
        self._check_grid(z)
        self.restart_idle_codes(z)
        quantized, ids, losses = self._quantize_grid(z)
        self.count_idle_steps(ids)
        return quantized, ids, losses

    # Restarts happen at the start of a step, before the codes enter the autograd graph: changing them after
    # the lookup would invalidate the backward pass of that step.
    @torch.no_grad()
    def restart_idle_codes(self, z: torch.Tensor) -> None:
        """Move codes idle for ``restart_unused_after`` steps onto random positions of features ``[B, D, h, w]``
        (each half l2-normalised). Nothing happens in eval mode or when off."""
        if not (self.restart_unused_after and self.training):
            return
        idle = (self.idle_steps >= self.restart_unused_after).nonzero().flatten()
        if not len(idle):
            return
        rows = rearrange(z.detach(), "b d h w -> (b h w) d")
        picks = rows[torch.randint(len(rows), (len(idle),), device=rows.device)].contiguous()
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(picks, src=0)  # every process moves the same codes to the same place
        semantic, pixel = self.split(picks.to(self.semantic.dtype), dim=1)
        self.semantic[idle] = F.normalize(semantic, dim=-1)
        self.pixel[idle] = F.normalize(pixel, dim=-1)
        self.idle_steps[idle] = 0

    @torch.no_grad()
    def count_idle_steps(self, ids: torch.Tensor) -> None:
        """One training step's ids (-1 for absent tokens): reset the idle count of every chosen code, add one to
        the rest. Hits are summed over processes so all agree on which codes are idle."""
        if not (self.restart_unused_after and self.training):
            return
        hits = torch.zeros(self.codebook_size, device=ids.device)
        hits[ids[ids >= 0]] = 1.0
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(hits)
        self.idle_steps.copy_(torch.where(hits > 0, torch.zeros_like(self.idle_steps), self.idle_steps + 1))

    def _check_grid(self, z: torch.Tensor) -> None:
        if z.ndim != 4 or z.shape[1] != self.code_dim:
            raise ZooError(f"dual codebook input: expected [B, {self.code_dim}, h, w], got {list(z.shape)}")

    def _quantize_grid(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """One grid through the shared index; callers have checked its shape."""
        height, width = z.shape[-2:]
        z_sem, z_pix = (F.normalize(part, dim=1) for part in self.split(z))
        flat_sem = rearrange(z_sem, "b d h w -> (b h w) d")
        flat_pix = rearrange(z_pix, "b d h w -> (b h w) d")
        ids = self.nearest(flat_sem.detach(), flat_pix.detach())  # [B*h*w]
        latent = torch.cat([z_sem, z_pix], dim=1)  # [B, D, h, w], the vectors the codes were chosen for
        codes = rearrange(self.lookup(ids), "(b h w) d -> b d h w", h=height, w=width)
        losses = {
            "codebook": (codes - latent.detach()).square().mean(),  # moves the codes
            "commitment": (codes.detach() - latent).square().mean(),  # keeps the encoders near their codes
        }
        quantized = latent + (codes - latent).detach()  # straight-through
        return quantized, rearrange(ids, "(b h w) -> b h w", h=height, w=width), losses


class MultiScaleDualCodebook(DualCodebook):
    """VAR-style residual quantisation over square ``scales`` (coarse to fine, the last one the token grid).

    ``quantize`` returns the accumulated codes ``[B, D, s, s]`` and ids ``[B, L]`` with
    ``L = sum(scale ** 2)``; ``codes_from_ids`` rebuilds the same accumulated codes from ids. With
    ``scale_drop > 0``, a training batch skips one random scale (never the first) with that probability,
    as TokenFlow does, so the decoder also sees partial sums (the dropped scale's ids are -1).
    """

    def __init__(self, codebook_size: int, semantic_dim: int, pixel_dim: int, scales: list[int],
                 pixel_weight: float = 1.0, scale_drop: float = 0.0, restart_unused_after: int = 0):
        super().__init__(codebook_size, semantic_dim, pixel_dim, pixel_weight, restart_unused_after)
        scales = [int(s) for s in scales]
        if not scales or any(s < 1 for s in scales) or scales != sorted(set(scales)):
            raise ZooError(f"scales: expected strictly increasing positive sizes (coarse to fine), got {scales}")
        if not 0.0 <= scale_drop <= 1.0:
            raise ZooError(f"scale_drop: expected a probability in [0, 1], got {scale_drop}")
        self.scales, self.scale_drop = scales, float(scale_drop)

    @property
    def num_tokens(self) -> int:
        return sum(s * s for s in self.scales)

    def _upsample(self, codes: torch.Tensor) -> torch.Tensor:
        side = self.scales[-1]
        return codes if codes.shape[-1] == side else F.interpolate(codes, size=(side, side), mode="bicubic",
                                                                   align_corners=False)

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        side = self.scales[-1]
        if z.ndim != 4 or z.shape[1] != self.code_dim or z.shape[-2:] != (side, side):
            raise ZooError(f"multi-scale dual codebook input: expected [B, {self.code_dim}, {side}, {side}] (the last "
                           f"scale is the token grid), got {list(z.shape)}")
        dropped = -1
        if self.training and len(self.scales) > 2 and random.random() < self.scale_drop:
            dropped = random.randrange(1, len(self.scales) - 1)  # never the first or the full-resolution scale
        residual, accumulated = z, torch.zeros_like(z)
        all_ids, all_losses = [], []
        self.restart_idle_codes(z)  # once per step, before any scale looks codes up
        for index, scale in enumerate(self.scales):
            if index == dropped:  # its tokens are absent: ids -1
                all_ids.append(torch.full((z.shape[0], scale * scale), -1, dtype=torch.long, device=z.device))
                continue
            coarse = F.interpolate(residual, size=(scale, scale), mode="area") if scale != side else residual
            quantized, ids, losses = self._quantize_grid(coarse)
            upsampled = self._upsample(quantized)
            accumulated = accumulated + upsampled
            residual = residual - upsampled.detach()
            all_ids.append(rearrange(ids, "b h w -> b (h w)"))
            all_losses.append(losses)
        losses = {name: sum(step[name] for step in all_losses) / len(all_losses) for name in all_losses[0]}
        ids = torch.cat(all_ids, dim=1)
        self.count_idle_steps(ids)  # one step over all scales
        return accumulated, ids, losses

    def scale_slices(self) -> list[tuple[int, slice]]:
        """``(scale, slice of the flat ids)`` for every scale."""
        out, start = [], 0
        for scale in self.scales:
            out.append((scale, slice(start, start + scale * scale)))
            start += scale * scale
        return out

    def codes_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, L]`` -> accumulated codes ``[B, D, s, s]`` (what ``quantize`` returned for them)."""
        if ids.ndim != 2 or ids.shape[1] != self.num_tokens:
            raise ZooError(f"ids: expected [B, {self.num_tokens}] (scales {self.scales}), got {list(ids.shape)}")
        total = 0
        for scale, part in self.scale_slices():
            codes = rearrange(self.lookup(ids[:, part]), "b (h w) d -> b d h w", h=scale, w=scale)
            total = total + self._upsample(codes)
        return total
