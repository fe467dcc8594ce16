"""SNAC, the multi-scale neural audio codec (Siuzdak et al., https://arxiv.org/abs/2410.14411), over ``snac``.

SNAC's residual levels run at different rates: level i quantises the latent average-pooled by
``vq_strides[i]`` (24 kHz: strides 4, 2, 1 -> 12, 23, 47 Hz; 32 / 44 kHz: 8, 4, 2, 1), so its codes are a
list of sequences of different lengths. The contract's ids need one time axis; the layout here is one row
per frame of the coarsest level, holding every level's codes of that span, coarse to fine:

    24 kHz (strides 4, 2, 1):     row t = [c0[t], c1[2t], c1[2t+1], c2[4t], ..., c2[4t+3]]          w = 7
    32 / 44 kHz (8, 4, 2, 1):     row t = [c0[t], c1[2t..2t+1], c2[4t..4t+3], c3[8t..8t+7]]        w = 15

so ``frame_rate`` is the coarsest level's rate and every id appears once (the bitrate is SNAC's own:
``frame_rate * w * 12 bits``; 0.98 kbps at 24 kHz). This is the flattening SNAC-based speech LMs (e.g.
Orpheus's 7-token frames) use. All levels are always emitted (SNAC has no bitrate choice).

    audio [b, T] -> pad to whole hop * lcm(stride_0, attention window) samples (SNAC's ``preprocess``)
        -> encoder -> multi-rate RVQ -> codes [c_0 .. c_L] -> ids [b, N, w]
    ids -> codes -> ``from_codes`` -> decoder -> audio [b, N * hop * stride_0]

SNAC's decoder injects Gaussian noise (``NoiseBlock``); the wrapper draws it from a generator seeded with
the entry's ``seed`` for every item on its own, so ``decode`` is a deterministic function of an item's ids.
"""

from __future__ import annotations

import inspect
import math

import torch
from einops import rearrange

from zoo.audio.published.base import PublishedAudioCodec, checked_config_keys, import_class


class SnacTokenizer(PublishedAudioCodec):
    """SNAC 24 / 32 / 44 kHz behind the audio contract (multi-rate codes laid out per coarsest frame)."""

    snac_model = "snac:SNAC"

    def __init__(self, model_config: dict, resample: bool = False, seed: int = 0):
        super().__init__(model_config, n_q=None, resample=resample, seed=seed)

    def build(self, model_config: dict) -> torch.nn.Module:
        model_cls = import_class(self.snac_model)
        checked_config_keys(type(self).__name__, model_config, set(inspect.signature(model_cls).parameters))
        return model_cls(**model_config)

    @property
    def strides(self) -> list[int]:
        return [int(s) for s in self.model.vq_strides]

    @property
    def repeats(self) -> list[int]:
        """Ids each level contributes to one row."""
        return [self.strides[0] // s for s in self.strides]

    @property
    def sample_rate(self) -> int:
        return int(self.model.sampling_rate)

    @property
    def vocab_size(self) -> int:
        return int(self.model.codebook_size)

    @property
    def hop(self) -> int:
        return int(self.model.hop_length) * self.strides[0]

    @property
    def pad_multiple(self) -> int:
        return int(self.model.hop_length) * math.lcm(self.strides[0], self.model.attn_window_size or 1)

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    def allowed_levels(self) -> list[int]:
        return [self.num_levels]

    def width(self, levels: int) -> int:
        return sum(self.repeats[:levels])

    @property
    def codebook(self) -> torch.Tensor:
        """``[q, K, d]``: every level's (factorised) codes."""
        return torch.stack([q.codebook.weight for q in self.model.quantizer.quantizers])

    def to_codes(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """ids ``[b, N, w]`` -> SNAC's codes, one ``[b, N * r_i]`` per level."""
        pieces = ids.split(self.repeats, dim=-1)
        return [rearrange(piece, "b n r -> b (n r)") for piece in pieces]

    def from_codes(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """SNAC's codes -> ids ``[b, N, w]``."""
        return torch.cat([rearrange(c, "b (n r) -> b n r", r=r) for c, r in zip(codes, self.repeats)], dim=-1)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, N, w]`` -> the latent the decoder reads ``[B, N * stride_0, D]`` (at the finest level's rate)."""
        ids = self.checked_ids(ids).clamp(min=0).to(self.device)
        return self.model.quantizer.from_codes(self.to_codes(ids)).transpose(1, 2)

    def encode_clip(self, audio, levels):
        return self.from_codes(self.model.encode(audio[:, None]))

    def decode_clip(self, ids):
        rows = []
        for row in ids:  # each item with its own seeded noise: the same ids always decode to the same audio
            with torch.random.fork_rng(devices=[row.device] if row.device.type == "cuda" else []):
                torch.manual_seed(self.seed)
                rows.append(self.model.decode(self.to_codes(row[None]))[0, 0])
        return torch.stack(rows)

    def extra_repr(self) -> str:
        return (f"snac, {self.sample_rate} Hz, strides {self.strides}, {self.frame_rate:g} rows/s x "
                f"{self.width(self.num_levels)} ids, K={self.vocab_size}")
