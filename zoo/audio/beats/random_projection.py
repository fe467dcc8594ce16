"""BEATs' iteration-1 tokenizer: a frozen, seeded random projection and a random codebook.

BEATs (https://arxiv.org/abs/2212.09058, Sec. 3.2.1) labels each patch with
``argmin_i || v_i - W x_t ||^2`` for a random projection ``W`` and random codebook ``V``, both frozen.
The official code was never released; this follows ESPnet's ``BeatsRandomTokenizer``: a xavier-normal
Conv2d patch embedding (no bias) -> LayerNorm without affine -> xavier-normal Linear(512 -> 256) ->
LayerNorm without affine -> nearest of ``randn(1024, 256)`` codes by squared L2.

Everything comes from ``seed``, so the config alone defines the tokenizer: nothing is trained or stored.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange

from zoo.audio.beats.base import BEATsModel
from zoo.audio.beats.frontend import BEATS_FBANK_MEAN, BEATS_FBANK_STD
from zoo.errors import ZooError


def squared_l2_nearest(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code by squared L2: ``argmin_k ||z - c_k||^2`` for ``z [..., D]``, ``codebook [K, D]``."""
    distances = z.pow(2).sum(-1, keepdim=True) - 2 * z @ codebook.t() + codebook.pow(2).sum(-1)  # [..., K]
    return distances.argmin(dim=-1)


class BEATsRandomTokenizer(BEATsModel):
    """Random-projection patch labels, defined entirely by the config (``requires_weights = False``).

    Args:
        codebook_size, codebook_dim: the random codebook ``[K, D]`` (BEATs: 1024 x 256).
        patch_dim: width of the random patch embedding (BEATs: 512).
        patch_size: fbank patch side in frames and mel bins (16).
        seed: seeds every random tensor (a private generator: the global RNG is untouched).
        fbank_mean, fbank_std: front-end normalisation.
    """

    requires_weights: ClassVar[bool] = False

    def __init__(
        self,
        codebook_size: int = 1024,
        codebook_dim: int = 256,
        patch_dim: int = 512,
        patch_size: int = 16,
        seed: int = 0,
        fbank_mean: float = BEATS_FBANK_MEAN,
        fbank_std: float = BEATS_FBANK_STD,
    ):
        super().__init__()
        if min(codebook_size, codebook_dim, patch_dim) < 1:
            raise ZooError(f"BEATsRandomTokenizer: sizes must be positive, got {codebook_size=} {codebook_dim=}")
        self._init_frontend(fbank_mean, fbank_std, patch_size)
        generator = torch.Generator().manual_seed(int(seed))
        area = patch_size * patch_size
        conv_std = math.sqrt(2.0 / (area + patch_dim * area))  # xavier normal: fan_in = 1 * p * p, fan_out = C * p * p
        linear_std = math.sqrt(2.0 / (patch_dim + codebook_dim))
        # Buffers, not parameters: nothing here trains, and the seed rebuilds them, so they are not saved.
        patch_weight = torch.randn(patch_dim, 1, patch_size, patch_size, generator=generator) * conv_std
        projection = torch.randn(codebook_dim, patch_dim, generator=generator) * linear_std
        self.register_buffer("patch_weight", patch_weight, persistent=False)
        self.register_buffer("projection", projection, persistent=False)
        self.register_buffer("codes", torch.randn(codebook_size, codebook_dim, generator=generator), persistent=False)

    @property
    def vocab_size(self) -> int:
        return self.codes.shape[0]

    @property
    def codebook(self) -> torch.Tensor:
        return self.codes

    def _has_weights(self) -> bool:
        return False

    def tokenize(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fbank, patch_lengths, _ = self.fbank(audio, lengths)
        patches = F.conv2d(fbank, self.patch_weight, stride=self.patch_size)  # [B, C, t, bands]
        patches = rearrange(patches, "b c t f -> b (t f) c")
        patches = F.layer_norm(patches, patches.shape[-1:])
        projected = F.layer_norm(patches @ self.projection.t(), self.projection.shape[:1])  # [B, N, D]
        return squared_l2_nearest(projected, self.codes), patch_lengths

    def training_losses(self, batch: dict, step: int):
        raise ZooError("BEATsRandomTokenizer is fixed by its seed and needs no training; use it as a label source")
