"""TokenFlowTokenizer: one token id that indexes a semantic and a pixel codebook (TokenFlow, arXiv 2412.03069).

    image -> pixel encoder (VQGAN CNN) -> quant_conv -> z_pix [B, pixel_dim, h, w] --------+
          -> semantic encoder (CNN, or a teacher-initialised backbone) -> z_sem [B, semantic_dim, h, w]
                                                                                           |
    [z_sem; z_pix] -> dual codebook, shared index i* = argmin d_sem + w_pix d_pix -> ids [B, h, w]
                      (or VAR multi-scale residual quantisation -> ids [B, sum(scale^2)])
    code = [E_sem[i*]; E_pix[i*]] -> pixel half -> post_quant_conv -> pixel decoder -> image
                                  -> semantic half -> semantic decoder (ViT) -> teacher features

Training loss (``training_losses``)::

    loss = l1 |x - x'| + l2 (x - x')^2 + perceptual LPIPS + gan * adaptive * hinge_G     (pixel: vq/autoencoder.py's)
         + semantic * mean(1 - cos(semantic_decoder(code_sem), teacher(x)))              (semantic distillation)
         + codebook * ||sg(z) - z_q||^2 + commitment * ||z - sg(z_q)||^2                 (both codebooks, one index)

The frozen teacher (``teacher``: a spec of ``zoo.image.teachers``) is loaded only when training needs it
and is never part of the checkpoint: a trained tokenizer encodes and decodes without it.
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange

from zoo.errors import ZooError
from zoo.image.teachers import Teacher, build_teacher, teacher_spec
from zoo.image.tokenflow.dual_codebook import DualCodebook, MultiScaleDualCodebook
from zoo.image.tokenflow.parts import SemanticDecoder, SemanticEncoder, cosine_distillation_loss
from zoo.image.vq.autoencoder import PIXEL_LOSS_DEFAULTS, PixelAutoencoder, checked_options
from zoo.image.vq.vqgan import checked_channel_mult
from zoo.quantize import codebook_perplexity
from zoo.tokenizer import TokenizerOutput, check_ids

# The pixel autoencoder's options plus the dual codebook's two terms and the semantic distillation.
LOSS_DEFAULTS: dict[str, Any] = {**PIXEL_LOSS_DEFAULTS, "commitment": 0.25, "codebook": 1.0, "semantic": 1.0}
DECODER_DEFAULTS = {"width": 256, "depth": 3, "heads": 4}


class TokenFlowTokenizer(PixelAutoencoder):
    """Dual-codebook image tokenizer with a shared index (see the module docstring)."""

    def __init__(
        self,
        channels: int = 64,
        channel_mult: tuple[int, ...] = (1, 2, 2, 4),
        num_res_blocks: int = 1,
        z_channels: int = 64,
        attention: bool = True,
        semantic_encoder: dict | None = None,
        semantic_decoder: dict | None = None,
        codebook_size: int = 8192,
        semantic_dim: int = 32,
        pixel_dim: int = 8,
        pixel_weight: float = 1.0,
        scales: list[int] | None = None,
        scale_drop: float = 0.1,
        restart_unused_after: int = 0,
        teacher: str | dict | None = None,
        teacher_dim: int = 512,
        loss: dict | None = None,
        seed: int = 0,
    ):
        if teacher_dim < 1:
            raise ZooError(f"teacher_dim: expected the width of the teacher's features (>= 1), got {teacher_dim}")
        super().__init__(loss, LOSS_DEFAULTS)
        channel_mult, self.downsample = checked_channel_mult(channel_mult)
        self.teacher_spec = None if teacher is None else teacher_spec(teacher)  # checked now, loaded when training
        self.teacher_dim = int(teacher_dim)
        decoder_options = checked_options("semantic_decoder", semantic_decoder, DECODER_DEFAULTS)
        pixel_defaults = {"channels": channels, "channel_mult": channel_mult, "num_res_blocks": num_res_blocks,
                          "z_channels": z_channels, "attention": attention}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if scales:
                self.quantize: DualCodebook = MultiScaleDualCodebook(codebook_size, semantic_dim, pixel_dim, scales,
                                                                     pixel_weight, scale_drop, restart_unused_after)
            else:
                self.quantize = DualCodebook(codebook_size, semantic_dim, pixel_dim, pixel_weight,
                                             restart_unused_after)
            self.build_pixel_path(channels, channel_mult, num_res_blocks, z_channels, attention, pixel_dim)
            self.semantic_encoder = SemanticEncoder(dict(semantic_encoder or {"kind": "cnn"}), semantic_dim,
                                                    pixel_defaults)
            self.semantic_decoder = SemanticDecoder(semantic_dim, self.teacher_dim, **decoder_options)
            self.build_discriminator()
        if self.semantic_encoder.downsample not in (None, self.downsample):
            raise ZooError(f"semantic_encoder: its CNN downsamples by {self.semantic_encoder.downsample}, the pixel "
                           f"encoder by {self.downsample}; the two must share the token grid")
        # Frozen, external and training-only: kept out of the state dict (a list hides it from nn.Module).
        self._teacher: list[Teacher] = []

    # -- contract --------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.quantize.codebook_size

    @property
    def multi_scale(self) -> bool:
        return isinstance(self.quantize, MultiScaleDualCodebook)

    @property
    def semantic_dim(self) -> int:
        return self.quantize.semantic_dim

    @property
    def codebook(self) -> torch.Tensor:
        """``[K, semantic_dim + pixel_dim]``: each id's semantic and pixel codes, concatenated."""
        return self.quantize.codebook

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, h, w]`` (multi-scale: ``[B, L]``) -> concatenated codes ``[..., semantic_dim + pixel_dim]``."""
        return self.quantize.lookup(self._check_ids(ids))

    def semantic_embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids -> the quantised semantic features ``[..., semantic_dim]`` (the semantic codebook's entries)."""
        return self.embed(ids)[..., : self.semantic_dim]

    def _check_ids(self, ids: torch.Tensor) -> torch.Tensor:
        ids = check_ids(ids, self.vocab_size).to(self.device)
        if self.multi_scale and (ids.ndim != 2 or ids.shape[1] != self.quantize.num_tokens):
            raise ZooError(f"ids: expected [B, {self.quantize.num_tokens}] (scales {self.quantize.scales}), "
                           f"got {list(ids.shape)}")
        if not self.multi_scale and ids.ndim != 3:
            raise ZooError(f"ids: expected a grid [B, h, w], got {list(ids.shape)}")
        return ids

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        x = super()._check_input(x)
        if self.multi_scale:
            side = self.quantize.scales[-1] * self.downsample
            if tuple(x.shape[-2:]) != (side, side):
                raise ZooError(f"images: this multi-scale tokenizer (scales {self.quantize.scales}, downsampling "
                               f"{self.downsample}) takes {side}x{side} images, got {x.shape[-2]}x{x.shape[-1]}")
        return x

    def decode_semantic(self, ids: torch.Tensor) -> torch.Tensor:
        """ids -> the semantic decoder's prediction of the teacher's features ``[B, teacher_dim, h, w]``."""
        with torch.no_grad():
            return self.semantic_decoder(self.codes_from_ids(ids)[:, : self.semantic_dim])

    # -- pieces ---------------------------------------------------------------------------------------------
    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Images in ``[0, 1]`` -> ``[z_sem; z_pix]`` ``[B, semantic_dim + pixel_dim, h, w]`` before quantisation."""
        z_pix = super().encode_latent(x)
        z_sem = self.semantic_encoder(x, tuple(z_pix.shape[-2:]))
        return torch.cat([z_sem, z_pix], dim=1)

    def ids_from_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """``[z_sem; z_pix]`` -> shared ids ``[B, h, w]`` (multi-scale: ``[B, sum(scale^2)]``)."""
        return self.quantize.quantize(latent)[1]

    def codes_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """ids -> codes ``[B, semantic_dim + pixel_dim, h, w]`` (multi-scale: summed over scales)."""
        ids = self._check_ids(ids)
        if self.multi_scale:
            return self.quantize.codes_from_ids(ids)
        return rearrange(self.quantize.lookup(ids), "b h w d -> b d h w")

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, semantic_dim + pixel_dim, h, w]`` -> images in ``[0, 1]`` through the pixel half (unclamped)."""
        return super().decode_codes(codes[:, self.semantic_dim:])

    def teacher(self) -> Teacher:
        """The frozen teacher, loaded on first use (training only)."""
        if not self._teacher:
            if self.teacher_spec is None:
                raise ZooError("TokenFlowTokenizer: training needs a teacher; set teacher= (a zoo checkpoint folder, "
                               "'inception', 'timm:NAME,weights=FILE', a TorchScript file or a mapping, see "
                               "zoo.image.teachers)")
            self._teacher.append(build_teacher(self.teacher_spec))
        return self._teacher[0].to(self.device)

    # -- the loss -------------------------------------------------------------------------------------------
    def _run(self, x: torch.Tensor, step: int | None) -> TokenizerOutput:
        """Pixel and quantiser losses, plus the semantic distillation at training steps (``forward`` needs no
        teacher); ``extras["semantic"]`` holds the semantic decoder's prediction."""
        target = None
        if step is not None:  # training (and validation): the teacher's features are the semantic target
            teacher = self.teacher()
            if self.training:
                self.semantic_encoder.maybe_init_from(teacher)
            target = teacher(x)
            if target.shape[1] != self.teacher_dim:
                raise ZooError(f"teacher gives {target.shape[1]}-d features but teacher_dim is {self.teacher_dim}; "
                               "set teacher_dim to the teacher's width")
        codes, ids, quantizer_losses = self.quantize.quantize(self.encode_latent(x))
        reconstruction = self.decode_codes(codes)
        prediction = self.semantic_decoder(codes[:, : self.semantic_dim])
        terms = dict(quantizer_losses)
        if target is not None:
            terms["semantic"] = cosine_distillation_loss(prediction, target.to(prediction.dtype))
        losses = self.pixel_losses(x, reconstruction, terms, step)
        valid = ids.detach()[ids.detach() >= 0]
        extras = {"semantic": prediction, "perplexity": codebook_perplexity(valid, self.vocab_size)}
        return TokenizerOutput(output=reconstruction, indices=ids, losses=losses, extras=extras)

    def extra_repr(self) -> str:
        scales = f", scales={self.quantize.scales}" if self.multi_scale else ""
        return f"{super().extra_repr()}, semantic_dim={self.semantic_dim}, pixel_dim={self.quantize.pixel_dim}{scales}"
