"""VAR's convolutional encoder and decoder (a port of ``models/basic_vae.py`` in FoundationVision/VAR).

The latent-diffusion VQ-f16 CNN as VAR trims it: GroupNorm(32, eps 1e-6) + SiLU residual blocks, single-head
self-attention with one fused ``qkv`` 1x1 conv at the lowest resolution (after every block there) and in the
middle, asymmetric zero padding before each stride-2 downsampling conv, nearest-neighbour 2x upsampling
followed by a 3x3 conv. Module names are the authors' (``down.{i}.block.{j}.norm1``, ``mid.attn_1.qkv``, ...),
so their tensors load under the same names.

    encoder: image [B, 3, H, W] -> conv_in -> levels (blocks [+ attn], downsample) -> mid -> z [B, z, H/f, W/f]
    decoder: z [B, z, h, w] -> conv_in -> mid -> levels, lowest resolution first (blocks [+ attn], upsample)
             -> image [B, 3, h f, w f]                                                          f = 2^(levels - 1)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

# The authors' GroupNorm: 32 groups always (their widths are multiples of 32), eps 1e-6.
NORM_GROUPS = 32
RESAMPLERS = ("downsample", "upsample")


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(NORM_GROUPS, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """(norm, SiLU, 3x3 conv) twice, plus the input (1x1-projected when the width changes)."""

    def __init__(self, channels_in: int, channels_out: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(channels_in)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.norm2 = group_norm(channels_out)
        self.dropout = nn.Dropout(dropout) if dropout > 1e-6 else nn.Identity()
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(channels_in, channels_out, 1) if channels_in != channels_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In-place SiLU on the fresh norm outputs, as the authors' code: the same kernels give the same floats
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(self.dropout(F.silu(self.norm2(h), inplace=True)))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the h*w positions, with a residual; q, k, v from one 1x1 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)
        self.scale = channels ** -0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height = x.shape[-2]
        q, k, v = rearrange(self.qkv(self.norm(x)), "b (three c) h w -> three b c (h w)", three=3)
        # The authors' operand layouts (channels-first values times transposed weights, made contiguous), so the
        # matrix products run the same kernels and a converted checkpoint gives the same floats.
        weights = torch.softmax(torch.bmm(q.transpose(1, 2).contiguous(), k) * self.scale, dim=2)  # [B, hw_q, hw_k]
        out = torch.bmm(v, weights.transpose(1, 2).contiguous())  # [B, C, hw (queries)]
        return x + self.proj_out(rearrange(out, "b c (h w) -> b c h w", h=height))


class Downsample(nn.Module):
    """Stride-2 3x3 conv after zero padding of one pixel on the right and bottom only (as taming's VQGAN)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour 2x, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def _level(blocks: list[nn.Module], attentions: list[nn.Module], resample: nn.Module | None, name: str) -> nn.Module:
    """One resolution level under the authors' names: ``block.{j}``, ``attn.{j}`` and ``name`` (``downsample`` /
    ``upsample``, absent at the level that keeps its resolution)."""
    level = nn.Module()
    level.block = nn.ModuleList(blocks)
    level.attn = nn.ModuleList(attentions)
    if resample is not None:
        setattr(level, name, resample)
    return level


def _middle(channels: int, dropout: float, attention: bool) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels, dropout)
    mid.attn_1 = AttnBlock(channels) if attention else nn.Identity()
    mid.block_2 = ResnetBlock(channels, channels, dropout)
    return mid


def _run_level(level: nn.Module, h: torch.Tensor) -> torch.Tensor:
    for index, block in enumerate(level.block):
        h = block(h)
        if len(level.attn):  # attention follows every block of a level that has it
            h = level.attn[index](h)
    for name in RESAMPLERS:
        if hasattr(level, name):
            return getattr(level, name)(h)
    return h


class Encoder(nn.Module):
    """Images (normalised to [-1, 1]) -> latents ``[B, z_channels, H / f, W / f]``."""

    def __init__(self, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, z_channels: int, dropout: float = 0.0,
                 in_channels: int = 3, using_sa: bool = True, using_mid_sa: bool = True):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        width = ch
        for index, mult in enumerate(ch_mult):
            last = index == len(ch_mult) - 1
            blocks, attentions = [], []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(width, ch * mult, dropout))
                width = ch * mult
                if last and using_sa:
                    attentions.append(AttnBlock(width))
            level = _level(blocks, attentions, None if last else Downsample(width), "downsample")
            self.down.append(level)
        self.mid = _middle(width, dropout, using_mid_sa)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = _run_level(level, h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h), inplace=True))


class Decoder(nn.Module):
    """Latents ``[B, z_channels, h, w]`` -> images in about [-1, 1] (unclamped). ``up[i]`` is level ``i`` of the
    encoder's order (``up[0]`` the full resolution); the forward pass runs them from the last to the first."""

    def __init__(self, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, z_channels: int, dropout: float = 0.0,
                 in_channels: int = 3, using_sa: bool = True, using_mid_sa: bool = True):
        super().__init__()
        width = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, width, 3, padding=1)
        self.mid = _middle(width, dropout, using_mid_sa)
        levels = []
        for index in reversed(range(len(ch_mult))):
            blocks, attentions = [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlock(width, ch * ch_mult[index], dropout))
                width = ch * ch_mult[index]
                if index == len(ch_mult) - 1 and using_sa:
                    attentions.append(AttnBlock(width))
            levels.insert(0, _level(blocks, attentions, Upsample(width) if index else None, "upsample"))
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, in_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for level in reversed(self.up):
            h = _run_level(level, h)
        return self.conv_out(F.silu(self.norm_out(h), inplace=True))
