"""LlamaGen's VQ tokenizer (VQ-16 / VQ-8), also Janus's generation tokenizer, through transformers' ``JanusVQVAE``.

LlamaGen (Sun et al., https://arxiv.org/abs/2406.06525, section 2.2) is the taming VQGAN topology with an
8-d codebook of 16,384 entries that is l2-normalised on both sides of the lookup: z and every code are
projected onto the unit sphere, then the nearest code is taken (a cosine nearest neighbour). Janus
(https://arxiv.org/abs/2410.13848) generates with the same tokenizer; transformers implements its network as
``JanusVQVAE``, whose ``decode`` normalises the codes as LlamaGen does but whose quantiser's ``forward``
(inherited from Chameleon) takes the plain Euclidean nearest code of the unnormalised z, so its ids can
differ from the authors'. ``lookup`` picks the rule:

- ``cosine`` (default): LlamaGen's and Janus's own ``VectorQuantizer`` with ``codebook_l2_norm=True``;
- ``euclidean``: exactly ``JanusVQVAE.encode``'s ``image_tokens``.

    images [B, 3, H, W] in [0, 1] -> 2x - 1 -> encoder -> quant_conv -> z [B, 8, H/16, W/16]
        -> lookup -> ids [B, H/16, W/16]
    ids -> normalised codes [B, 8, h, w] -> post_quant_conv -> decoder -> [-1, 1] -> [0, 1]

Layouts ``convert`` reads: this wrapper's (``model.*``), the transformers VQ's (bare, or ``model.vqmodel.*``
inside ``JanusForConditionalGeneration``), LlamaGen's ``VQModel`` (``encoder.conv_blocks.*``, as in
``FoundationVision/vq-ds16-c2i``) and Janus's (``gen_vision_model.*``, as in ``deepseek-ai/Janus-1.3B``).
The renames are those of transformers' ``convert_janus_weights_to_hf.py``; both codebases list the
decoder's levels lowest resolution first, so no index is reversed.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from einops import rearrange

from zoo.errors import ZooError
from zoo.image.published.base import PublishedImageTokenizer

LOOKUPS = ("cosine", "euclidean")

# LlamaGen / Janus names -> transformers' JanusVQVAE names, applied in order to each tensor name.
_RENAMES = (
    (re.compile(r"^encoder\.conv_blocks\."), "encoder.down."),
    (re.compile(r"^decoder\.conv_blocks\."), "decoder.up."),
    (re.compile(r"\.res\.(\d+)\."), r".block.\1."),
    (re.compile(r"^(encoder|decoder)\.mid\.0\."), r"\1.mid.block_1."),
    (re.compile(r"^(encoder|decoder)\.mid\.1\."), r"\1.mid.attn_1."),
    (re.compile(r"^(encoder|decoder)\.mid\.2\."), r"\1.mid.block_2."),
)


class JanusVQTokenizer(PublishedImageTokenizer):
    """LlamaGen VQ-16 / VQ-8 and Janus's VQ, wrapped around ``transformers.JanusVQVAE``."""

    hf_config = "transformers.models.janus.configuration_janus:JanusVQVAEConfig"
    hf_model = "transformers.models.janus.modeling_janus:JanusVQVAE"
    source_prefixes = ("model.", "", "model.vqmodel.", "vqmodel.", "gen_vision_model.")

    def __init__(self, vq_config: dict, image_size: int = 256, lookup: str = "cosine",
                 rescale_factor: float = 1 / 255, image_mean: tuple[float, ...] = (0.5, 0.5, 0.5),
                 image_std: tuple[float, ...] = (0.5, 0.5, 0.5), seed: int = 0):
        if lookup not in LOOKUPS:
            raise ZooError(f"JanusVQTokenizer: lookup must be one of {LOOKUPS}, got {lookup!r}")
        super().__init__(vq_config, image_size, rescale_factor, image_mean, image_std, seed)
        self.lookup = lookup

    @property
    def codebook(self) -> torch.Tensor:
        """``[K, D]`` unit vectors: the decoder reads normalised codes whichever ``lookup`` chose them."""
        return F.normalize(self.model.quantize.embedding.weight, dim=-1)

    def latent(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels -> z ``[B, D, h, w]`` before the lookup."""
        return self.model.quant_conv(self.model.encoder(pixels))

    def ids_from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        z = self.latent(pixels)
        if self.lookup == "euclidean":
            return self.model.quantize(z)[2]
        # LlamaGen's lookup: squared distance between unit vectors, |z|^2 + |e|^2 - 2 z.e, nearest code
        z = F.normalize(rearrange(z, "b d h w -> (b h w) d"), dim=-1)
        codes = self.codebook
        distance = z.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * z @ codes.T
        return distance.argmin(dim=1)

    def pixels_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        codes = rearrange(self.codebook[ids], "b h w d -> b d h w").contiguous()
        return self.model.decoder(self.model.post_quant_conv(codes))

    @classmethod
    def rename(cls, name: str) -> str:
        for pattern, replacement in _RENAMES:
            name = pattern.sub(replacement, name)
        return name
