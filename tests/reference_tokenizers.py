"""Small deterministic tokenizers with exact decoders (and a feature extractor), for testing the evaluation harness.

They are real tokenizers (the full contract, save / load by target) whose outputs can be computed
by hand, so metric values in tests have closed forms.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from zoo.metrics.features import FeatureExtractor
from zoo.tokenizer import (
    AudioTokens,
    NeuralTokenizer,
    Tokenizer,
    TokenizerOutput,
    check_audio,
    check_ids,
    check_images,
)


class PixelQuantizer(Tokenizer):
    """Average-pool by ``factor``, quantise each channel to ``levels`` values.

    ids: ``[B, h, w]`` with ``id = r·L² + g·L + b`` (vocab ``L³``), or ``[B, h, w, 3]`` with one codebook
    per channel (vocab ``L``) when ``split_channels``. ``decode`` repeats each cell ``factor`` times.
    """

    modality: ClassVar[str] = "image"
    requires_weights: ClassVar[bool] = False

    def __init__(self, factor: int = 4, levels: int = 8, split_channels: bool = False):
        self.factor, self.levels, self.split_channels = factor, levels, split_channels

    @property
    def vocab_size(self) -> int:
        return self.levels if self.split_channels else self.levels**3

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = check_images(x)
        pooled = F.avg_pool2d(x.float(), self.factor)  # [B, 3, h, w]
        q = torch.round(pooled.clamp(0, 1) * (self.levels - 1)).long()
        if self.split_channels:
            return q.permute(0, 2, 3, 1).contiguous()  # [B, h, w, 3]
        return q[:, 0] * self.levels**2 + q[:, 1] * self.levels + q[:, 2]  # [B, h, w]

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        ids = check_ids(ids, self.vocab_size)
        if self.split_channels:
            q = ids.permute(0, 3, 1, 2)
        else:
            q = torch.stack([ids // self.levels**2, (ids // self.levels) % self.levels, ids % self.levels], 1)
        values = q.float() / (self.levels - 1)
        return values.repeat_interleave(self.factor, -1).repeat_interleave(self.factor, -2)


class ImageLabeller(PixelQuantizer):
    """The same ids with no decoder: reconstruction metrics must be skipped with a note."""

    has_decoder: ClassVar[bool] = False

    def decode(self, ids):
        return Tokenizer.decode(self, ids)


class FrameQuantizer(Tokenizer):
    """Audio: the mean of each ``hop``-sample frame, quantised to ``levels`` values in [-1, 1]."""

    modality: ClassVar[str] = "audio"
    requires_weights: ClassVar[bool] = False

    def __init__(self, hop: int = 160, levels: int = 16, sample_rate: int = 16000):
        self.hop, self.levels, self.sample_rate = hop, levels, sample_rate
        self.frame_rate = sample_rate / hop

    @property
    def vocab_size(self) -> int:
        return self.levels

    def encode(self, x: torch.Tensor, lengths=None) -> AudioTokens:
        x, lengths = check_audio(x, lengths)
        frames = -(-x.shape[1] // self.hop)
        padded = F.pad(x, (0, frames * self.hop - x.shape[1]))
        means = padded.view(x.shape[0], frames, self.hop).mean(-1)  # [B, N]
        ids = torch.round((means.clamp(-1, 1) + 1) / 2 * (self.levels - 1)).long()
        token_lengths = -(-lengths // self.hop)
        ids[torch.arange(frames)[None, :] >= token_lengths[:, None]] = -1
        return AudioTokens(ids, token_lengths)

    def decode(self, tokens) -> torch.Tensor:
        ids = tokens.ids if isinstance(tokens, AudioTokens) else torch.as_tensor(tokens)
        values = ids.clamp_min(0).float() / (self.levels - 1) * 2 - 1
        return values.repeat_interleave(self.hop, -1)


class PaletteVQ(NeuralTokenizer):
    """A network tokenizer with weights: average-pool by ``factor``, then the nearest of ``codes`` RGB colours.

    The palette is a seeded parameter, saved in ``model.safetensors``, so folders and sha256 are real.
    """

    modality: ClassVar[str] = "image"

    def __init__(self, codes: int = 16, factor: int = 4, seed: int = 0):
        super().__init__()
        self.factor = factor
        generator = torch.Generator().manual_seed(seed)
        self.palette = torch.nn.Parameter(torch.rand(codes, 3, generator=generator))  # [K, 3]

    @property
    def vocab_size(self) -> int:
        return self.palette.shape[0]

    @property
    def codebook(self) -> torch.Tensor:
        return self.palette.detach()

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.palette[ids]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(check_images(x).float(), self.factor)  # [B, 3, h, w]
        cells = pooled.permute(0, 2, 3, 1)  # [B, h, w, 3]
        distances = (cells[..., None, :] - self.palette).pow(2).sum(-1)  # [B, h, w, K]
        return distances.argmin(-1)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        colours = self.palette[check_ids(ids, self.vocab_size)].permute(0, 3, 1, 2)  # [B, 3, h, w]
        return colours.repeat_interleave(self.factor, -1).repeat_interleave(self.factor, -2).clamp(0, 1)

    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        ids = self.encode(x)
        return TokenizerOutput(output=self.decode(ids), indices=ids)


def tones(split: str = "test", seed: int = 0, limit: int | None = None, count: int = 6) -> list[dict]:
    """A tiny audio set for harness tests: sine tones of different pitch and length at 16 kHz."""
    generator = torch.Generator().manual_seed(seed)
    items = []
    for i in range(count if limit is None else min(count, limit)):
        samples = 4000 + 1000 * i
        t = torch.arange(samples) / 16000
        wave = 0.5 * torch.sin(2 * torch.pi * (220 + 110 * i) * t) + 0.01 * torch.randn(samples, generator=generator)
        items.append({"audio": wave, "label": i % 2})
    return items


def sentences(split: str = "test", seed: int = 0, limit: int | None = None) -> list[dict]:
    """A tiny text set for harness tests."""
    texts = ["The quick brown fox jumps over the lazy dog.", "héllo wörld 🌍", "zoo: tokenizers for everything", ""]
    return [{"text": t} for t in texts[:limit]]


class PatchStats(FeatureExtractor):
    """Cheap deterministic features: per-channel means of a 4x4 grid of cells (48 features)."""

    def __init__(self):
        super().__init__(torch.nn.Identity(), dim=48, policy={"name": "patch-stats-test"})

    def preprocess(self, images):
        return images

    def forward(self, network, x):
        return F.adaptive_avg_pool2d(x, 4).flatten(1)
