"""GLM-Image's semantic image tokenizer (Z.ai, 2026) through transformers' ``GlmImageVisionModel`` and
``GlmImageVQVAE``: encode only.

GLM-Image's autoregressive model reads an image as discrete *semantic* tokens: a ViT (``GlmImageVisionModel``,
one feature per patch, learned position embeddings interpolated to the grid) whose features a VQ
(``GlmImageVQVAE``) quantises: a 1x1 ``quant_conv`` to the code dimension, then the nearest of 16,384
l2-normalised codes (a cosine lookup). There is no pixel decoder: GLM-Image turns tokens back into pixels with a
7B diffusion transformer (diffusers' ``GlmImagePipeline``), so ``decode`` says so in one error.

    images [B, 3, H, W] in [0, 1] -> the processor's normalisation -> patches [(B h w), 3 p p] (raster order)
        -> GlmImageVisionModel (grid (1, h, w) per image) -> features [B, C, h, w]
        -> GlmImageVQVAE.encode (quant_conv, cosine nearest code) -> ids [B, H/p, W/p]

The library path this mirrors: ``GlmImageModel.get_image_tokens(get_image_features(pixel_values,
image_grid_thw).pooler_output)`` on what ``GlmImageImageProcessor`` makes of the image with ``temporal_patch_size
1`` and ``merge_size 1`` (the only settings whose patches the vision model's ``patch_embed`` and position ids
take: it views each patch as ``3 x p x p`` and numbers patches row by row when ``spatial_merge_size`` is 1).

Weights: a whole ``GlmImageForConditionalGeneration`` file holds the two models as ``model.visual.*`` and
``model.vqmodel.*``, the names this wrapper uses, so only those tensors are read (``safe_open``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from zoo.errors import ZooError
from zoo.image.published.base import PublishedImageTokenizer, import_class

_VISION_CONFIG = "transformers.models.glm_image.configuration_glm_image:GlmImageVisionConfig"
_VISION_MODEL = "transformers.models.glm_image.modeling_glm_image:GlmImageVisionModel"
# The two models' tensors, in this wrapper and in a whole GlmImageForConditionalGeneration file.
_PARTS = ("model.visual.", "model.vqmodel.")


def _checked_config(config_cls: type, values: dict, owner: str, what: str):
    """``config_cls(**values)`` after refusing keys it does not define (transformers' configs accept any key)."""
    known = set(config_cls().to_dict())
    unknown = sorted(set(values) - known)
    if unknown:
        raise ZooError(f"{owner}: {what} keys {unknown} are not fields of {config_cls.__name__} "
                       f"(it takes {sorted(known - {'transformers_version'})})")
    return config_cls(**values)


class GlmImageVQTokenizer(PublishedImageTokenizer):
    """GLM-Image's ViT + VQ image tokenizer, wrapped around transformers' ``GlmImageVisionModel`` and
    ``GlmImageVQVAE``; no decoder."""

    hf_config = "transformers.models.glm_image.configuration_glm_image:GlmImageVQVAEConfig"
    hf_model = "transformers.models.glm_image.modeling_glm_image:GlmImageVQVAE"
    has_decoder = False

    def __init__(self, vision_config: dict, vq_config: dict, image_size: int = 1024,
                 rescale_factor: float = 1 / 255, image_mean: tuple[float, ...] = (0.48145466, 0.4578275, 0.40821073),
                 image_std: tuple[float, ...] = (0.26862954, 0.26130258, 0.27577711), seed: int = 0):
        self._vision_config = dict(vision_config)
        super().__init__(vq_config, image_size, rescale_factor, image_mean, image_std, seed)

    def _build(self, vq_config: dict, seed: int):
        owner = type(self).__name__
        vision_config = _checked_config(import_class(_VISION_CONFIG), self._vision_config, owner, "vision_config")
        vq = _checked_config(import_class(self.hf_config), vq_config, owner, "vq_config")
        if vision_config.spatial_merge_size != 1:  # features are one per patch only without merging
            raise ZooError(f"{owner}: vision_config spatial_merge_size must be 1 (GLM-Image's), "
                           f"got {vision_config.spatial_merge_size}")
        if vision_config.hidden_size != vq.latent_channels:
            raise ZooError(f"{owner}: the VQ quantises the ViT's features, so vq_config latent_channels "
                           f"({vq.latent_channels}) must equal vision_config hidden_size ({vision_config.hidden_size})")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = nn.Module()
            model.visual = import_class(_VISION_MODEL)(vision_config)
            model.vqmodel = import_class(self.hf_model)(vq)
        return model.float().eval().requires_grad_(False)

    def _downsample_factor(self) -> int:
        return int(self.model.visual.config.patch_size)

    @property
    def family(self) -> str:
        return "glm_image (GlmImageVisionModel + GlmImageVQVAE)"

    @property
    def vocab_size(self) -> int:
        return int(self.model.vqmodel.quantize.embedding.num_embeddings)

    @property
    def codebook(self) -> torch.Tensor:
        """``[K, D]`` unit vectors: the quantiser compares and returns l2-normalised codes."""
        return F.normalize(self.model.vqmodel.quantize.embedding.weight, dim=-1)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        raise ZooError("GlmImageVQTokenizer has no decoder: GLM-Image's tokens are semantic (ViT features, "
                       "quantised); its pixels come from a 7B diffusion transformer conditioned on them (diffusers' "
                       "GlmImagePipeline), not from a VQ decoder")

    def patches(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised pixels ``[B, 3, H, W]`` -> packed patches ``[(B h w), 3 p p]`` in raster order and
        ``image_grid_thw`` ``[B, 3]``, as ``GlmImageImageProcessor`` packs them (temporal and merge size 1)."""
        p = self.downsample
        b, _, height, width = pixels.shape
        packed = rearrange(pixels, "b c (h p) (w q) -> (b h w) (c p q)", p=p, q=p)
        grid = torch.tensor([[1, height // p, width // p]] * b, device=pixels.device)
        return packed, grid

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels -> the ViT's features ``[B, C, h, w]``, what the VQ quantises."""
        packed, grid = self.patches(pixels)
        hidden = self.model.visual(packed, grid_thw=grid).pooler_output  # [(B h w), C]
        h, w = int(grid[0, 1]), int(grid[0, 2])
        return rearrange(hidden, "(b h w) c -> b c h w", b=pixels.shape[0], h=h, w=w)

    def ids_from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        # GlmImageVQVAE.encode works on each position alone (1x1 conv, per-position lookup): batching is exact
        return self.model.vqmodel.encode(self.features(pixels)).image_tokens

    # -- weights ---------------------------------------------------------------------------------------
    @classmethod
    def convert(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The ViT's and the VQ's tensors of a zoo folder or a whole GLM-Image file (same names in both)."""
        found = {name: tensor for name, tensor in state.items() if name.startswith(_PARTS)}
        if not found:
            raise ZooError(f"no GLM-Image tokenizer tensors (names starting with {list(_PARTS)}) found; "
                           f"the first keys: {sorted(state)[:6]}")
        return found

    def _load_weights(self, path: Path) -> None:
        from safetensors import SafetensorError, safe_open

        if path.suffix != ".safetensors":
            raise ZooError(f"{path}: GLM-Image weights are read from safetensors files only")
        try:
            with safe_open(str(path), framework="pt") as handle:
                names = [name for name in handle.keys() if name.startswith(_PARTS)]
                state = {name: handle.get_tensor(name) for name in names}
        except SafetensorError as err:
            raise ZooError(f"{path}: not a valid safetensors file ({err})") from None
        self.load_converted(self.convert(state), str(path))
