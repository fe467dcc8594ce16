"""VQTokenizer: a VQGAN-style image tokenizer over any zoo quantiser, with optional RobusTok latent perturbation.

    image [B, 3, H, W] in [0, 1] -> encoder -> quant_conv (1x1, to code_dim) -> quantiser -> ids [B, H/f, W/f]
    ids -> codes [B, code_dim, h, w] -> post_quant_conv -> decoder -> image [B, 3, H, W]

Training loss (``training_losses``; the pixel and GAN terms are ``zoo.image.vq.autoencoder``'s)::

    loss = l1 * |x - x'| + l2 * (x - x')^2 + perceptual * LPIPS(x, x')        (decoder side)
         + commitment * commit + entropy * lfq_entropy                        (quantiser side, clean)
         + gan * adaptive_weight * hinge_G(D(x'))                              (from gan_start on)

With ``perturbation`` set (RobusTok, https://arxiv.org/abs/2503.08354), x' is decoded from the
perturbed latent of ``zoo.quantize.perturb.latent_perturbation`` while the quantiser-side terms use
the clean quantisation.
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange

from zoo.image.vq.autoencoder import PIXEL_LOSS_DEFAULTS, PixelAutoencoder
from zoo.image.vq.vqgan import checked_channel_mult
from zoo.quantize import Quantizer, codebook_perplexity
from zoo.quantize.perturb import PerturbationSchedule, latent_perturbation
from zoo.tokenizer import TokenizerOutput, check_ids

# The pixel autoencoder's options plus the quantiser's terms (the weights of ``Quantizer``'s losses).
LOSS_DEFAULTS: dict[str, Any] = {**PIXEL_LOSS_DEFAULTS, "commitment": 0.25, "entropy": 0.1}


class VQTokenizer(PixelAutoencoder):
    """VQGAN-style tokenizer; ``quantizer`` picks VQ / FSQ / LFQ / residual VQ (see ``zoo.quantize``)."""

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
        super().__init__(loss, LOSS_DEFAULTS)
        channel_mult, self.downsample = checked_channel_mult(channel_mult)
        self.perturbation = PerturbationSchedule.from_config(perturbation)
        # Seeded initialisation, independent of the global RNG: zoo.load(name) always builds the same network.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.quantize = Quantizer(quantizer or {"kind": "vq"})
            self.build_pixel_path(channels, channel_mult, num_res_blocks, z_channels, attention,
                                  self.quantize.code_dim)
            self.build_discriminator()

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
        return rearrange(self.codes_from_ids(ids), "b d h w -> b h w d")

    # -- pieces ----------------------------------------------------------------------------------------
    def ids_from_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, code_dim, h, w]`` -> ids ``[B, h, w]`` (``[B, h, w, q]`` for residual VQ)."""
        return self.quantize(latent).indices

    def codes_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """ids -> code vectors ``[B, code_dim, h, w]`` (summed over levels)."""
        ids = check_ids(ids, self.vocab_size).to(self.device)
        return self.quantize.indices_to_codes(ids)

    # -- the loss ----------------------------------------------------------------------------------------
    def _run(self, x: torch.Tensor, step: int | None) -> TokenizerOutput:
        quantized = self.quantize(self.encode_latent(x))
        decoder_input, extras = quantized.quantized, {}
        if self.perturbation is not None and self.training and step is not None:
            alpha, delta = self.perturbation.at_step(step)
            perturbed = latent_perturbation(self.quantize, quantized, alpha, self.perturbation.beta, delta)
            decoder_input = perturbed.quantized
            extras.update(perturb_alpha=alpha, perturb_delta=delta,
                          perturbed_token_rate=perturbed.changed.float().mean().detach())
        reconstruction = self.decode_codes(decoder_input)
        # Quantiser terms from the clean quantisation: RobusTok applies VQ losses before perturbing.
        losses = self.pixel_losses(x, reconstruction, quantized.losses, step)
        extras["perplexity"] = codebook_perplexity(quantized.indices.detach(), self.vocab_size)
        return TokenizerOutput(output=reconstruction, indices=quantized.indices, losses=losses, extras=extras)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, quantizer={self.quantize.kind!r}"
