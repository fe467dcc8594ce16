"""PixelAutoencoder: what the pixel tokenizers trained with a patch GAN share (``VQTokenizer``, ``TokenFlowTokenizer``).

    image [B, 3, H, W] in [0, 1] -> encoder -> quant_conv -> latent -> (the family's quantiser) -> ids
    ids -> codes -> post_quant_conv -> decoder -> image [B, 3, H, W] in [0, 1]

A family builds the VQGAN pair with ``build_pixel_path`` (and the discriminator with ``build_discriminator``)
and supplies ``ids_from_latent``, ``codes_from_ids``, ``vocab_size`` and ``_run(x, step)``; the base gives
``encode`` / ``decode``, the input check, ``forward`` / ``training_losses`` and, in ``pixel_losses``, the
loss around the family's own terms::

    loss = l1 * |x - x'| + l2 * (x - x')^2 + perceptual * LPIPS(x, x')       (rec: the decoder side)
         + sum of loss.<t> * t over the family's terms t                     (quantiser, distillation, ...)
         + gan * adaptive_weight * hinge_G(D(x'))                             (training steps from gan_start on)

The PatchGAN discriminator (``self.discriminator``, built only when ``loss.gan > 0``) is trained by the
trainer's second optimiser on ``discriminator_losses``; VQGAN's adaptive weight
(https://arxiv.org/abs/2012.09841, eq. 7) scales the generator's GAN term at the decoder's last layer.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.image.vq.losses import (
    PatchDiscriminator,
    PerceptualLoss,
    adaptive_gan_weight,
    frozen_parameters,
    hinge_discriminator_loss,
    hinge_generator_loss,
)
from zoo.image.vq.vqgan import Decoder, Encoder, checked_image_grid
from zoo.tokenizer import NeuralTokenizer, TokenizerOutput

# The decoder-side and GAN options; a family adds the weights of its own terms (named as its losses).
PIXEL_LOSS_DEFAULTS: dict[str, Any] = {
    "l1": 1.0,
    "l2": 1.0,
    "perceptual": 0.0,
    "perceptual_weights": None,
    "gan": 0.0,
    "gan_start": 0,
    "adaptive_weight_max": 1e4,
    "disc_channels": 64,
    "disc_layers": 3,
}


def checked_options(name: str, config: dict | None, defaults: dict) -> dict:
    """``config`` over ``defaults``; an option the defaults lack is an error, as a typo would otherwise do nothing."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ZooError(f"{name}: unknown option(s) {unknown}; expected some of {sorted(defaults)}")
    return {**defaults, **config}


def loss_options(config: dict | None, defaults: dict) -> dict:
    """A pixel autoencoder's ``loss`` options, checked (``defaults``: ``PIXEL_LOSS_DEFAULTS`` plus the family's)."""
    options = checked_options("loss", config, defaults)
    if options["perceptual"] > 0 and not options["perceptual_weights"]:
        raise ZooError("loss.perceptual > 0 needs loss.perceptual_weights: a local safetensors file of VGG16 weights")
    return options


class PixelAutoencoder(NeuralTokenizer):
    """Base of the VQGAN-style image tokenizers: pixel path, input check, reconstruction and GAN losses."""

    modality: ClassVar[str] = "image"
    downsample: int  # the encoder's factor, set by the family from its channel_mult

    def __init__(self, loss: dict | None, loss_defaults: dict[str, Any]):
        super().__init__()
        self.loss_weights = loss_options(loss, loss_defaults)
        # Frozen and external: kept out of the state dict (a list hides it from nn.Module) so checkpoints do not
        # carry VGG.
        self._perceptual = [PerceptualLoss(self.loss_weights["perceptual_weights"])] \
            if self.loss_weights["perceptual"] > 0 else []

    def build_pixel_path(self, channels: int, channel_mult: list[int], num_res_blocks: int, z_channels: int,
                         attention: bool, code_dim: int) -> None:
        """The VQGAN encoder / decoder around a ``code_dim`` latent. Call it inside the family's seeded block:
        these draws follow the quantiser's, and the shipped weights were initialised in that order."""
        self.encoder = Encoder(channels, channel_mult, num_res_blocks, z_channels, attention)
        self.quant_conv = nn.Conv2d(z_channels, code_dim, 1)
        self.post_quant_conv = nn.Conv2d(code_dim, z_channels, 1)
        self.decoder = Decoder(channels, channel_mult, num_res_blocks, z_channels, attention)

    def build_discriminator(self) -> None:
        """The PatchGAN, only when ``loss.gan > 0`` (its draws come last in the seeded block)."""
        if self.loss_weights["gan"] > 0:
            weights = self.loss_weights
            self.discriminator = PatchDiscriminator(weights["disc_channels"], weights["disc_layers"])

    # -- what a family supplies -------------------------------------------------------------------------------
    def ids_from_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """The family's quantiser: ``encode_latent``'s output -> token ids."""
        raise ZooError(f"{type(self).__name__} does not define ids_from_latent(latent), its quantiser")

    def codes_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (checked here) -> codes ``[B, D, h, w]`` that ``decode_codes`` takes."""
        raise ZooError(f"{type(self).__name__} does not define codes_from_ids(ids)")

    def _run(self, x: torch.Tensor, step: int | None) -> TokenizerOutput:
        """Checked images -> reconstruction and losses (``pixel_losses``); ``step`` None outside training."""
        raise ZooError(f"{type(self).__name__} does not define _run(images, step), its losses")

    # -- the contract ---------------------------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        return checked_image_grid(x, self.downsample).to(self.device)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in ``[0, 1]`` -> ids (layout: the family's ``ids_from_latent``)."""
        x = self._check_input(x)
        with torch.no_grad():
            return self.ids_from_latent(self.encode_latent(x))

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids -> images ``[B, 3, H, W]`` in ``[0, 1]``."""
        with torch.no_grad():
            return self.decode_codes(self.codes_from_ids(ids)).clamp(0.0, 1.0)

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Images in ``[0, 1]`` -> pixel latent ``[B, code_dim, h, w]`` (before quantisation)."""
        return self.quant_conv(self.encoder(2.0 * x - 1.0))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Pixel codes ``[B, code_dim, h, w]`` -> images in ``[0, 1]`` (unclamped, for losses)."""
        return (self.decoder(self.post_quant_conv(codes)) + 1.0) / 2.0

    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        """Reconstruct a batch; the losses of training less its training-only terms (no GAN term)."""
        return self._run(self._check_input(x), step=None)

    def training_losses(self, batch: dict, step: int) -> TokenizerOutput:
        if "image" not in batch:
            raise ZooError(f"{type(self).__name__}: batch has no 'image' entry (keys: {sorted(batch)})")
        return self._run(self._check_input(batch["image"]), step=step)

    # -- the loss -------------------------------------------------------------------------------------------
    def pixel_losses(self, x: torch.Tensor, reconstruction: torch.Tensor, terms: dict[str, torch.Tensor],
                     step: int | None) -> dict[str, torch.Tensor]:
        """Every loss by name and their weighted sum as ``"loss"`` (the module docstring's formula).

        ``terms`` are the family's losses, each weighted by the ``loss`` option of its name.
        """
        weights = self.loss_weights
        losses: dict[str, torch.Tensor] = {
            "l1": (reconstruction - x).abs().mean(),
            "l2": (reconstruction - x).square().mean(),
        }
        if self._perceptual:
            net = self._perceptual[0].to(x.device)
            losses["perceptual"] = net(2.0 * reconstruction - 1.0, 2.0 * x - 1.0)
        rec_loss = sum(weights[name] * losses[name] for name in list(losses))
        total = rec_loss
        for name, value in terms.items():
            losses[name] = value
            total = total + weights[name] * value
        if self._gan_active(step):
            gan = self._generator_gan_loss(reconstruction)
            # VQGAN's eq. 7 balances the GAN term against the reconstruction loss alone, not the family's terms.
            adaptive = adaptive_gan_weight(rec_loss, gan, self.decoder.conv_out.weight, weights["adaptive_weight_max"])
            losses["gan"], losses["gan_adaptive_weight"] = gan, adaptive
            total = total + weights["gan"] * adaptive * gan
        losses["loss"] = total
        return losses

    def _gan_active(self, step: int | None) -> bool:
        """The GAN phase: training steps from ``loss.gan_start`` on, when ``loss.gan > 0``."""
        return (self.training and step is not None and self.loss_weights["gan"] > 0
                and step >= self.loss_weights["gan_start"])

    def _generator_gan_loss(self, reconstruction: torch.Tensor) -> torch.Tensor:
        with frozen_parameters(self.discriminator) as discriminator:  # its own optimiser steps on its own loss
            return hinge_generator_loss(discriminator(2.0 * reconstruction - 1.0))

    def discriminator_losses(self, batch: dict, output: TokenizerOutput, step: int) -> dict:
        """Hinge loss for the PatchGAN on real images vs. this step's reconstructions; {} before gan_start."""
        if not self._gan_active(step):
            return {}
        real = 2.0 * batch["image"].to(self.device) - 1.0
        fake = 2.0 * output.output.detach() - 1.0
        logits_real, logits_fake = self.discriminator(real), self.discriminator(fake)
        loss = hinge_discriminator_loss(logits_real, logits_fake)
        return {"loss": loss, "logits_real": logits_real.mean().detach(), "logits_fake": logits_fake.mean().detach()}

    def extra_repr(self) -> str:
        return f"downsample={self.downsample}, vocab_size={self.vocab_size}"
