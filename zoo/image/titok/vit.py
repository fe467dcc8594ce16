"""ViT pieces the 1D image tokenizers share (TiTok, SEED): patchify / unpatchify, timm block stacks, checks.

    image [B, 3, H, W] -> PatchEmbed (p x p conv, stride p) -> patches [B, N, W]      N = (H / p) * (W / p)
    patch tokens [B, N, W] -> PixelHead (linear to p*p*hidden, unpatchify, 3x3 conv_out) -> image [B, 3, H, W]

The transformer blocks are timm's ``vision_transformer.Block`` (pre-norm attention + MLP), so a Zero-TPrune
wrapper (``zoo.image.prune``) and any timm tooling read these encoders as they read a timm ViT.
"""

from __future__ import annotations

import torch
from einops import rearrange
from timm.models.vision_transformer import Block
from torch import nn

from zoo.errors import ZooError
from zoo.tokenizer import check_ids, check_images


def checked_grid(image_size: int, patch_size: int) -> int:
    """Patches per side of a square ``image_size`` image; the size must be a positive multiple of the patch."""
    if patch_size < 1 or image_size < patch_size or image_size % patch_size:
        raise ZooError(f"image_size {image_size} must be a positive multiple of patch_size {patch_size}")
    return image_size // patch_size


def checked_fixed_images(x, image_size: int) -> torch.Tensor:
    """Images ``[B, 3, S, S]`` in ``[0, 1]`` at the one side a learned-position ViT takes."""
    x = check_images(x)
    if tuple(x.shape[-2:]) != (image_size, image_size):
        raise ZooError(f"images: this tokenizer's position embeddings cover {image_size}x{image_size} images only, "
                       f"got {x.shape[-2]}x{x.shape[-1]}; resize first")
    return x


def checked_sequence_ids(ids, vocab_size: int, length: int) -> torch.Tensor:
    """1D ids ``[B, length]`` in ``[0, vocab_size)``."""
    ids = check_ids(ids, vocab_size)
    if ids.ndim != 2 or ids.shape[1] != length:
        raise ZooError(f"ids: expected a 1D token sequence [B, {length}], got shape {list(ids.shape)}")
    return ids


def block_stack(width: int, depth: int, heads: int, mlp_ratio: float) -> nn.Sequential:
    """``depth`` timm ViT blocks of ``width`` (``heads`` must divide it)."""
    if width < 1 or depth < 1 or heads < 1 or width % heads:
        raise ZooError(f"ViT: width {width} must be a positive multiple of heads {heads}, depth {depth} >= 1")
    return nn.Sequential(*[Block(width, heads, mlp_ratio=mlp_ratio, qkv_bias=True) for _ in range(depth)])


class PatchEmbed(nn.Module):
    """``[B, 3, H, W]`` in ``[0, 1]`` -> patch tokens ``[B, N, width]`` plus learned positions."""

    def __init__(self, image_size: int, patch_size: int, width: int):
        super().__init__()
        grid = checked_grid(image_size, patch_size)
        self.proj = nn.Conv2d(3, width, patch_size, stride=patch_size)
        self.position = nn.Parameter(torch.randn(grid * grid, width) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = rearrange(self.proj(2.0 * x - 1.0), "b c h w -> b (h w) c")
        return patches + self.position


class PixelHead(nn.Module):
    """Patch tokens ``[B, N, width]`` -> images ``[B, 3, H, W]`` (unclamped, about ``[0, 1]``).

    A linear map per token to a ``p x p x hidden`` patch, then a 3x3 ``conv_out`` across patch seams (its
    weight is the "last layer" VQGAN's adaptive GAN weight reads).
    """

    def __init__(self, image_size: int, patch_size: int, width: int, hidden: int = 16):
        super().__init__()
        self.grid = checked_grid(image_size, patch_size)
        self.patch_size = patch_size
        self.norm = nn.LayerNorm(width)
        self.to_patch = nn.Linear(width, patch_size * patch_size * hidden)
        self.conv_out = nn.Conv2d(hidden, 3, 3, padding=1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        patches = self.to_patch(self.norm(tokens))
        grid = rearrange(patches, "b (h w) (p q c) -> b c (h p) (w q)", h=self.grid, w=self.grid,
                         p=self.patch_size, q=self.patch_size)
        return (self.conv_out(grid) + 1.0) / 2.0
