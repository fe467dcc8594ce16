"""Open-MAGVIT2's image tokenizer network: a bias-free conv encoder, lookup-free quantisation, and a decoder
whose levels are modulated by the quantised latent (adaptive GroupNorm) and upsample by depth-to-space.

Ported (rewritten, not copied) from TencentARC/Open-MAGVIT2 (SEED-Voken) ``src/Open_MAGVIT2/modules/
diffusionmodules/improved_model.py`` (Encoder, Decoder, ResBlock, AdaptiveGroupNorm, Upsampler) and
``src/Open_MAGVIT2/modules/vqvae/lookup_free_quantize.py`` (LFQ), https://arxiv.org/abs/2409.04410 after
MAGVIT-v2, https://arxiv.org/abs/2310.05737. Submodule names are the authors' (``down.0.block.1.norm1``,
``adaptive.2.gamma``, ``up.1.upsample.conv1``), so their checkpoints map onto this network name for name.

    images [B, 3, H, W] in [-1, 1] -> Encoder -> z [B, bits, H/f, W/f]
        -> LFQ: bit i of a token = (z_i > 0), id = sum_i bit_i * 2**i   (channel 0 is the least significant bit)
        -> codes in {-1, +1}^bits -> Decoder -> images [B, 3, H, W] in about [-1, 1]

f = 2 ** (len(ch_mult) - 1). Inference only: the entropy and commitment losses of LFQ training are not ported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from zoo.errors import ZooError

GROUPS = 32  # the authors' GroupNorm(32, ...) everywhere: every width must be a multiple of it
MAX_BITS = 30  # ids stay far inside int64 and an implicit codebook of 2**bits rows stays materialisable


@dataclass(frozen=True)
class Magvit2Config:
    """The authors' ``ddconfig`` (``configs/Open-MAGVIT2/gpu/imagenet_lfqgan_*.yaml``) minus its unused keys
    (``resolution``, ``double_z``); ``z_channels`` is also LFQ's bit count (their ``embed_dim``)."""

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 4
    z_channels: int = 18
    in_channels: int = 3
    out_ch: int = 3

    @classmethod
    def from_dict(cls, config: dict, owner: str) -> Magvit2Config:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ZooError(f"{owner}: vq_config keys {unknown} are unknown; expected some of {sorted(known)}")
        made = cls(**{**config, "ch_mult": tuple(int(m) for m in config.get("ch_mult", cls.ch_mult))})
        widths = [made.ch * m for m in made.ch_mult]
        if not made.ch_mult or min(made.ch_mult) < 1 or any(w % GROUPS for w in widths):
            raise ZooError(f"{owner}: vq_config ch * ch_mult must give widths that are positive multiples of {GROUPS} "
                           f"(GroupNorm({GROUPS})), got ch={made.ch}, ch_mult={list(made.ch_mult)}")
        if not 1 <= made.z_channels <= MAX_BITS or made.num_res_blocks < 1:
            raise ZooError(f"{owner}: vq_config z_channels (LFQ bits) must lie in [1, {MAX_BITS}] and num_res_blocks "
                           f">= 1, got {made.z_channels} and {made.num_res_blocks}")
        return made

    def as_dict(self) -> dict:
        return {**asdict(self), "ch_mult": list(self.ch_mult)}


def group_norm(channels: int, affine: bool = True) -> nn.GroupNorm:
    return nn.GroupNorm(GROUPS, channels, eps=1e-6, affine=affine)


class ResBlock(nn.Module):
    """GroupNorm -> swish -> 3x3 conv (no bias), twice, plus a bias-free 1x1 projection of the skip when the
    widths differ."""

    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        self.norm1 = group_norm(channels_in)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False)
        self.norm2 = group_norm(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.nin_shortcut = nn.Conv2d(channels_in, channels_out, 1, bias=False) if channels_in != channels_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.nin_shortcut is None else self.nin_shortcut(x))


class Level(nn.Module):
    """One resolution of the encoder or decoder: ``block`` (ResBlocks) then an optional resampling module."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.block = nn.ModuleList(blocks)


class Encoder(nn.Module):
    """[B, 3, H, W] -> [B, z_channels, H / f, W / f]: levels of ResBlocks with strided 3x3 convs between them."""

    def __init__(self, cfg: Magvit2Config):
        super().__init__()
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1, bias=False)
        self.down = nn.ModuleList()
        width = cfg.ch
        for i, mult in enumerate(cfg.ch_mult):
            out = cfg.ch * mult
            level = Level([ResBlock(width if j == 0 else out, out) for j in range(cfg.num_res_blocks)])
            if i < len(cfg.ch_mult) - 1:  # every level but the last halves the side (this conv keeps its bias)
                level.downsample = nn.Conv2d(out, out, 3, stride=2, padding=1)
            self.down.append(level)
            width = out
        self.mid_block = nn.ModuleList(ResBlock(width, width) for _ in range(cfg.num_res_blocks))
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, cfg.z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            for block in level.block:
                h = block(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        for block in self.mid_block:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm without affine terms, then a per-channel scale and shift predicted from the quantised latent's
    spatial statistics: scale = gamma(std over positions), shift = beta(mean over positions)."""

    def __init__(self, z_channels: int, channels: int):
        super().__init__()
        self.gn = group_norm(channels, affine=False)
        self.gamma = nn.Linear(z_channels, channels)
        self.beta = nn.Linear(z_channels, channels)
        self.eps = 1e-6

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        flat = rearrange(style, "b c h w -> b c (h w)")
        # torch.var's default, Bessel-corrected (n - 1), as the authors' code computes it: a 1x1 grid has none.
        std = (flat.var(dim=-1) + self.eps).sqrt()  # [B, z]
        scale = rearrange(self.gamma(std), "b c -> b c 1 1")
        shift = rearrange(self.beta(flat.mean(dim=-1)), "b c -> b c 1 1")
        return self.gn(x) * scale + shift


class Upsampler(nn.Module):
    """3x3 conv to 4x the channels, then depth-to-space in DCR order (the channel axis splits as (row, col, c),
    unlike ``pixel_shuffle``'s (c, row, col)): the side doubles."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels * 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(self.conv1(x), "b (r s c) h w -> b c (h r) (w s)", r=2, s=2)


class Decoder(nn.Module):
    """[B, z_channels, h, w] codes -> [B, 3, h * f, w * f]; each level starts with an adaptive GroupNorm of the
    codes (``adaptive[i]``); levels are listed as in the encoder, ``up[0]`` at the output side, run last."""

    def __init__(self, cfg: Magvit2Config):
        super().__init__()
        width = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, width, 3, padding=1)
        self.mid_block = nn.ModuleList(ResBlock(width, width) for _ in range(cfg.num_res_blocks))
        levels, adaptive = [], []
        for i in reversed(range(len(cfg.ch_mult))):
            out = cfg.ch * cfg.ch_mult[i]
            adaptive.append(AdaptiveGroupNorm(cfg.z_channels, width))
            level = Level([ResBlock(width if j == 0 else out, out) for j in range(cfg.num_res_blocks)])
            if i > 0:
                level.upsample = Upsampler(out)
            levels.append(level)
            width = out
        self.adaptive = nn.ModuleList(reversed(adaptive))
        self.up = nn.ModuleList(reversed(levels))
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, cfg.out_ch, 3, padding=1)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(codes)
        for block in self.mid_block:
            h = block(h)
        for i in reversed(range(len(self.up))):
            h = self.adaptive[i](h, codes)
            for block in self.up[i].block:
                h = block(h)
            if hasattr(self.up[i], "upsample"):
                h = self.up[i].upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class LFQ(nn.Module):
    """Lookup-free quantisation (https://arxiv.org/abs/2310.05737, section 3.1): each of ``bits`` channels becomes
    its sign; no parameters. The id's bit order is the authors' (``mask = 2 ** arange(bits)``): channel i is
    bit i, least significant first, and a channel equal to 0 quantises to -1 (bit 0)."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = int(bits)
        self.register_buffer("weights", 2 ** torch.arange(self.bits, dtype=torch.long), persistent=False)

    @property
    def codebook_size(self) -> int:
        return 2**self.bits

    def ids(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, bits, h, w] -> ids [B, h, w]."""
        # A sum, not an einsum: integer matmuls do not run on CUDA.
        return ((z > 0).long() * rearrange(self.weights.to(z.device), "c -> 1 c 1 1")).sum(dim=1)

    def codes(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [...] -> code vectors [..., bits] in {-1, +1} (float32)."""
        bits = (ids.unsqueeze(-1) & self.weights.to(ids.device)) != 0
        return bits.float() * 2 - 1


class Magvit2VQ(nn.Module):
    """Encoder, LFQ and decoder of one Open-MAGVIT2 image tokenizer (the authors' ``lfqgan.VQModel`` minus its
    losses and EMA copy)."""

    def __init__(self, cfg: Magvit2Config):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = LFQ(cfg.z_channels)

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.config.ch_mult) - 1)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] in [-1, 1] -> ids [B, H / f, W / f]."""
        return self.quantize.ids(self.encoder(images))

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, h, w] -> images [B, 3, h * f, w * f] in about [-1, 1]."""
        codes = rearrange(self.quantize.codes(ids), "b h w c -> b c h w")
        return self.decoder(codes.to(self.decoder.conv_in.weight.dtype))
