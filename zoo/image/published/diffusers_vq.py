"""Taming-style VQGANs in diffusers' layout (aMUSEd's VQ-GAN, the CompVis latent-diffusion VQ autoencoders)
through diffusers' ``VQModel``.

``VQModel`` is the taming VQGAN topology (Esser et al., https://arxiv.org/abs/2012.09841) as diffusers ships
it: ``DownEncoderBlock2D`` levels (one halving per level past the first), a mid block with or without
attention, ``quant_conv`` to the code dimension, a Euclidean nearest-code ``VectorQuantizer``
(``argmin cdist``), ``post_quant_conv`` and the mirrored decoder. The repos converted to diffusers hold the
model under a ``vqvae/`` subfolder with the class's own tensor names, so ``convert`` maps prefixes only;
taming-transformers' own ``.ckpt`` files (the ImageNet f16 VQGANs) hold the same network in taming's names,
which ``convert`` maps with ``taming.taming_to_diffusers`` (the decoder's levels reversed, attention's 1x1
convolutions reshaped to linear weights).

    images [B, 3, H, W] in [0, 1] -> the pipeline's normalisation -> encoder -> quant_conv
        -> nearest code -> ids [B, H/f, W/f]
    ids -> codes -> post_quant_conv -> decoder -> the inverse normalisation, clamped -> [0, 1]

Normalisation per entry: aMUSEd's pipelines feed ``[0, 1]`` pixels (``VaeImageProcessor(do_normalize=False)``,
so mean 0, std 1); latent diffusion's pipelines use ``[-1, 1]`` (mean = std = 0.5). The library paths these
mirror: aMUSEd's img2img ``vqvae.quantize(vqvae.encode(x).latents)[2][2]`` for ids and
``vqvae.decode(ids, force_not_quantize=True, shape=...)`` (``lookup_from_codebook``) for pixels.
"""

from __future__ import annotations

import inspect

import torch
from einops import rearrange

from zoo.errors import ZooError
from zoo.image.published.base import PublishedImageTokenizer, import_class
from zoo.image.published.taming import is_taming_layout, taming_to_diffusers

# diffusers' VQModel arguments a zoo config may set (its __init__'s, as of diffusers 0.42).
_DIFFUSERS_HINT = "these tokenizers need diffusers (tested with 0.42; pip install 'diffusers>=0.42')"


class DiffusersVQTokenizer(PublishedImageTokenizer):
    """A VQGAN in diffusers' ``VQModel`` (aMUSEd, latent diffusion's VQ-f4 / f8, taming's ImageNet VQGANs)."""

    hf_model = "diffusers.models.autoencoders.vq_model:VQModel"
    # this wrapper's own, the bare VQModel (a vqvae/ subfolder file, or a taming .ckpt's state_dict), a whole
    # pipeline's state under vqvae.
    source_prefixes = ("model.", "", "vqvae.")

    def __init__(self, vq_config: dict, image_size: int = 256, rescale_factor: float = 1 / 255,
                 image_mean: tuple[float, ...] = (0.5, 0.5, 0.5), image_std: tuple[float, ...] = (0.5, 0.5, 0.5),
                 seed: int = 0):
        super().__init__(vq_config, image_size, rescale_factor, image_mean, image_std, seed)

    def _build(self, vq_config: dict, seed: int):
        model_cls = import_class(self.hf_model)
        known = set(inspect.signature(model_cls.__init__).parameters) - {"self"}
        unknown = sorted(set(vq_config) - known)
        if unknown:  # diffusers' configs ignore unknown keys with a warning; a typo must not build another model
            raise ZooError(f"{type(self).__name__}: vq_config keys {unknown} are not arguments of "
                           f"{model_cls.__name__} (it takes {sorted(known)})")
        if len(vq_config.get("down_block_types", ())) != len(vq_config.get("block_out_channels", (None,))):
            raise ZooError(f"{type(self).__name__}: vq_config needs one down_block_types entry per "
                           f"block_out_channels entry, got {vq_config.get('down_block_types')} and "
                           f"{vq_config.get('block_out_channels')}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = model_cls(**vq_config)
        return model.float().eval().requires_grad_(False)

    def _downsample_factor(self) -> int:
        return 2 ** (len(self.model.config.block_out_channels) - 1)

    @classmethod
    def map_layout(cls, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """diffusers' layout is kept as it is; taming's (``encoder.down.N.block.M...``) is mapped to it."""
        return taming_to_diffusers(tensors) if is_taming_layout(tensors) else tensors

    @property
    def family(self) -> str:
        return "diffusers VQModel"

    def ids_from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.quantize(self.model.encode(pixels).latents)[2][2]

    def pixels_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        if self.model.config.lookup_from_codebook:  # aMUSEd's path: ids straight into decode
            b, h, w = ids.shape
            shape = (b, h, w, self.codebook.shape[1])
            return self.model.decode(ids.reshape(-1), force_not_quantize=True, shape=shape).sample
        # latent diffusion's path: decode takes code vectors, already quantised
        codes = rearrange(self.codebook[ids], "b h w d -> b d h w").contiguous()
        return self.model.decode(codes, force_not_quantize=True).sample
