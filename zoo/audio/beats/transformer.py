"""The patch Transformer shared by BEATs' SSL model, its tokenizers and their estimator.

BEATs (https://arxiv.org/abs/2212.09058, Sec. 3) embeds 16 x 16 fbank patches with a bias-free
Conv2d, a LayerNorm and a Linear to the model width, then runs a ViT encoder. Blocks are timm's
ViT ``Block`` with a key-padding mask, so padding never reaches a valid patch.

Positions: BEATs uses a convolutional positional embedding and a bucketed relative bias. Here the
encoder of the SSL model sees only the visible 25% of patches and the label predictor must know where
each mask token sits, so every patch gets an absolute position instead (as MAE and Audio-MAE do):
fixed sin-cos of its time step plus a learned embedding of its frequency band. Lengths stay free.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from timm.models.vision_transformer import Block
from torch import nn


class PatchEmbedding(nn.Module):
    """``fbank [B, 1, F, 128] -> patches [B, t * bands, dim]`` (time-major), as BEATs' patch embedding."""

    def __init__(self, patch_size: int = 16, patch_dim: int = 512, dim: int = 768):
        super().__init__()
        self.conv = nn.Conv2d(1, patch_dim, kernel_size=patch_size, stride=patch_size, bias=False)
        self.norm = nn.LayerNorm(patch_dim)
        self.proj = nn.Linear(patch_dim, dim) if patch_dim != dim else nn.Identity()

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        patches = rearrange(self.conv(fbank), "b c t f -> b (t f) c")
        return self.proj(self.norm(patches))


def sincos_embedding(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed sin-cos embedding ``[N, dim]`` of integer positions ``[N]`` (Vaswani et al., 2017)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10_000.0) * torch.arange(half, device=positions.device) / max(half, 1))
    angles = positions.float().unsqueeze(1) * frequencies.unsqueeze(0)  # [N, half]
    embedding = torch.cat([angles.sin(), angles.cos()], dim=1)
    return nn.functional.pad(embedding, (0, dim - 2 * half))


class PatchPositions(nn.Module):
    """Absolute position of each time-major patch: sin-cos of its time step + learned band embedding."""

    def __init__(self, dim: int, bands: int = 8):
        super().__init__()
        self.bands = bands
        self.dim = dim
        self.band = nn.Embedding(bands, dim)
        nn.init.normal_(self.band.weight, std=0.02)

    def forward(self, num_patches: int, device: torch.device) -> torch.Tensor:
        index = torch.arange(num_patches, device=device)
        steps = torch.div(index, self.bands, rounding_mode="floor")
        return sincos_embedding(steps, self.dim) + self.band(index % self.bands)  # [N, dim]


def attention_mask(pad: torch.Tensor) -> torch.Tensor:
    """Key-padding mask ``[B, N]`` (True = padding) -> SDPA boolean mask ``[B, 1, 1, N]`` (True = attend).

    An item with no valid patch attends to everything, so its (ignored) outputs stay finite.
    """
    keep = ~pad
    keep = keep | ~keep.any(dim=1, keepdim=True)
    return rearrange(keep, "b n -> b 1 1 n")


class TransformerEncoder(nn.Module):
    """A stack of pre-norm ViT blocks over ``[B, N, dim]`` with a key-padding mask, then a LayerNorm."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(dim, heads, mlp_ratio=mlp_ratio, qkv_bias=True, proj_drop=dropout, attn_drop=dropout)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        mask = attention_mask(pad)
        for block in self.blocks:
            x = block(x, attn_mask=mask)
        return self.norm(x)


def init_weights(module: nn.Module) -> None:
    """BERT / ViT initialisation: truncated normal(0.02) weights, zero biases, unit LayerNorms."""
    for child in module.modules():
        if isinstance(child, nn.Linear):
            nn.init.trunc_normal_(child.weight, std=0.02)
            if child.bias is not None:
                nn.init.zeros_(child.bias)
        elif isinstance(child, nn.LayerNorm) and child.elementwise_affine:
            nn.init.ones_(child.weight)
            nn.init.zeros_(child.bias)
        elif isinstance(child, nn.Conv2d):
            nn.init.xavier_normal_(child.weight)
