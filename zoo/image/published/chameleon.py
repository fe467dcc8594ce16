"""Chameleon's image tokenizer (Chameleon Team, https://arxiv.org/abs/2405.09818, section 2.1) through
transformers' ``ChameleonVQVAE``: encode only.

A taming-style VQGAN (Gafni et al.'s Make-A-Scene recipe) at f16 with 8,192 codes of 256 dimensions: a
512x512 image gives 32x32 = 1024 ids (Euclidean nearest code). transformers ships the encoder, the
quantiser and ``post_quant_conv`` but no pixel decoder (Meta's release holds one in ``vqgan.ckpt``, a
pickled Lightning checkpoint), so this entry encodes and says so when asked to decode.

    images [B, 3, H, W] in [0, 1] -> x * 255 * 0.0078 - 1 (the processor's rescale_factor and mean = std = 1)
        -> encoder -> quant_conv -> nearest of 8192 codes -> ids [B, H/16, W/16]
"""

from __future__ import annotations

import torch

from zoo.image.published.base import PublishedImageTokenizer


class ChameleonVQTokenizer(PublishedImageTokenizer):
    """Chameleon's VQGAN encoder and quantiser, wrapped around ``transformers.ChameleonVQVAE``."""

    hf_config = "transformers.models.chameleon.configuration_chameleon:ChameleonVQVAEConfig"
    hf_model = "transformers.models.chameleon.modeling_chameleon:ChameleonVQVAE"
    has_decoder = False

    def __init__(self, vq_config: dict, image_size: int = 512, rescale_factor: float = 0.0078,
                 image_mean: tuple[float, ...] = (1.0, 1.0, 1.0), image_std: tuple[float, ...] = (1.0, 1.0, 1.0),
                 seed: int = 0):
        super().__init__(vq_config, image_size, rescale_factor, image_mean, image_std, seed)

    def ids_from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode(pixels).image_tokens
