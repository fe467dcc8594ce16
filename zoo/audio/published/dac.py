"""DAC, the Descript Audio Codec (Kumar et al., https://arxiv.org/abs/2306.06546), through transformers' ``DacModel``.

    audio [b, T] -> encoder (Snake conv blocks) -> latent [b, D, T / hop]
        -> residual VQ with factorised, l2-normalised 8-d codes (section 3.2), first n_q levels -> ids [b, N, n_q]
    ids -> sum of the levels' projected codes -> decoder -> audio [b, N * hop]

DAC was trained with quantiser dropout (p = 0.5), so any ``n_q`` in 1 .. 12 (44 kHz; 32 at 24 kHz, 12 at
16 kHz) decodes. The official preprocessing pads the clip at the end to whole hops; so does this wrapper.
"""

from __future__ import annotations

import torch

from zoo.audio.published.base import TransformersCodec


class DacTokenizer(TransformersCodec):
    """DAC 16 / 24 / 44 kHz behind the audio contract."""

    hf_config = "transformers.models.dac.configuration_dac:DacConfig"
    hf_model = "transformers.models.dac.modeling_dac:DacModel"

    @property
    def hop(self) -> int:
        return int(self.model.config.hop_length)

    @property
    def num_levels(self) -> int:
        return int(self.model.config.n_codebooks)

    @property
    def codebook(self) -> torch.Tensor:
        """``[q, K, d]``: every level's (factorised, low-dimensional) codes."""
        return torch.stack([q.codebook.weight for q in self.model.quantizer.quantizers])

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, N, n]`` -> the latent the decoder reads ``[B, N, D]``."""
        ids = self.checked_ids(ids).clamp(min=0).to(self.device)
        return self.model.quantizer.from_codes(ids.transpose(1, 2))[0].transpose(1, 2)

    def encode_clip(self, audio, levels):
        codes = self.model.encode(audio[:, None], n_quantizers=levels).audio_codes  # [b, q_all, n]
        return codes[:, :levels].transpose(1, 2)

    def decode_clip(self, ids):
        return self.model.decode(audio_codes=ids.transpose(1, 2)).audio_values
