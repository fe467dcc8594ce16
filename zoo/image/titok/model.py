"""TiTokTokenizer: an image as K one-dimensional latent tokens (TiTok, https://arxiv.org/abs/2406.07550).

    image [B, 3, S, S] -> patches [B, N, W] (+ positions)                                 N = (S / p)^2
    [patches; K learned latent tokens] -> ViT encoder (timm blocks) -> latent outputs [B, K, W]
        -> LayerNorm -> linear to code_dim -> quantiser (zoo.quantize, any kind) -> ids [B, K]
    ids -> codes [B, K, code_dim] -> linear to W (+ latent positions)
    [N mask tokens (+ patch positions); latents] -> ViT decoder -> mask-token outputs -> pixel head -> image

Unlike a 2D grid tokenizer, no token owns an image region: every latent attends to every patch, so K
(16, 32, 64, ... by ``num_latent_tokens``) sets the bit budget independently of the image side.
The authors' two-stage training (proxy codes of a MaskGIT VQGAN first) is replaced here by one
pixel stage, TiTok's single-stage form: l1 + l2 (+ LPIPS, + GAN) through ``PixelAutoencoder``.

Training loss::

    loss = l1 |x - x'| + l2 (x - x')^2 + perceptual LPIPS + gan * adaptive * hinge_G     (vq/autoencoder.py)
         + commitment * commit (+ entropy * lfq_entropy)                                  (the quantiser's)
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from torch import nn

from zoo.errors import ZooError
from zoo.image.titok.vit import (
    PatchEmbed,
    PixelHead,
    block_stack,
    checked_fixed_images,
    checked_grid,
    checked_sequence_ids,
)
from zoo.image.vq.autoencoder import PIXEL_LOSS_DEFAULTS, PixelAutoencoder
from zoo.quantize import Quantizer, codebook_perplexity
from zoo.tokenizer import TokenizerOutput

LOSS_DEFAULTS: dict[str, Any] = {**PIXEL_LOSS_DEFAULTS, "commitment": 0.25, "entropy": 0.1}


def sequence_to_map(tokens: torch.Tensor) -> torch.Tensor:
    """``[B, L, D]`` -> ``[B, D, 1, L]``: the quantiser adapter's image-map layout for a 1D sequence."""
    return rearrange(tokens, "b l d -> b d 1 l")


def map_to_sequence(codes: torch.Tensor) -> torch.Tensor:
    """``[B, D, 1, L]`` -> ``[B, L, D]``."""
    return rearrange(codes, "b d 1 l -> b l d")


class LatentEncoder(nn.Module):
    """Patches plus ``num_latent`` learned tokens through a ViT; returns the latent tokens' outputs in code space."""

    def __init__(self, image_size: int, patch_size: int, width: int, depth: int, heads: int, mlp_ratio: float,
                 num_latent: int, code_dim: int):
        super().__init__()
        self.patch_embed = PatchEmbed(image_size, patch_size, width)
        self.latent_tokens = nn.Parameter(torch.randn(num_latent, width) * 0.02)  # token + position in one
        self.blocks = block_stack(width, depth, heads, mlp_ratio)
        self.norm = nn.LayerNorm(width)
        self.to_code = nn.Linear(width, code_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embed(x)  # [B, N, W]
        latents = self.latent_tokens.expand(x.shape[0], -1, -1)  # [B, K, W]
        out = self.blocks(torch.cat([patches, latents], dim=1))
        return self.to_code(self.norm(out[:, patches.shape[1]:]))  # [B, K, code_dim]


class MaskTokenDecoder(nn.Module):
    """Quantised latents ``[B, K, code_dim]`` plus N mask tokens through a ViT -> images (the mask tokens' outputs)."""

    def __init__(self, image_size: int, patch_size: int, width: int, depth: int, heads: int, mlp_ratio: float,
                 num_latent: int, code_dim: int):
        super().__init__()
        grid = checked_grid(image_size, patch_size)
        self.from_code = nn.Linear(code_dim, width)
        self.latent_position = nn.Parameter(torch.randn(num_latent, width) * 0.02)
        self.mask_token = nn.Parameter(torch.randn(1, width) * 0.02)
        self.patch_position = nn.Parameter(torch.randn(grid * grid, width) * 0.02)
        self.blocks = block_stack(width, depth, heads, mlp_ratio)
        self.head = PixelHead(image_size, patch_size, width)

    @property
    def conv_out(self) -> nn.Conv2d:
        """The last layer (VQGAN's adaptive GAN weight reads its gradient)."""
        return self.head.conv_out

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        latents = self.from_code(codes) + self.latent_position  # [B, K, W]
        masks = (self.mask_token + self.patch_position).expand(codes.shape[0], -1, -1)  # [B, N, W]
        out = self.blocks(torch.cat([masks, latents], dim=1))
        return self.head(out[:, : masks.shape[1]])


class SequenceTokenizer(PixelAutoencoder):
    """The contract of a 1D image tokenizer over ``PixelAutoencoder``: fixed-size images in, ids ``[B, L]`` out.

    Subclasses set ``image_size``, ``num_tokens`` and ``quantize`` and give ``encode_latent`` (images -> codes
    ``[B, code_dim, 1, L]``) and ``decode_codes``; TiTok and SEED share the rest."""

    @property
    def vocab_size(self) -> int:
        return self.quantize.vocab_size

    @property
    def codebook(self) -> torch.Tensor:
        """``[K, code_dim]`` (the implicit grid for FSQ / LFQ)."""
        return self.quantize.codebook

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, L]`` -> code vectors ``[B, L, code_dim]``."""
        return map_to_sequence(self.codes_from_ids(ids))

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        return checked_fixed_images(x, self.image_size).to(self.device)

    def ids_from_latent(self, latent: torch.Tensor) -> torch.Tensor:
        return self.quantize(latent).indices[:, 0]  # [B, 1, L] -> [B, L]

    def codes_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, L]`` (checked) -> codes ``[B, code_dim, 1, L]``."""
        ids = checked_sequence_ids(ids, self.vocab_size, self.num_tokens).to(self.device)
        return self.quantize.indices_to_codes(ids[:, None])


class TiTokTokenizer(SequenceTokenizer):
    """1D latent-token image tokenizer (see the module docstring); ids ``[B, num_latent_tokens]``."""

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        width: int = 64,
        encoder_depth: int = 2,
        decoder_depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        num_latent_tokens: int = 32,
        quantizer: dict | None = None,
        loss: dict | None = None,
        seed: int = 0,
    ):
        if num_latent_tokens < 1:
            raise ZooError(f"num_latent_tokens: expected at least one latent token, got {num_latent_tokens}")
        super().__init__(loss, LOSS_DEFAULTS)
        checked_grid(image_size, patch_size)
        self.image_size, self.patch_size = int(image_size), int(patch_size)
        self.downsample = self.patch_size
        self.num_tokens = int(num_latent_tokens)
        vit = (image_size, patch_size, width)
        blocks = dict(heads=heads, mlp_ratio=mlp_ratio, num_latent=self.num_tokens)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.quantize = Quantizer(quantizer or {"kind": "vq"})
            if self.quantize.num_levels != 1:
                raise ZooError("quantizer: TiTok's ids are [B, K]; a residual quantiser (kind 'rvq') is not supported")
            code_dim = self.quantize.code_dim
            self.encoder = LatentEncoder(*vit, depth=encoder_depth, code_dim=code_dim, **blocks)
            self.decoder = MaskTokenDecoder(*vit, depth=decoder_depth, code_dim=code_dim, **blocks)
            self.build_discriminator()

    # -- pieces ----------------------------------------------------------------------------------------------
    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Images in ``[0, 1]`` -> latent tokens ``[B, code_dim, 1, L]`` before quantisation."""
        return sequence_to_map(self.encoder(x))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(map_to_sequence(codes))

    def _run(self, x: torch.Tensor, step: int | None) -> TokenizerOutput:
        quantized = self.quantize(self.encode_latent(x))
        reconstruction = self.decode_codes(quantized.quantized)
        losses = self.pixel_losses(x, reconstruction, quantized.losses, step)
        ids = quantized.indices[:, 0]
        extras = {"perplexity": codebook_perplexity(ids.detach(), self.vocab_size)}
        return TokenizerOutput(output=reconstruction, indices=ids, losses=losses, extras=extras)

    def extra_repr(self) -> str:
        return (f"image_size={self.image_size}, patch_size={self.patch_size}, tokens={self.num_tokens}, "
                f"vocab_size={self.vocab_size}, quantizer={self.quantize.kind!r}")
