"""The Tokenizer contract, shared by every modality.

=========  ===========================================  =============================================
modality   ``encode(x)``                                ``decode(ids)``
=========  ===========================================  =============================================
text       ``str -> list[int]``,                        ``list[int] -> str``; lossless:
           ``list[str] -> list[list[int]]``             ``decode(encode(s)) == s``
image      float ``[B, 3, H, W]`` in ``[0, 1]`` ->      ids -> float ``[B, 3, H, W]`` in ``[0, 1]``
           Long ``[B, h, w]``, ``[B, L]`` or
           ``[B, h, w, q]``
audio      float ``[B, T]`` in ``[-1, 1]`` at           ``AudioTokens`` (or ids) -> float ``[B, T]``
           ``sample_rate`` (+ ``lengths``) ->
           ``AudioTokens(ids [B, N] | [B, N, q],
           lengths [B])``
=========  ===========================================  =============================================

Neural tokenizers are ``nn.Module``s (``NeuralTokenizer``) whose ``forward`` returns one type for
every family, ``TokenizerOutput``, and which expose ``embed(ids)`` and ``codebook``.
File paths, PIL images and wav files are converted at the edges (``encode_file``, the CLI).
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch

from zoo.errors import ZooError
from zoo.pretrained import Pretrained, PretrainedModule
from zoo.registry import MODALITIES  # noqa: F401  (re-exported)


class AudioTokens(NamedTuple):
    """Audio ids with the number of valid frames per item (padding frames hold ``-1``)."""

    ids: torch.Tensor  # [B, N] or [B, N, q]
    lengths: torch.Tensor  # [B]


@dataclass
class TokenizerOutput:
    """What ``forward`` returns for every neural family.

    Attributes:
        output: the reconstruction (image / audio) or prediction (e.g. teacher features), or None.
        indices: token ids, shaped as ``encode`` returns them.
        losses: named loss terms; ``losses["loss"]`` is the total the trainer minimises.
        extras: anything else a family wants to expose (latents, perplexity, masks).
    """

    output: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)


class Tokenizer(Pretrained, ABC):
    """Base of every tokenizer: ``modality``, ``vocab_size``, ``config``, ``encode`` / ``decode``."""

    modality: ClassVar[str] = ""
    has_decoder: ClassVar[bool] = True

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of distinct ids per codebook."""

    @abstractmethod
    def encode(self, x):
        """Turn input into ids (see the module docstring for each modality)."""

    def decode(self, ids):
        """Turn ids back into input space."""
        raise ZooError(f"{type(self).__name__} has no decoder: its tokens are labels, not a code to invert")

    def encode_file(self, path: str | Path):
        """Encode a file: UTF-8 text, an image (PNG, JPEG, ...) or audio (WAV, FLAC, ...)."""
        from zoo import io

        if self.modality == "text":
            return self.encode(io.read_text(path))
        if self.modality == "image":
            return self.encode(io.read_image(path).unsqueeze(0))
        if self.modality == "audio":
            wave = io.read_audio(path, sample_rate=self.sample_rate)
            return self.encode(wave.unsqueeze(0))
        raise ZooError(f"{type(self).__name__}: unknown modality {self.modality!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(modality={self.modality!r}, vocab_size={self.vocab_size})"


class NeuralTokenizer(PretrainedModule, Tokenizer):
    """A tokenizer that is a network: ``forward(x) -> TokenizerOutput``, ``embed(ids)``, ``codebook``."""

    @property
    def codebook(self) -> torch.Tensor:
        """Code vectors ``[K, D]`` (``[q, K, D]`` for several codebooks)."""
        raise ZooError(f"{type(self).__name__} exposes no codebook")

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Code vectors for ids, as a generator consuming these tokens would use them."""
        raise ZooError(f"{type(self).__name__} does not define embed(ids)")

    def training_losses(self, batch: dict, step: int) -> TokenizerOutput:
        """Default: run ``forward`` on the batch's input for this modality."""
        key = {"image": "image", "audio": "audio"}.get(self.modality)
        if key is None or key not in batch:
            raise ZooError(f"{type(self).__name__}: batch has no {key!r} entry (keys: {sorted(batch)})")
        return self(batch[key])


# -- input checks shared by the families: one clear error at the boundary ----------------------------


def _first_bad_value(x: torch.Tensor) -> str:
    """``"2 NaN/Inf value(s), the first at [0, 1, 5, 7] (NaN)"`` for a tensor that holds some."""
    bad = ~torch.isfinite(x)
    flat = int(bad.flatten().to(torch.uint8).argmax())  # the first bad position without listing them all
    first = [int(i) for i in torch.unravel_index(torch.tensor(flat), x.shape)]
    value = x.flatten()[flat].item()
    return f"{int(bad.sum())} NaN/Inf value(s), the first at {first} ({value})"


def _as_float32(x: torch.Tensor, name: str, expected: str, integer_hint: str) -> torch.Tensor:
    """Floats of any precision as float32 (what every family computes in); integers and bools refused."""
    if x.dtype == torch.bool or not (x.is_floating_point() or x.is_complex()):
        raise ZooError(f"{name}: expected a float tensor {expected}, got dtype {x.dtype}{integer_hint}")
    if x.is_complex():
        raise ZooError(f"{name}: expected a real float tensor {expected}, got dtype {x.dtype}")
    return x if x.dtype == torch.float32 else x.float()


def check_image_shape(x: Any, name: str = "images") -> torch.Size:
    """The shape of an image batch ``[B, 3, H, W]`` with ``H, W >= 1`` (``B = 0`` is allowed), values unread."""
    if not isinstance(x, torch.Tensor):
        raise ZooError(f"{name}: expected a float tensor [B, 3, H, W] in [0, 1], got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ZooError(f"{name}: expected shape [B, 3, H, W], got {list(x.shape)}")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ZooError(f"{name}: expected at least one pixel per side, got {x.shape[2]}x{x.shape[3]}")
    return x.shape


def check_images(x: Any, name: str = "images") -> torch.Tensor:
    """Validate ``[B, 3, H, W]`` finite floats in ``[0, 1]``; float16 / bfloat16 / float64 come back as float32."""
    check_image_shape(x, name)
    hint = " (8-bit images: divide by 255)" if x.dtype == torch.uint8 else ""
    x = _as_float32(x, name, "in [0, 1]", hint)
    if x.numel():
        if not torch.isfinite(x).all():
            raise ZooError(f"{name}: expected finite values in [0, 1], got {_first_bad_value(x)}")
        low, high = x.min().item(), x.max().item()
        if low < -1e-3 or high > 1 + 1e-3:
            hint = " (8-bit values: divide by 255)" if high > 2 else " ([-1, 1] images: (x + 1) / 2)" if low < 0 else ""
            raise ZooError(f"{name}: values must lie in [0, 1], got [{low:.3g}, {high:.3g}]{hint}")
    return x


def check_audio(x: Any, lengths: Any = None, name: str = "audio") -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``[B, T]`` finite floats in ``[-1, 1]`` (mono) and return them (float32) with lengths ``[B]``."""
    if not isinstance(x, torch.Tensor):
        raise ZooError(f"{name}: expected a float tensor [B, T], got {type(x).__name__}")
    if x.ndim != 2:
        raise ZooError(f"{name}: expected shape [B, T] (mono, batched), got {list(x.shape)}")
    hint = " (16-bit PCM: divide by 32768)" if x.dtype == torch.int16 else ""
    x = _as_float32(x, name, "in [-1, 1]", hint)
    if x.numel():
        if not torch.isfinite(x).all():
            raise ZooError(f"{name}: expected finite samples in [-1, 1], got {_first_bad_value(x)}")
        peak = x.abs().max().item()
        if peak > 1 + 1e-3:
            hint = " (it looks like 16-bit PCM scale: divide by 32768)" if peak > 2 else ""
            raise ZooError(f"{name}: samples must lie in [-1, 1], got a peak of {peak:.4g}{hint}")
    if lengths is None:
        lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    if lengths.shape != (x.shape[0],) or (lengths < 0).any() or (lengths > x.shape[1]).any():
        raise ZooError(f"{name}: lengths must be [B] integers in [0, {x.shape[1]}], got {lengths.tolist()}")
    return x, lengths


def check_sample_rate(sample_rate: Any, expected: int, name: str = "audio") -> None:
    """Refuse audio recorded at another rate than the tokenizer's (resample it first: ``zoo.io.read_audio``)."""
    if sample_rate is None:
        return
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real) or not sample_rate > 0:
        raise ZooError(f"{name}: sample_rate must be a positive number of Hz, got {sample_rate!r}")
    if sample_rate != expected:
        raise ZooError(f"{name}: recorded at {sample_rate} Hz, the tokenizer takes {expected} Hz; resample first "
                       f"(zoo.io.read_audio(path, sample_rate={expected}) does)")


def check_ids(ids: Any, vocab_size: int, name: str = "ids") -> torch.Tensor:
    """Validate integer ids in ``[0, vocab_size)``."""
    ids = torch.as_tensor(ids)
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise ZooError(f"{name}: expected integer ids, got dtype {ids.dtype}")
    if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ZooError(f"{name}: ids must lie in [0, {vocab_size}), got [{ids.min().item()}, {ids.max().item()}]")
    return ids.long()
