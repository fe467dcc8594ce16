"""TokenFlowTokenizer: one token id that indexes a semantic and a pixel codebook (TokenFlow, arXiv 2412.03069).

    image -> pixel encoder (VQGAN CNN) -> quant_conv -> z_pix [B, pixel_dim, h, w] --------+
          -> semantic encoder (CNN, or a teacher-initialised backbone) -> z_sem [B, semantic_dim, h, w]
                                                                                           |
    [z_sem; z_pix] -> dual codebook, shared index i* = argmin d_sem + w_pix d_pix -> ids [B, h, w]
                      (or VAR multi-scale residual quantisation -> ids [B, sum(scale^2)])
    code = [E_sem[i*]; E_pix[i*]] -> pixel half -> post_quant_conv -> pixel decoder -> image
                                  -> semantic half -> semantic decoder (ViT) -> teacher features

Training loss (``training_losses``)::

    loss = l1 |x - x'| + l2 (x - x')^2 + perceptual LPIPS + gan * adaptive * hinge_G     (pixel: the VQ family's)
         + semantic * mean(1 - cos(semantic_decoder(code_sem), teacher(x)))              (semantic distillation)
         + codebook * ||sg(z) - z_q||^2 + commitment * ||z - sg(z_q)||^2                 (both codebooks, one index)

The frozen teacher (``teacher``: a spec of ``zoo.image.teachers``) is loaded only when training needs it
and is never part of the checkpoint: a trained tokenizer encodes and decodes without it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from einops import rearrange
from torch import nn

from zoo.errors import ZooError
from zoo.image.teachers import Teacher, build_teacher, teacher_spec
from zoo.image.tokenflow.dual_codebook import DualCodebook, MultiScaleDualCodebook
from zoo.image.tokenflow.parts import SemanticDecoder, SemanticEncoder, cosine_distillation_loss
from zoo.image.vq.losses import PatchDiscriminator, PerceptualLoss, adaptive_gan_weight
from zoo.image.vq.model import LOSS_DEFAULTS as VQ_LOSS_DEFAULTS
from zoo.image.vq.model import VQTokenizer
from zoo.image.vq.vqgan import Decoder, Encoder, checked_channel_mult, checked_image_grid
from zoo.quantize import codebook_perplexity
from zoo.tokenizer import NeuralTokenizer, TokenizerOutput, check_ids

# The VQ family's pixel-side terms (no LFQ entropy), plus the codebook term and the semantic distillation.
LOSS_DEFAULTS: dict[str, Any] = {
    **{k: v for k, v in VQ_LOSS_DEFAULTS.items() if k != "entropy"},
    "codebook": 1.0,
    "semantic": 1.0,
}
DECODER_DEFAULTS = {"width": 256, "depth": 3, "heads": 4}


def _options(name: str, config: dict | None, defaults: dict) -> dict:
    config = dict(config or {})
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ZooError(f"{name}: unknown option(s) {unknown}; expected some of {sorted(defaults)}")
    return {**defaults, **config}


class TokenFlowTokenizer(NeuralTokenizer):
    """Dual-codebook image tokenizer with a shared index (see the module docstring)."""

    modality: ClassVar[str] = "image"

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
        super().__init__()
        channel_mult, self.downsample = checked_channel_mult(channel_mult)
        if teacher_dim < 1:
            raise ZooError(f"teacher_dim: expected the width of the teacher's features (>= 1), got {teacher_dim}")
        self.loss_weights = _options("loss", loss, LOSS_DEFAULTS)
        if self.loss_weights["perceptual"] > 0 and not self.loss_weights["perceptual_weights"]:
            raise ZooError("loss.perceptual > 0 needs loss.perceptual_weights: a local safetensors file of VGG16 "
                           "weights")
        self.teacher_spec = None if teacher is None else teacher_spec(teacher)  # checked now, loaded when training
        self.teacher_dim = int(teacher_dim)
        decoder_options = _options("semantic_decoder", semantic_decoder, DECODER_DEFAULTS)
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
            self.encoder = Encoder(channels, channel_mult, num_res_blocks, z_channels, attention)
            self.quant_conv = nn.Conv2d(z_channels, pixel_dim, 1)
            self.post_quant_conv = nn.Conv2d(pixel_dim, z_channels, 1)
            self.decoder = Decoder(channels, channel_mult, num_res_blocks, z_channels, attention)
            self.semantic_encoder = SemanticEncoder(dict(semantic_encoder or {"kind": "cnn"}), semantic_dim,
                                                    pixel_defaults)
            self.semantic_decoder = SemanticDecoder(semantic_dim, self.teacher_dim, **decoder_options)
            if self.loss_weights["gan"] > 0:
                self.discriminator = PatchDiscriminator(self.loss_weights["disc_channels"],
                                                        self.loss_weights["disc_layers"])
        if self.semantic_encoder.downsample not in (None, self.downsample):
            raise ZooError(f"semantic_encoder: its CNN downsamples by {self.semantic_encoder.downsample}, the pixel "
                           f"encoder by {self.downsample}; the two must share the token grid")
        # Frozen, external and training-only: kept out of the state dict (a list hides them from nn.Module).
        self._perceptual = [PerceptualLoss(self.loss_weights["perceptual_weights"])] \
            if self.loss_weights["perceptual"] > 0 else []
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
        x = checked_image_grid(x, self.downsample)
        if self.multi_scale:
            side = self.quantize.scales[-1] * self.downsample
            if tuple(x.shape[-2:]) != (side, side):
                raise ZooError(f"images: this multi-scale tokenizer (scales {self.quantize.scales}, downsampling "
                               f"{self.downsample}) takes {side}x{side} images, got {x.shape[-2]}x{x.shape[-1]}")
        return x.to(self.device)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in ``[0, 1]`` -> ids ``[B, H/f, W/f]`` (multi-scale: ``[B, sum(scale^2)]``)."""
        x = self._check_input(x)
        with torch.no_grad():
            return self.quantize.quantize(self.encode_latent(x))[1]

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids -> images ``[B, 3, H, W]`` in ``[0, 1]`` (through the pixel half of the codes)."""
        with torch.no_grad():
            return self.decode_codes(self.codes_from_ids(ids)).clamp(0.0, 1.0)

    def decode_semantic(self, ids: torch.Tensor) -> torch.Tensor:
        """ids -> the semantic decoder's prediction of the teacher's features ``[B, teacher_dim, h, w]``."""
        with torch.no_grad():
            return self.semantic_decoder(self.codes_from_ids(ids)[:, : self.semantic_dim])

    # -- pieces ---------------------------------------------------------------------------------------------
    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Images in ``[0, 1]`` -> ``[z_sem; z_pix]`` ``[B, semantic_dim + pixel_dim, h, w]`` before quantisation."""
        z_pix = self.quant_conv(self.encoder(2.0 * x - 1.0))
        z_sem = self.semantic_encoder(x, tuple(z_pix.shape[-2:]))
        return torch.cat([z_sem, z_pix], dim=1)

    def codes_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """ids -> codes ``[B, semantic_dim + pixel_dim, h, w]`` (multi-scale: summed over scales)."""
        ids = self._check_ids(ids)
        if self.multi_scale:
            return self.quantize.codes_from_ids(ids)
        return rearrange(self.quantize.lookup(ids), "b h w d -> b d h w")

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, semantic_dim + pixel_dim, h, w]`` -> images in ``[0, 1]`` (unclamped, for losses)."""
        pixel = codes[:, self.semantic_dim:]
        return (self.decoder(self.post_quant_conv(pixel)) + 1.0) / 2.0

    def teacher(self) -> Teacher:
        """The frozen teacher, loaded on first use (training only)."""
        if not self._teacher:
            if self.teacher_spec is None:
                raise ZooError("TokenFlowTokenizer: training needs a teacher; set teacher= (a zoo checkpoint folder, "
                               "'inception', 'timm:NAME,weights=FILE', a TorchScript file or a mapping, see "
                               "zoo.image.teachers)")
            self._teacher.append(build_teacher(self.teacher_spec))
        return self._teacher[0].to(self.device)

    # -- forward and the loss -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        """Reconstruct a batch: pixel and quantiser losses (no teacher, no GAN); ``extras["semantic"]`` holds the
        semantic decoder's prediction."""
        return self._run(self._check_input(x), step=None)

    def training_losses(self, batch: dict, step: int) -> TokenizerOutput:
        if "image" not in batch:
            raise ZooError(f"TokenFlowTokenizer: batch has no 'image' entry (keys: {sorted(batch)})")
        return self._run(self._check_input(batch["image"]), step=step)

    def _run(self, x: torch.Tensor, step: int | None) -> TokenizerOutput:
        weights = self.loss_weights
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

        losses: dict[str, torch.Tensor] = {
            "l1": (reconstruction - x).abs().mean(),
            "l2": (reconstruction - x).square().mean(),
        }
        if self._perceptual:
            net = self._perceptual[0].to(x.device)
            losses["perceptual"] = net(2.0 * reconstruction - 1.0, 2.0 * x - 1.0)
        rec_loss = sum(weights[name] * losses[name] for name in list(losses))
        total = rec_loss
        for name, value in quantizer_losses.items():
            losses[name] = value
            total = total + weights[name] * value
        if target is not None:
            losses["semantic"] = cosine_distillation_loss(prediction, target.to(prediction.dtype))
            total = total + weights["semantic"] * losses["semantic"]
        if self._gan_active(step):
            gan = self._generator_gan_loss(reconstruction)
            adaptive = adaptive_gan_weight(rec_loss, gan, self.decoder.conv_out.weight, weights["adaptive_weight_max"])
            losses["gan"], losses["gan_adaptive_weight"] = gan, adaptive
            total = total + weights["gan"] * adaptive * gan
        losses["loss"] = total
        valid = ids.detach()[ids.detach() >= 0]
        extras = {"semantic": prediction, "perplexity": codebook_perplexity(valid, self.vocab_size)}
        return TokenizerOutput(output=reconstruction, indices=ids, losses=losses, extras=extras)

    # The GAN phases and the discriminator's hinge loss are the VQ family's (zoo.image.vq.model), shared, not rewritten.
    _gan_active = VQTokenizer._gan_active
    _generator_gan_loss = VQTokenizer._generator_gan_loss
    discriminator_losses = VQTokenizer.discriminator_losses

    def extra_repr(self) -> str:
        scales = f", scales={self.quantize.scales}" if self.multi_scale else ""
        return (f"downsample={self.downsample}, vocab_size={self.vocab_size}, semantic_dim={self.semantic_dim}, "
                f"pixel_dim={self.quantize.pixel_dim}{scales}")
