"""VAR's multi-scale VQVAE (Tian et al., https://arxiv.org/abs/2404.02905) behind the zoo contract.

No maintained package implements this network, so it is ported from the authors' code (FoundationVision/VAR
``models/vqvae.py``, ``quant.py``, ``basic_vae.py``; see ``network.py`` and ``quantizer.py``)::

    images [B, 3, S, S] in [0, 1] -> 2x - 1 -> encoder -> quant_conv -> f [B, 32, S/16, S/16]
        -> multi-scale residual quantisation -> ids [B, L],  L = sum(s_k^2)   (256px: 1 + 4 + ... + 256 = 680)
    ids [B, L] -> f_hat = sum_k phi_k(upsample(E[ids_k])) -> post_quant_conv -> decoder -> clamp [-1, 1] -> [0, 1]

Ids: VAR's list of token maps, one per scale of ``v_patch_nums`` (coarse to fine, each ``[B, s_k * s_k]``
row-major), concatenated in that order into one ``[B, L]`` sequence: the layout of the multi-scale option of
``zoo.image.tokenflow`` and of the 1D tokenizers (``zoo.image.titok``). ``split_scales`` / ``join_scales``
convert between it and VAR's list. ``embed(ids)`` gives the code vectors ``[B, L, 32]`` (the codebook's rows),
``codebook`` the ``[4096, 32]`` table, which is also where pFID's neighbours are found. The scales fix the
image side (``v_patch_nums[-1] * 16``): one side per entry.

The wrapper reuses ``zoo.image.published.base``: the [0, 1] <-> [-1, 1] map, strict loading with its dtype and
finiteness checks, and the convert-once path for the authors' pickled ``.pth`` (``torch.load(weights_only=True)``,
see ``convert.py``), so ``zoo convert vae_ch160v4096z32.pth var-vqvae --to DIR`` and
``zoo.load("var-vqvae", pretrained=True)`` work as for every published image entry.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.image.published.base import PublishedImageTokenizer
from zoo.image.var.convert import convert_state
from zoo.image.var.network import Decoder, Encoder
from zoo.image.var.quantizer import MultiScaleQuantizer
from zoo.tokenizer import check_ids, check_images


class VQVAE(nn.Module):
    """VAR's VQVAE with its constructor's arguments (``models/vqvae.py``); ``ch_mult`` and ``num_res_blocks``,
    fixed there at latent diffusion's VQ-f16 values, are arguments here so tests can build tiny ones."""

    def __init__(self, vocab_size: int = 4096, z_channels: int = 32, ch: int = 128, dropout: float = 0.0,
                 ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4), num_res_blocks: int = 2, using_sa: bool = True,
                 using_mid_sa: bool = True, using_znorm: bool = False, quant_conv_ks: int = 3,
                 quant_resi: float = 0.5, share_quant_resi: int = 4, default_qresi_counts: int = 0,
                 v_patch_nums: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)):
        super().__init__()
        ch_mult = tuple(int(m) for m in ch_mult)
        if not ch_mult or min(ch_mult) < 1 or ch < 1 or num_res_blocks < 1 or quant_conv_ks % 2 == 0:
            raise ZooError(f"VAR VQVAE: expected ch >= 1, ch_mult of positive multipliers, num_res_blocks >= 1 and an "
                           f"odd quant_conv_ks, got ch={ch}, ch_mult={list(ch_mult)}, num_res_blocks={num_res_blocks}, "
                           f"quant_conv_ks={quant_conv_ks}")
        if any((ch * m) % 32 for m in ch_mult):
            raise ZooError(f"VAR VQVAE: every width ch * ch_mult must be a multiple of 32 (GroupNorm(32)), got "
                           f"ch={ch}, ch_mult={list(ch_mult)}")
        net = {"ch": ch, "ch_mult": ch_mult, "num_res_blocks": num_res_blocks, "z_channels": z_channels,
               "dropout": dropout, "using_sa": using_sa, "using_mid_sa": using_mid_sa}
        self.downsample = 2 ** (len(ch_mult) - 1)
        self.encoder = Encoder(**net)
        self.decoder = Decoder(**net)
        self.quantize = MultiScaleQuantizer(vocab_size, z_channels, v_patch_nums, quant_resi, share_quant_resi,
                                            default_qresi_counts, using_znorm)
        padding = quant_conv_ks // 2
        self.quant_conv = nn.Conv2d(z_channels, z_channels, quant_conv_ks, padding=padding)
        self.post_quant_conv = nn.Conv2d(z_channels, z_channels, quant_conv_ks, padding=padding)

    @classmethod
    def arguments(cls) -> list[str]:
        return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]

    def ids_from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] ``[B, 3, S, S]`` -> ids ``[B, L]`` (VAR's ``img_to_idxBl``, concatenated)."""
        return self.quantize.ids_from_latent(self.quant_conv(self.encoder(pixels)))

    def pixels_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, L]`` -> images in [-1, 1] (VAR's ``idxBl_to_img(same_shape=True, last_one=True)``)."""
        return self.decoder(self.post_quant_conv(self.quantize.latent_from_ids(ids))).clamp(-1, 1)


class VARTokenizer(PublishedImageTokenizer):
    """VAR's multi-scale VQVAE: ``[0, 1]`` images -> ids ``[B, sum(s_k^2)]`` (see the module docstring)."""

    source_prefixes = ("model.", "")  # this wrapper's folders; the authors' bare VQVAE state dict

    def __init__(self, vq_config: dict, image_size: int = 256, rescale_factor: float = 1 / 255,
                 image_mean: tuple[float, ...] = (0.5, 0.5, 0.5), image_std: tuple[float, ...] = (0.5, 0.5, 0.5),
                 seed: int = 0):
        super().__init__(vq_config, image_size, rescale_factor, image_mean, image_std, seed)
        side = self.model.quantize.scales[-1] * self.downsample
        if self.image_size != side:
            raise ZooError(f"VARTokenizer: image_size {image_size} does not match the scales: the last of "
                           f"v_patch_nums {list(self.model.quantize.scales)} times the downsampling factor "
                           f"{self.downsample} is {side}")

    def _build(self, vq_config: dict, seed: int) -> VQVAE:
        """VAR's VQVAE from ``vq_config`` (its constructor's arguments), seeded and frozen."""
        if not isinstance(vq_config, dict):
            raise ZooError(f"VARTokenizer: vq_config must be a mapping of VQVAE arguments, got "
                           f"{type(vq_config).__name__}")
        unknown = sorted(set(vq_config) - set(VQVAE.arguments()))
        if unknown:
            raise ZooError(f"VARTokenizer: vq_config keys {unknown} are not VQVAE arguments (it takes "
                           f"{VQVAE.arguments()})")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = VQVAE(**vq_config)
        return model.float().eval().requires_grad_(False)

    def _downsample_factor(self) -> int:
        return self.model.downsample

    @property
    def family(self) -> str:
        return "var"

    @property
    def scales(self) -> tuple[int, ...]:
        """The token maps' sides, coarse to fine (VAR's ``v_patch_nums``)."""
        return self.model.quantize.scales

    @property
    def tokens_per_image(self) -> int:
        return self.model.quantize.num_tokens

    # -- ids -------------------------------------------------------------------------------------------------
    def _check_ids(self, ids: torch.Tensor) -> torch.Tensor:
        ids = check_ids(ids, self.vocab_size)
        if ids.ndim != 2 or ids.shape[1] != self.tokens_per_image:
            raise ZooError(f"ids: expected [B, {self.tokens_per_image}] (scales {list(self.scales)}, concatenated "
                           f"coarse to fine), got {list(ids.shape)}")
        return ids.to(self.codebook.device)

    def split_scales(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """ids ``[B, L]`` -> VAR's list of token maps, ``[B, s_k * s_k]`` per scale."""
        ids = self._check_ids(ids)
        return [ids[:, part] for _, part in self.model.quantize.scale_slices()]

    def join_scales(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """VAR's list of token maps (``[B, s_k * s_k]`` or ``[B, s_k, s_k]`` per scale) -> ids ``[B, L]``."""
        if len(maps) != len(self.scales):
            raise ZooError(f"token maps: expected {len(self.scales)} (one per scale {list(self.scales)}), "
                           f"got {len(maps)}")
        return self._check_ids(torch.cat([m.reshape(m.shape[0], -1) for m in maps], dim=1))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, L]`` -> code vectors ``[B, L, D]`` (rows of ``codebook``, before upsampling and phi)."""
        return self.codebook[self._check_ids(ids)]

    def ids_from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.ids_from_pixels(pixels)

    def pixels_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.pixels_from_ids(ids)

    # -- contract --------------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, S, S]`` in ``[0, 1]`` at ``image_size`` -> ids ``[B, L]``."""
        x = check_images(x)
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ZooError(f"images: VAR's scales {list(self.scales)} fix the side at {self.image_size}x"
                           f"{self.image_size}, got {x.shape[-2]}x{x.shape[-1]}; resize first")
        if x.shape[0] == 0:
            return torch.zeros(0, self.tokens_per_image, dtype=torch.long)
        with torch.no_grad():
            return self.ids_from_pixels(self.to_pixels(x))

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, L]`` -> images ``[B, 3, S, S]`` in ``[0, 1]``."""
        ids = self._check_ids(ids)
        with torch.no_grad():
            return self.from_pixels(self.pixels_from_ids(ids))

    # -- weights ---------------------------------------------------------------------------------------------
    @classmethod
    def convert(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The authors' VQVAE state dict (or this wrapper's) -> this wrapper's names (``convert.convert_state``)."""
        return convert_state(state, cls.source_prefixes)

    def extra_repr(self) -> str:
        return (f"var, vocab_size={self.vocab_size}, f{self.downsample}, scales={list(self.scales)}, "
                f"{self.tokens_per_image} tokens at {self.image_size}px")
