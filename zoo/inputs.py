"""Input checks shared by every family: one clear error at the boundary, before any compute.

Images are ``[B, 3, H, W]`` finite floats in ``[0, 1]``, audio ``[B, T]`` finite floats in ``[-1, 1]``; other float
precisions come back as float32, integer inputs are refused with the division that fixes them. ``zoo.tokenizer``
re-exports these; ``zoo.io`` checks the files it reads with them.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch

from zoo.errors import ZooError


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
