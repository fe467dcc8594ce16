"""Small deterministic datasets for tests: coloured shapes, tones and chirps, random-word text.

Each item is generated on demand from a generator seeded by ``(seed, split, index)``, so a set needs
no files, costs nothing to build, and item ``i`` is the same on every machine. Splits use disjoint
seeds. They exercise code paths (shapes, labels, padding, text fitting); they are not benchmarks.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch.utils.data import Dataset

from zoo.errors import ZooError

_SPLITS = {"train": 0, "val": 1, "test": 2}
_DEFAULT_COUNTS = {"train": 512, "val": 128, "test": 128}
SHAPES = ("disc", "square", "triangle", "ring")
SOUNDS = ("tone", "chirp-up", "chirp-down", "noise-burst", "am-tone")


def _generator(seed: int, split: str, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 3 + _SPLITS[split]) * 1_000_003 + index) % (2**63 - 1))


class _Synthetic(Dataset, ABC):
    def __init__(self, kind: str, split: str, seed: int, limit: int | None, count: int | None):
        if split not in _SPLITS:
            raise ZooError(f"{kind}: split must be one of {sorted(_SPLITS)}, got {split!r}")
        count = _DEFAULT_COUNTS[split] if count is None else count
        if count < 1 or (limit is not None and limit < 1):
            raise ZooError(f"{kind}: count and limit must be positive, got count={count}, limit={limit}")
        self.split, self.seed = split, seed
        self.count = min(count, limit) if limit is not None else count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.count:
            raise IndexError(index)
        return self.make(_generator(self.seed, self.split, index))

    @abstractmethod
    def make(self, generator: torch.Generator) -> dict:
        """Item ``i`` from its own seeded generator."""


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


class SyntheticImages(_Synthetic):
    """One coloured shape (label = its kind, see ``SHAPES``) on a darker random background."""

    def __init__(self, split: str, seed: int, limit: int | None, count: int | None, size: int):
        super().__init__("synthetic-images", split, seed, limit, count)
        if size < 8:
            raise ZooError(f"synthetic-images: size must be at least 8 pixels, got {size}")
        self.size = size
        self.classes = list(SHAPES)

    def make(self, generator: torch.Generator) -> dict:
        size = self.size
        label = int(torch.randint(len(SHAPES), (), generator=generator))
        background = torch.rand(3, generator=generator) * 0.4
        colour = 0.5 + torch.rand(3, generator=generator) * 0.5
        radius = _uniform(generator, 0.2, 0.4) * size
        cy, cx = (_uniform(generator, radius, size - radius) for _ in range(2))
        ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")  # [H, W]
        dy, dx = ys - cy, xs - cx
        if SHAPES[label] == "disc":
            mask = dy**2 + dx**2 <= radius**2
        elif SHAPES[label] == "square":
            mask = (dy.abs() <= radius * 0.8) & (dx.abs() <= radius * 0.8)
        elif SHAPES[label] == "triangle":  # apex up: inside when below the apex and within the widening sides
            mask = (dy >= -radius) & (dy <= radius * 0.7) & (dx.abs() <= (dy + radius) * 0.6)
        else:
            distance = (dy**2 + dx**2).sqrt()
            mask = (distance <= radius) & (distance >= radius * 0.55)
        image = torch.where(mask, colour[:, None, None], background[:, None, None])  # [3, H, W]
        image = (image + 0.02 * torch.randn(image.shape, generator=generator)).clamp(0.0, 1.0)
        return {"image": image, "label": label}


class SyntheticAudio(_Synthetic):
    """Tones, chirps, noise bursts and AM tones (label = its kind, see ``SOUNDS``), of varying length."""

    def __init__(
        self,
        split: str,
        seed: int,
        limit: int | None,
        count: int | None,
        sample_rate: int,
        min_seconds: float,
        max_seconds: float,
    ):
        super().__init__("synthetic-audio", split, seed, limit, count)
        if not 0 < min_seconds <= max_seconds:
            raise ZooError(f"synthetic-audio: need 0 < min_seconds <= max_seconds, got {min_seconds}, {max_seconds}")
        self.sample_rate, self.min_seconds, self.max_seconds = sample_rate, min_seconds, max_seconds
        self.classes = list(SOUNDS)

    def make(self, generator: torch.Generator) -> dict:
        rate = self.sample_rate
        label = int(torch.randint(len(SOUNDS), (), generator=generator))
        length = round(_uniform(generator, self.min_seconds, self.max_seconds) * rate)
        t = torch.arange(length, dtype=torch.float64) / rate  # [T] seconds
        f0 = _uniform(generator, 150.0, 0.2 * rate)
        kind = SOUNDS[label]
        if kind == "tone":
            wave = torch.sin(2 * math.pi * f0 * t)
        elif kind in ("chirp-up", "chirp-down"):
            f1 = f0 * 2.5 if kind == "chirp-up" else f0 / 2.5
            duration = length / rate
            # phase of a linear chirp: 2π (f0 t + (f1 - f0) t² / 2T)
            wave = torch.sin(2 * math.pi * (f0 * t + (f1 - f0) * t**2 / (2 * duration)))
        elif kind == "noise-burst":
            start, stop = sorted(_uniform(generator, 0.0, 1.0) for _ in range(2))
            envelope = ((t >= start * t[-1]) & (t <= max(stop, start + 0.2) * t[-1])).double()
            wave = torch.randn(length, generator=generator, dtype=torch.float64) * envelope
        else:
            wave = (0.6 + 0.4 * torch.sin(2 * math.pi * _uniform(generator, 2.0, 12.0) * t)) * torch.sin(
                2 * math.pi * f0 * t
            )
        wave = 0.8 * wave / wave.abs().max().clamp_min(1e-8)
        return {"audio": wave.float(), "label": label}


# Syllables with decreasing weights: word and sub-word frequencies follow a Zipf-like law, so BPE merges
# have real structure to find.
_SYLLABLES = ("ka", "lo", "mi", "ne", "ta", "ri", "so", "pu", "el", "an", "de", "zu", "ch", "or", "wi", "ba")


class SyntheticText(_Synthetic):
    """Sentences of random words built from a fixed syllable set (Zipf-weighted), one per item."""

    def __init__(self, split: str, seed: int, limit: int | None, count: int | None, words: int, vocabulary: int):
        super().__init__("synthetic-text", split, seed, limit, count)
        if words < 1 or vocabulary < 1:
            raise ZooError(f"synthetic-text: words and vocabulary must be positive, got {words}, {vocabulary}")
        lexicon_rng = torch.Generator().manual_seed(seed)  # the vocabulary is shared by all splits
        weights = 1.0 / torch.arange(1, len(_SYLLABLES) + 1, dtype=torch.float64)
        self.lexicon = []
        for _ in range(vocabulary):
            n = int(torch.randint(1, 4, (), generator=lexicon_rng))
            self.lexicon.append(
                "".join(_SYLLABLES[int(i)] for i in torch.multinomial(weights, n, True, generator=lexicon_rng))
            )
        self.word_weights = 1.0 / torch.arange(1, vocabulary + 1, dtype=torch.float64)
        self.words = words

    def make(self, generator: torch.Generator) -> dict:
        n = int(torch.randint(max(1, self.words // 2), self.words + 1, (), generator=generator))
        chosen = torch.multinomial(self.word_weights, n, replacement=True, generator=generator)
        sentence = " ".join(self.lexicon[int(i)] for i in chosen)
        return {"text": sentence[:1].upper() + sentence[1:] + "."}


def synthetic_images(
    split: str = "train", seed: int = 0, limit: int | None = None, count: int | None = None, size: int = 32
) -> SyntheticImages:
    """Coloured shapes ``[3, size, size]`` in [0, 1] with labels 0-3 (disc, square, triangle, ring)."""
    return SyntheticImages(split, seed, limit, count, size)


def synthetic_audio(
    split: str = "train",
    seed: int = 0,
    limit: int | None = None,
    count: int | None = None,
    sample_rate: int = 16000,
    min_seconds: float = 0.25,
    max_seconds: float = 0.5,
) -> SyntheticAudio:
    """Mono clips in [-1, 1] with labels 0-4 (tone, chirp up, chirp down, noise burst, AM tone)."""
    return SyntheticAudio(split, seed, limit, count, sample_rate, min_seconds, max_seconds)


def synthetic_text(
    split: str = "train",
    seed: int = 0,
    limit: int | None = None,
    count: int | None = None,
    words: int = 12,
    vocabulary: int = 200,
) -> SyntheticText:
    """Sentences of ``words // 2`` to ``words`` random words from a Zipf-weighted ``vocabulary``."""
    return SyntheticText(split, seed, limit, count, words, vocabulary)
