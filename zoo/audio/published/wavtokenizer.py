"""WavTokenizer (Ji et al., https://arxiv.org/abs/2408.16532) through transformers' ``WavTokenizerModel``.

    audio [b, T] at 24 kHz -> SEANet encoder (EnCodec's, + LSTM) -> latent [b, 512, T / hop]
        -> one VQ codebook of 4096 codes -> ids [b, N, 1]            (hop 600: 40 frames/s; hop 320: 75 frames/s)
    ids -> code vectors -> Vocos backbone (conv + attention pos-net, ConvNeXt blocks) -> iSTFT head -> [b, N * hop]

A single codebook (section 3.1), so there is no bitrate choice: ``n_q`` is 1 and the bitrate is
``frame_rate * 12 bits`` (0.48 kbps at 40 frames/s, 0.9 kbps at 75). The decoder's adaptive norms take a
condition id that only training varies; inference always uses 0, and so does this wrapper. The decoder
attends over the whole clip, so an item's audio depends on all of its ids (each item is decoded alone).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.audio.published.base import TransformersCodec


class WavTokenizer(TransformersCodec):
    """WavTokenizer (40 or 75 frames/s, one codebook) behind the audio contract."""

    hf_config = "transformers.models.wavtokenizer.configuration_wavtokenizer:WavTokenizerConfig"
    hf_model = "transformers.models.wavtokenizer.modeling_wavtokenizer:WavTokenizerModel"
    # EMA statistics of the codebook: only ``embed`` computes.
    unused_buffers = ("codebook.inited", "codebook.cluster_size", "codebook.embed_avg")
    # The decoder's attention spans the whole clip: 120 s at 75 frames/s is a 9000 x 9000 map.
    max_seconds = 120.0

    def __init__(self, model_config: dict, resample: bool = False, seed: int = 0):
        super().__init__(model_config, n_q=None, resample=resample, seed=seed)

    @property
    def hop(self) -> int:
        return int(self.model.config.hop_length)

    @property
    def num_levels(self) -> int:
        return 1

    @property
    def codebook(self) -> torch.Tensor:
        """``[K, D]``: the one codebook."""
        return self.model.encoder_model.quantizer.codebook.embed

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, N, 1]`` (or ``[B, N]``) -> the code vectors the decoder reads ``[B, N, D]``."""
        ids = self.checked_ids(ids).clamp(min=0).to(self.device)
        return F.embedding(ids[..., 0], self.codebook)

    def encode_clip(self, audio, levels):
        return self.model.encode(audio[:, None], return_dict=True).audio_codes.transpose(1, 2)  # [b, 1, n] -> [b, n, 1]

    def decode_clip(self, ids):
        return self.model.decode(ids.transpose(1, 2), return_dict=True).audio_values[:, 0]
