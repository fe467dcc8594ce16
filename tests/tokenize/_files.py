"""Tiny webdataset tars and the files inside them, written by the source tests (PNG and WAV are lossless)."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import soundfile
import torch
from PIL import Image

RNG = np.random.default_rng(0)
PIXELS = [RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8) for _ in range(6)]
WAVES = [RNG.integers(-8000, 8000, 800 + 80 * i, dtype=np.int16) for i in range(3)]
TEXTS = ["héllo 🌍", "", "two\nlines", "zoo", "tokens", "tar"]


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def wav(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def write_tar(path, files: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as archive:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def image_shards(folder) -> None:
    """Two shards of three samples each: ``s{shard}/{n}.png`` + ``.cls`` + ``.txt`` (and a ``.json`` to ignore)."""
    for shard in range(2):
        files = []
        for n in range(3):
            i = 3 * shard + n
            files += [(f"s{shard}/{i:04d}.png", png(PIXELS[i])), (f"s{shard}/{i:04d}.cls", f"{i % 4}\n".encode()),
                      (f"s{shard}/{i:04d}.txt", TEXTS[i].encode()), (f"s{shard}/{i:04d}.json", b"{}")]
        write_tar(folder / f"part-{shard:03d}.tar", files)


def as_uint8(image: torch.Tensor) -> np.ndarray:
    return (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
