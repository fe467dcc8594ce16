"""VQTokenizer: a VQGAN-style image tokenizer over any zoo quantiser, with optional RobusTok latent perturbation.

    image [B, 3, H, W] in [0, 1] -> encoder -> quant_conv (1x1, to code_dim) -> quantiser -> ids [B, H/f, W/f]
    ids -> codes [B, code_dim, h, w] -> post_quant_conv -> decoder -> image [B, 3, H, W]

Training loss (``training_losses``)::

    loss = l1 * |x - x'| + l2 * (x - x')^2 + perceptual * LPIPS(x, x')        (decoder side)
         + commitment * commit + entropy * lfq_entropy                        (quantiser side, clean)
         + gan * adaptive_weight * hinge_G(D(x'))                              (from gan_start on)

With ``perturbation`` set (RobusTok, https://arxiv.org/abs/2503.08354), x' is decoded from the
perturbed latent of ``zoo.quantize.perturb.latent_perturbation`` while the quantiser-side terms use
the clean quantisation. The PatchGAN discriminator (``self.discriminator``, built only when
``loss.gan > 0``) is trained by the trainer's second optimiser on ``discriminator_losses``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from einops import rearrange
from torch import nn

from zoo.errors import ZooError
from zoo.image.vq.losses import (
    PatchDiscriminator,
    PerceptualLoss,
    adaptive_gan_weight,
    hinge_discriminator_loss,
    hinge_generator_loss,
)
from zoo.image.vq.vqgan import Decoder, Encoder, checked_channel_mult, checked_image_grid
from zoo.quantize import Quantizer, codebook_perplexity
from zoo.quantize.perturb import PerturbationSchedule, latent_perturbation
from zoo.tokenizer import NeuralTokenizer, TokenizerOutput, check_ids

LOSS_DEFAULTS: dict[str, Any] = {
    "l1": 1.0,
    "l2": 1.0,
    "commitment": 0.25,
    "entropy": 0.1,
    "perceptual": 0.0,
    "perceptual_weights": None,
    "gan": 0.0,
    "gan_start": 0,
    "adaptive_weight_max": 1e4,
    "disc_channels": 64,
    "disc_layers": 3,
}


def loss_options(config: dict | None) -> dict:
    config = dict(config or {})
    unknown = sorted(set(config) - set(LOSS_DEFAULTS))
    if unknown:
        raise ZooError(f"loss: unknown option(s) {unknown}; expected some of {sorted(LOSS_DEFAULTS)}")
    options = {**LOSS_DEFAULTS, **config}
    if options["perceptual"] > 0 and not options["perceptual_weights"]:
        raise ZooError("loss.perceptual > 0 needs loss.perceptual_weights: a local safetensors file of VGG16 weights")
    return options


class VQTokenizer(NeuralTokenizer):
    """VQGAN-style tokenizer; ``quantizer`` picks VQ / FSQ / LFQ / residual VQ (see ``zoo.quantize``)."""

    modality: ClassVar[str] = "image"

    def __init__(
        self,
        channels: int = 64,
        channel_mult: tuple[int, ...] = (1, 2, 2, 4),
        num_res_blocks: int = 1,
        z_channels: int = 64,
        attention: bool = True,
        quantizer: dict | None = None,
        loss: dict | None = None,
        perturbation: dict | None = None,
        seed: int = 0,
    ):
        super().__init__()
        channel_mult, self.downsample = checked_channel_mult(channel_mult)
        self.loss_weights = loss_options(loss)
        self.perturbation = PerturbationSchedule.from_config(perturbation)
        # Seeded initialisation, independent of the global RNG: zoo.load(name) always builds the same network.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.quantize = Quantizer(quantizer or {"kind": "vq"})
            code_dim = self.quantize.code_dim
            self.encoder = Encoder(channels, channel_mult, num_res_blocks, z_channels, attention)
            self.quant_conv = nn.Conv2d(z_channels, code_dim, 1)
            self.post_quant_conv = nn.Conv2d(code_dim, z_channels, 1)
            self.decoder = Decoder(channels, channel_mult, num_res_blocks, z_channels, attention)
            if self.loss_weights["gan"] > 0:
                self.discriminator = PatchDiscriminator(self.loss_weights["disc_channels"],
                                                        self.loss_weights["disc_layers"])
        # Frozen and external: kept out of the state dict so checkpoints do not carry VGG.
        self._perceptual = [PerceptualLoss(self.loss_weights["perceptual_weights"])] \
            if self.loss_weights["perceptual"] > 0 else []

    # -- contract --------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.quantize.vocab_size

    @property
    def num_codebooks(self) -> int:
        """Codebook levels: 1, or ``q`` for residual VQ (ids ``[B, h, w, q]``)."""
        return self.quantize.num_levels

    @property
    def codebook(self) -> torch.Tensor:
        """``[K, code_dim]`` (``[q, K, code_dim]`` for residual VQ); implicit grids for FSQ / LFQ."""
        return self.quantize.codebook

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, h, w]`` (``[B, h, w, q]``) -> code vectors ``[B, h, w, code_dim]`` (summed over levels)."""
        ids = check_ids(ids, self.vocab_size).to(self.device)
        return rearrange(self.quantize.indices_to_codes(ids), "b d h w -> b h w d")

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        x = checked_image_grid(x, self.downsample)
        return x.to(self.device)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in ``[0, 1]`` -> ids ``[B, H/f, W/f]`` (``[..., q]`` for residual VQ)."""
        x = self._check_input(x)
        with torch.no_grad():
            return self.quantize(self.encode_latent(x)).indices

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids -> images ``[B, 3, H, W]`` in ``[0, 1]``."""
        ids = check_ids(ids, self.vocab_size).to(self.device)
        with torch.no_grad():
            return self.decode_codes(self.quantize.indices_to_codes(ids)).clamp(0.0, 1.0)

    # -- pieces ----------------------------------------------------------------------------------------
    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Images in ``[0, 1]`` -> code-space features ``[B, code_dim, h, w]`` (before quantisation)."""
        return self.quant_conv(self.encoder(2.0 * x - 1.0))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Code vectors ``[B, code_dim, h, w]`` -> images in ``[0, 1]`` (unclamped, for losses)."""
        return (self.decoder(self.post_quant_conv(codes)) + 1.0) / 2.0

    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        """Reconstruct a batch; losses as in training but with no perturbation and no GAN term."""
        return self._run(self._check_input(x), step=None)

    def training_losses(self, batch: dict, step: int) -> TokenizerOutput:
        if "image" not in batch:
            raise ZooError(f"VQTokenizer: batch has no 'image' entry (keys: {sorted(batch)})")
        return self._run(self._check_input(batch["image"]), step=step)

    # -- the loss ----------------------------------------------------------------------------------------
    def _run(self, x: torch.Tensor, step: int | None) -> TokenizerOutput:
        weights = self.loss_weights
        quantized = self.quantize(self.encode_latent(x))
        decoder_input, extras = quantized.quantized, {}
        if self.perturbation is not None and self.training and step is not None:
            alpha, delta = self.perturbation.at_step(step)
            perturbed = latent_perturbation(self.quantize, quantized, alpha, self.perturbation.beta, delta)
            decoder_input = perturbed.quantized
            extras.update(perturb_alpha=alpha, perturb_delta=delta,
                          perturbed_token_rate=perturbed.changed.float().mean().detach())
        reconstruction = self.decode_codes(decoder_input)

        losses: dict[str, torch.Tensor] = {
            "l1": (reconstruction - x).abs().mean(),
            "l2": (reconstruction - x).square().mean(),
        }
        if self._perceptual:
            net = self._perceptual[0].to(x.device)
            losses["perceptual"] = net(2.0 * reconstruction - 1.0, 2.0 * x - 1.0)
        rec_loss = sum(weights[name] * losses[name] for name in list(losses))
        total = rec_loss
        # Quantiser terms from the clean quantisation: RobusTok applies VQ losses before perturbing.
        for name, value in quantized.losses.items():
            losses[name] = value
            total = total + weights[name] * value
        if self._gan_active(step):
            gan = self._generator_gan_loss(reconstruction)
            adaptive = adaptive_gan_weight(rec_loss, gan, self.decoder.conv_out.weight, weights["adaptive_weight_max"])
            losses["gan"], losses["gan_adaptive_weight"] = gan, adaptive
            total = total + weights["gan"] * adaptive * gan
        losses["loss"] = total
        extras["perplexity"] = codebook_perplexity(quantized.indices.detach(), self.vocab_size)
        return TokenizerOutput(output=reconstruction, indices=quantized.indices, losses=losses, extras=extras)

    def _gan_active(self, step: int | None) -> bool:
        return (self.training and step is not None and self.loss_weights["gan"] > 0
                and step >= self.loss_weights["gan_start"])

    def _generator_gan_loss(self, reconstruction: torch.Tensor) -> torch.Tensor:
        # The generator's GAN term must not leave gradients on the discriminator (its optimiser is separate).
        flags = [p.requires_grad for p in self.discriminator.parameters()]
        self.discriminator.requires_grad_(False)
        try:
            return hinge_generator_loss(self.discriminator(2.0 * reconstruction - 1.0))
        finally:
            for parameter, flag in zip(self.discriminator.parameters(), flags):
                parameter.requires_grad_(flag)

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
        return f"downsample={self.downsample}, vocab_size={self.vocab_size}, quantizer={self.quantize.kind!r}"

