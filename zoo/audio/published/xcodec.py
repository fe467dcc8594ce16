"""X-Codec (Ye et al., https://arxiv.org/abs/2408.17175) through transformers' ``XcodecModel``.

    audio [b, T] at 16 kHz -> acoustic encoder (DAC's)             -> [b, D_a, T / hop]
                           -> HuBERT (mean of all hidden states) -> semantic encoder -> [b, D_s, T / hop]
        -> concat -> linear -> residual VQ, the first n_q levels (n_q from a target bandwidth) -> ids [b, N, n_q]
    ids -> sum of the levels' codes -> linear to D_a -> acoustic decoder (DAC's, no tanh) -> audio [b, N * hop]

The semantic features enter *before* quantisation (section 3.2), so every level carries both; the decoder
reads only the acoustic projection of the sum. The model was trained over a fixed set of bandwidths
(``target_bandwidths``; the HuBERT-LibriSpeech model: 0.5 / 1 / 1.5 / 2 / 4 kbps = 1 / 2 / 3 / 4 / 8 levels of
1024 codes at 50 frames/s); ``n_q`` must be one of those level counts, ``bandwidth`` (kbps) picks the default.
Each clip is padded at the end to whole hops, as DAC's feature extractor (the one the hub repo ships) does.
"""

from __future__ import annotations

import torch

from zoo.audio.published.base import TransformersCodec, checked_config_keys
from zoo.errors import ZooError

SUB_CONFIGS = ("acoustic_model_config", "semantic_model_config")


class XcodecTokenizer(TransformersCodec):
    """X-Codec behind the audio contract; ``bandwidth`` (kbps, one of the model's) sets the default n_q."""

    hf_config = "transformers.models.xcodec.configuration_xcodec:XcodecConfig"
    hf_model = "transformers.models.xcodec.modeling_xcodec:XcodecModel"
    # EMA statistics of the codebooks: only ``embed`` computes.
    unused_buffers = ("codebook.inited", "codebook.cluster_size", "codebook.embed_avg")
    # HuBERT attends over the whole clip (no window): 60 s is 3000 frames, a 3000 x 3000 map per head and layer.
    max_seconds = 60.0

    def __init__(self, model_config: dict, bandwidth: float | None = None, resample: bool = False, seed: int = 0):
        super().__init__(model_config, n_q=None, resample=resample, seed=seed)
        # Default: all levels, which is the highest bandwidth (the config derives num_quantizers from it).
        if bandwidth is not None:
            bandwidths = list(self.model.config.target_bandwidths)
            if bandwidth not in bandwidths:
                raise ZooError(f"XcodecTokenizer: bandwidth must be one of {bandwidths} kbps, got {bandwidth!r}")
            self.n_q = self.levels_for(bandwidth)

    def build(self, model_config: dict) -> torch.nn.Module:
        model = super().build(model_config)
        # The nested configs (DAC's, HuBERT's) accept unknown keys silently too: check them against their own class.
        for key in SUB_CONFIGS:
            if isinstance(model_config.get(key), dict):
                sub = type(getattr(model.config, key))
                checked_config_keys(f"{type(self).__name__} {key}", model_config[key], set(sub().to_dict()))
        return model

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.sample_rate)  # X-Codec's config names it sample_rate, not sampling_rate

    @property
    def hop(self) -> int:
        return int(self.model.config.hop_length)

    @property
    def num_levels(self) -> int:
        return int(self.model.config.num_quantizers)

    def levels_for(self, bandwidth: float) -> int:
        return self.model.quantizer.get_num_quantizers_for_bandwidth(bandwidth)

    def allowed_levels(self) -> list[int]:
        return sorted({self.levels_for(b) for b in self.model.config.target_bandwidths})

    def bandwidth_of(self, levels: int) -> float:
        return next(b for b in self.model.config.target_bandwidths if self.levels_for(b) == levels)

    @property
    def codebook(self) -> torch.Tensor:
        """``[q, K, D]``: every level's codes (D = acoustic + semantic width)."""
        return torch.stack([q.codebook.embed for q in self.model.quantizer.quantizers])

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, N, n]`` -> the quantised latent ``[B, N, D]`` (the sum of the levels' codes)."""
        ids = self.checked_ids(ids).clamp(min=0).to(self.device)
        return self.model.quantizer.decode(ids.permute(2, 0, 1)).transpose(1, 2)

    def encode_clip(self, audio, levels):
        codes = self.model.encode(audio[:, None], bandwidth=self.bandwidth_of(levels), return_dict=True).audio_codes
        return codes.transpose(1, 2)  # [b, q, n] -> [b, n, q]

    def decode_clip(self, ids):
        return self.model.decode(ids.transpose(1, 2), return_dict=True).audio_values[:, 0]
