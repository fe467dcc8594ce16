"""VQGAN's convolutional encoder and decoder (Esser et al., https://arxiv.org/abs/2012.09841, section 3.1).

Each resolution level holds residual blocks; levels are separated by stride-2 downsampling (encoder)
or nearest-neighbour upsampling (decoder), so ``len(channel_mult) - 1`` levels give a downsampling
factor of 2, 4, 8 or 16. Self-attention runs at the lowest resolution only, where the token grid is
small enough for it to be cheap. Shapes: images ``[B, 3, H, W]`` in ``[-1, 1]``, latents
``[B, z_channels, H / f, W / f]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from zoo.errors import ZooError
from zoo.tokenizer import check_image_shape, check_images


def checked_channel_mult(channel_mult) -> tuple[list[int], int]:
    """Channel multipliers of an encoder / decoder pair as ints, and the downsampling factor they give."""
    channel_mult = [int(m) for m in channel_mult]
    if not 1 <= len(channel_mult) <= 5 or any(m < 1 for m in channel_mult):
        raise ZooError(f"channel_mult: expected 1 to 5 positive multipliers (downsampling 1 to 16), got {channel_mult}")
    return channel_mult, 2 ** (len(channel_mult) - 1)


# The most token positions one image may give. The bottleneck's self-attention takes time quadratic in them;
# memory is linear in the pixels since AttentionBlock runs the flash kernel (before, the [N, N] weights were
# materialised: 2.4 GiB at 1024x1024 and a 16 GiB allocation, killed, at 2048x2048). vq-f8's encode on this
# project's 2-core CPU: 1024x1024 (128x128 tokens) 340 MiB, 4 s; 2048x2048 (256x256) 1.3 GiB, 30 s.
MAX_TOKENS = 128 * 128


def checked_image_grid(x: torch.Tensor, downsample: int, max_tokens: int = MAX_TOKENS) -> torch.Tensor:
    """Images ``[B, 3, H, W]`` in ``[0, 1]`` (float32) whose sides the encoder's downsampling factor divides and
    whose token grid is at most ``max_tokens`` positions (sizes are checked before any value is read)."""
    height, width = check_image_shape(x)[-2:]
    if height % downsample or width % downsample:
        raise ZooError(f"images: height and width must be multiples of {downsample} (the downsampling "
                       f"factor), got {height}x{width}")
    grid = (height // downsample, width // downsample)
    if grid[0] * grid[1] > max_tokens:
        side = math.isqrt(max_tokens) * downsample
        raise ZooError(f"images: {height}x{width} gives a {grid[0]}x{grid[1]} token grid, above the "
                       f"{max_tokens} positions this tokenizer serves (about {side}x{side} pixels); resize or tile "
                       "the image")
    return check_images(x)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups that divide ``channels`` (VQGAN uses 32 at its widths)."""
    return nn.GroupNorm(math.gcd(32, channels), channels, eps=1e-6)


class ResBlock(nn.Module):
    """norm -> SiLU -> conv, twice, plus a (1x1-projected when widths differ) skip."""

    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        self.norm1 = group_norm(channels_in)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.norm2 = group_norm(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        self.skip = nn.Conv2d(channels_in, channels_out, 1) if channels_in != channels_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the ``h * w`` positions of a feature map, with a residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        # Contiguous [B, 1, N, C]: with a strided last axis CPU attention falls back to the math kernel, which
        # materialises the [N, N] weights twice (2.3 GiB at N = 128 * 128); contiguous, it runs the flash kernel.
        qkv = rearrange(self.qkv(self.norm(x)), "b (three c) h w -> three b 1 (h w) c", three=3).contiguous()
        attended = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # [B, 1, h*w, C]
        return x + self.proj(rearrange(attended, "b 1 (h w) c -> b c h w", h=height, w=width))


def _middle(channels: int, attention: bool) -> nn.Sequential:
    blocks = [ResBlock(channels, channels)]
    if attention:
        blocks += [AttentionBlock(channels), ResBlock(channels, channels)]
    return nn.Sequential(*blocks)


class Encoder(nn.Module):
    """``[B, 3, H, W] -> [B, z_channels, H / f, W / f]`` with ``f = 2 ** (len(channel_mult) - 1)``."""

    def __init__(self, channels: int, channel_mult: list[int], num_res_blocks: int, z_channels: int,
                 attention: bool = True):
        super().__init__()
        widths = [channels * m for m in channel_mult]
        self.conv_in = nn.Conv2d(3, channels, 3, padding=1)
        layers: list[nn.Module] = []
        width = channels
        for level, level_width in enumerate(widths):
            for _ in range(num_res_blocks):
                layers.append(ResBlock(width, level_width))
                width = level_width
            if level < len(widths) - 1:
                layers.append(nn.Conv2d(width, width, 3, stride=2, padding=1))  # halve H and W
        self.down = nn.Sequential(*layers)
        self.middle = _middle(width, attention)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.middle(self.down(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    """``[B, z_channels, h, w] -> [B, 3, h * f, w * f]``, the encoder mirrored."""

    def __init__(self, channels: int, channel_mult: list[int], num_res_blocks: int, z_channels: int,
                 attention: bool = True):
        super().__init__()
        widths = [channels * m for m in channel_mult]
        width = widths[-1]
        self.conv_in = nn.Conv2d(z_channels, width, 3, padding=1)
        self.middle = _middle(width, attention)
        layers: list[nn.Module] = []
        for level in reversed(range(len(widths))):
            for _ in range(num_res_blocks):
                layers.append(ResBlock(width, widths[level]))
                width = widths[level]
            if level > 0:
                layers.append(Upsample(width))
        self.up = nn.Sequential(*layers)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.up(self.middle(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))
