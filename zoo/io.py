"""Reading and writing files at the edges (CLI, ``encode_file``): text, images, audio.

Models never see paths: these helpers turn files into the tensors of the Tokenizer contract.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from zoo.errors import ZooError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"{path}: no such file")
    return path


def read_text(path: str | Path) -> str:
    try:
        return _existing(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ZooError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def read_image(path: str | Path) -> torch.Tensor:
    """An image file as float ``[3, H, W]`` in ``[0, 1]`` (grey and RGBA become RGB)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(_existing(path)) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    except UnidentifiedImageError:
        raise ZooError(f"{path}: not an image file PIL can read") from None
    except (OSError, ValueError, SyntaxError) as err:  # truncated or corrupt data inside a recognised format
        if isinstance(err, FileNotFoundError):
            raise
        raise ZooError(f"{path}: the image data is damaged or truncated ({err})") from None
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def _output_path(path: str | Path, suffixes: set[str], kind: str) -> Path:
    """An output file whose folder exists (nothing is created elsewhere) and whose suffix names a known format."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ZooError(f"{path}: cannot write {kind} as {path.suffix or 'a file without a suffix'}; "
                       f"use one of {', '.join(sorted(suffixes))}")
    if not path.parent.is_dir():
        raise ZooError(f"{path}: the folder {path.parent} does not exist (create it first)")
    if path.is_dir():
        raise ZooError(f"{path}: is a folder; expected a file name")
    return path


def _write_atomically(path: Path, write) -> None:
    """``write(temporary_path)`` then rename: ``path`` is the old file or the whole new one, never half."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_image(path: str | Path, image: torch.Tensor) -> None:
    """Write float ``[3, H, W]`` in ``[0, 1]`` as PNG (or the format the suffix names)."""
    from PIL import Image

    path = _output_path(path, IMAGE_SUFFIXES, "an image")
    array = (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    _write_atomically(path, lambda tmp: Image.fromarray(array).save(tmp))


def read_audio(path: str | Path, sample_rate: int | None = None) -> torch.Tensor:
    """An audio file as float mono ``[T]`` in ``[-1, 1]``, resampled to ``sample_rate`` when given."""
    import soundfile

    try:
        data, rate = soundfile.read(str(_existing(path)), dtype="float32", always_2d=True)
    except soundfile.LibsndfileError as err:
        raise ZooError(f"{path}: not an audio file soundfile can read ({err})") from None
    wave = torch.from_numpy(data.mean(axis=1))
    if sample_rate is not None and rate != sample_rate:
        import torchaudio.functional as F

        wave = F.resample(wave, rate, sample_rate)
    return wave


def write_audio(path: str | Path, wave: torch.Tensor, sample_rate: int) -> None:
    """Write float ``[T]`` in ``[-1, 1]`` as WAV (or the format the suffix names)."""
    import soundfile

    path = _output_path(path, AUDIO_SUFFIXES, "audio")
    samples = wave.detach().clamp(-1, 1).cpu().numpy()
    _write_atomically(path, lambda tmp: soundfile.write(tmp, samples, sample_rate))
