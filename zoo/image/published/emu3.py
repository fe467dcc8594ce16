"""Emu3's vision tokenizer (Wang et al., https://arxiv.org/abs/2409.18869, section 2.2) through transformers'
``Emu3VQVAE``.

A MoVQGAN-style video tokenizer: a spatial f8 encoder per frame, then temporal convolutions that
downsample time by 4, a 32,768-entry codebook of 4-d codes (Euclidean nearest code) and a decoder whose
normalisations are modulated by the codes (spatial norm). An image is a clip of 4 identical frames, which
the temporal stack reduces to one row of codes; decoding gives 4 frames and the first is the image, as
``Emu3VQVAE.decode`` does.

    images [B, 3, H, W] in [0, 1] -> 2x - 1 (the processor's mean = std = 0.5) -> 4 frames -> encoder
        -> quant_conv -> nearest of 32768 codes -> ids [B, H/8, W/8]
    ids -> codes -> post_quant_conv -> decoder (4 frames, the first kept) -> [-1, 1] -> [0, 1]

``BAAI/Emu3-VisionTokenizer``'s ``model.safetensors`` holds the network under the same names as
transformers' class (transformers' ``convert_emu3_weights_to_hf.py`` only prefixes them with
``model.vqmodel.``), so ``convert`` maps prefixes only.
"""

from __future__ import annotations

import torch

from zoo.image.published.base import PublishedImageTokenizer


class Emu3VQTokenizer(PublishedImageTokenizer):
    """Emu3's VQ image tokenizer, wrapped around ``transformers.Emu3VQVAE``."""

    hf_config = "transformers.models.emu3.configuration_emu3:Emu3VQVAEConfig"
    hf_model = "transformers.models.emu3.modeling_emu3:Emu3VQVAE"
    # Its processor takes 512x512 to 1024x1024 pixels: (1024 / 8)^2 token positions.
    max_tokens = 128 * 128

    def __init__(self, vq_config: dict, image_size: int = 512, rescale_factor: float = 1 / 255,
                 image_mean: tuple[float, ...] = (0.5, 0.5, 0.5), image_std: tuple[float, ...] = (0.5, 0.5, 0.5),
                 seed: int = 0):
        super().__init__(vq_config, image_size, rescale_factor, image_mean, image_std, seed)

    def ids_from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        sizes = torch.tensor([list(pixels.shape[-2:])] * pixels.shape[0])
        return torch.stack(self.model.encode(pixels, image_sizes=sizes).image_tokens)

    def pixels_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.decode(ids)
