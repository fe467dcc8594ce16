"""EnCodec (Défossez et al., https://arxiv.org/abs/2210.13438) through transformers' ``EncodecModel``.

    audio [b, T] -> encoder (SEANet, causal convs + LSTM) -> latent [b, D, T / hop]
        -> residual VQ, the first n_q of its levels (n_q from a target bandwidth, section 3.2) -> ids [b, N, n_q]
    ids -> sum of the levels' codes -> decoder -> audio [b, N * hop]

The model was trained with quantiser dropout over a fixed set of bandwidths (24 kHz: 1.5 / 3 / 6 / 12 /
24 kbps = 2 / 4 / 8 / 16 / 32 levels of 1024 codes at 75 frames/s); ``n_q`` must be one of those level
counts, ``bandwidth`` (kbps) in the entry's config picks the default. The 24 kHz model is mono, unchunked
and not normalised, so its ids decode back on their own. The 48 kHz model (stereo, 1 s chunks, each with an RMS
scale the decoder needs beside the ids) is ``ChunkedEncodecTokenizer`` in ``encodec_chunked.py``.
"""

from __future__ import annotations

from zoo.audio.published.base import TransformersCodec
from zoo.errors import ZooError


class EncodecTokenizer(TransformersCodec):
    """EnCodec 24 kHz behind the audio contract; ``bandwidth`` (kbps, one of the model's) sets the default n_q."""

    hf_config = "transformers.models.encodec.configuration_encodec:EncodecConfig"
    hf_model = "transformers.models.encodec.modeling_encodec:EncodecModel"
    # EMA statistics of the codebooks: only ``embed`` computes.
    unused_buffers = ("codebook.inited", "codebook.cluster_size", "codebook.embed_avg")

    def __init__(self, model_config: dict, bandwidth: float | None = None, resample: bool = False, seed: int = 0):
        self._bandwidth_arg = bandwidth
        super().__init__(model_config, n_q=None, resample=resample, seed=seed)
        config = self.model.config
        self.check_layout(config)
        if bandwidth is not None:
            if bandwidth not in config.target_bandwidths:
                raise ZooError(f"EncodecTokenizer: bandwidth must be one of {config.target_bandwidths} kbps, "
                               f"got {bandwidth!r}")
            self.n_q = self.levels_for(bandwidth)

    def check_layout(self, config) -> None:
        """The mono, unchunked, unnormalised model only (its ids decode on their own)."""
        if config.normalize or config.chunk_length_s is not None or config.audio_channels != 1:
            raise ZooError("EncodecTokenizer: only the mono, unchunked, unnormalised EnCodec (24 kHz) is wrapped here "
                           "(the chunked 48 kHz one is zoo.audio.published.encodec_chunked:ChunkedEncodecTokenizer); "
                           f"got audio_channels={config.audio_channels}, normalize={config.normalize}, "
                           f"chunk_length_s={config.chunk_length_s}")

    def levels_for(self, bandwidth: float) -> int:
        return self.model.quantizer.get_num_quantizers_for_bandwidth(bandwidth)

    @property
    def hop(self) -> int:
        return int(self.model.config.hop_length)

    @property
    def num_levels(self) -> int:
        return int(self.model.config.num_quantizers)

    def allowed_levels(self) -> list[int]:
        return sorted({self.levels_for(b) for b in self.model.config.target_bandwidths})

    @property
    def codebook(self):
        """``[q, K, D]``: every level's codes."""
        import torch

        return torch.stack([layer.codebook.embed for layer in self.model.quantizer.layers])

    def embed(self, ids):
        """ids ``[B, N, n]`` -> the latent the decoder reads ``[B, N, D]`` (the sum of the levels' codes)."""
        ids = self.checked_ids(ids).clamp(min=0).to(self.device)
        return self.model.quantizer.decode(ids.permute(2, 0, 1)).transpose(1, 2)

    def encode_clip(self, audio, levels):
        latent = self.model.encoder(audio[:, None])
        return self.model.quantizer.encode(latent, self.bandwidth_of(levels)).permute(1, 2, 0)  # [q,b,n] -> [b,n,q]

    def bandwidth_of(self, levels: int) -> float:
        return next(b for b in self.model.config.target_bandwidths if self.levels_for(b) == levels)

    def decode_clip(self, ids):
        latent = self.model.quantizer.decode(ids.permute(2, 0, 1))  # [q, b, n] -> [b, D, n]
        return self.model.decoder(latent)[:, 0]
