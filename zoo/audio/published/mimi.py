"""Mimi, Moshi's speech codec (Défossez et al., https://arxiv.org/abs/2410.00037), through ``MimiModel``.

    audio [b, T] at 24 kHz -> SEANet encoder -> transformer -> downsample x2 -> latent [b, D, T / 1920]
        -> split RVQ: level 0 a semantic codebook (distilled from WavLM, section 3.3), levels 1.. acoustic
        -> ids [b, N, n_q] at 12.5 frames/s
    ids -> dequantise -> upsample -> transformer -> SEANet decoder -> audio [b, N * 1920]

Trained with quantiser dropout over the acoustic levels, so ``n_q`` = 1 .. 32 decodes (Moshi uses 8:
1.1 kbps). The wrapper pads each clip with zeros to whole frames, as the library's feature extractor does.
"""

from __future__ import annotations

import torch

from zoo.audio.published.base import TransformersCodec


class MimiTokenizer(TransformersCodec):
    """Mimi behind the audio contract; ``n_q`` levels (1 semantic + n_q - 1 acoustic)."""

    hf_config = "transformers.models.mimi.configuration_mimi:MimiConfig"
    hf_model = "transformers.models.mimi.modeling_mimi:MimiModel"
    # The codebooks' EMA statistics other than the ones the lookup reads (embed_sum / cluster_usage).
    unused_buffers = ("codebook.initialized",)

    @property
    def hop(self) -> int:
        return round(self.sample_rate / float(self.model.config.frame_rate))

    @property
    def num_levels(self) -> int:
        return int(self.model.config.num_quantizers)

    @property
    def codebook(self) -> torch.Tensor:
        """``[q, K, d]``: every level's codes (semantic level first)."""
        rvqs = (self.model.quantizer.semantic_residual_vector_quantizer,
                self.model.quantizer.acoustic_residual_vector_quantizer)
        return torch.stack([layer.codebook.embed for rvq in rvqs for layer in rvq.layers])

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, N, n]`` -> the latent the decoder reads ``[B, N, D]`` (before upsampling)."""
        ids = self.checked_ids(ids).clamp(min=0).to(self.device)
        return self.model.quantizer.decode(ids.transpose(1, 2)).transpose(1, 2)

    def encode_clip(self, audio, levels):
        return self.model.encode(audio[:, None], num_quantizers=levels).audio_codes.transpose(1, 2)

    def decode_clip(self, ids):
        return self.model.decode(ids.transpose(1, 2)).audio_values[:, 0]
