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
        return _existing(path).read_text(encoding="utf-8")  # universal newlines, as Python reads text files
    except UnicodeDecodeError as err:
        raise ZooError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def decode_text(data: bytes, where: str) -> str:
    """UTF-8 bytes (a file's, or a member's of an archive, named by ``where``) as text."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ZooError(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def read_image(path: str | Path) -> torch.Tensor:
    """An image file as float ``[3, H, W]`` in ``[0, 1]`` (grey and RGBA become RGB)."""
    path = _existing(path)
    return decode_image(path, str(path))


def decode_image(source, where: str) -> torch.Tensor:
    """An image from a path or a binary file object (an archive member's bytes in ``io.BytesIO``), named by
    ``where`` in errors, as float ``[3, H, W]`` in ``[0, 1]``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    except UnidentifiedImageError:
        raise ZooError(f"{where}: not an image file PIL can read (expected {', '.join(sorted(IMAGE_SUFFIXES))})") \
            from None
    except Image.DecompressionBombError as err:  # far more pixels than the file's size suggests
        raise ZooError(f"{where}: refused as a possible decompression bomb ({err})") from None
    except (OSError, ValueError, SyntaxError) as err:  # truncated or corrupt data inside a recognised format
        raise ZooError(f"{where}: the image data is damaged or truncated ({err})") from None
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def output_path(path: str | Path, suffixes: set[str] | None, kind: str) -> Path:
    """An output file whose folder exists (nothing is created elsewhere) and, when ``suffixes`` are given, whose
    suffix names a format they list."""
    path = Path(path)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise ZooError(f"{path}: cannot write {kind} as {path.suffix or 'a file without a suffix'}; "
                       f"use one of {', '.join(sorted(suffixes))}")
    if path.is_dir():
        raise ZooError(f"{path}: is a folder; expected a file name for the {kind}")
    if not path.parent.is_dir():
        raise ZooError(f"{path}: the folder {path.parent} does not exist (create it first; zoo creates no folders "
                       "for an output file)")
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


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` (decoded text in the zoo's UTF-8 form) to a file of any suffix in an existing folder."""
    path = output_path(path, None, "text")
    _write_atomically(path, lambda tmp: Path(tmp).write_bytes(data))


def write_image(path: str | Path, image: torch.Tensor) -> None:
    """Write float ``[3, H, W]`` in ``[0, 1]`` as PNG (or the format the suffix names)."""
    from PIL import Image

    path = output_path(path, IMAGE_SUFFIXES, "an image")
    array = (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    _write_atomically(path, lambda tmp: Image.fromarray(array).save(tmp))


def read_audio(path: str | Path, sample_rate: int | None = None) -> torch.Tensor:
    """An audio file as float mono ``[T]`` in ``[-1, 1]``, resampled to ``sample_rate`` when given.

    The file's own samples go through the audio check (NaN / Inf, range), named by the path; the resampled
    wave is clipped to ``[-1, 1]``, since a band-limiting filter overshoots near full-scale edges (a full-scale
    square wave peaks at 1.18 after 44.1 -> 16 kHz).
    """
    path = _existing(path)
    return decode_audio(str(path), str(path), sample_rate)[0]


def decode_audio(source, where: str, sample_rate: int | None = None) -> tuple[torch.Tensor, int]:
    """Audio from a path or a binary file object, named by ``where`` in errors: ``(float mono [T] in [-1, 1], its
    rate)``, resampled (and clipped, see ``read_audio``) to ``sample_rate`` when given."""
    import soundfile

    from zoo.inputs import check_audio

    try:
        data, rate = soundfile.read(source, dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError) as err:  # older soundfile releases raise RuntimeError
        raise ZooError(f"{where}: not an audio file soundfile can read ({err})") from None
    wave = check_audio(torch.from_numpy(data.mean(axis=1)).unsqueeze(0), name=where)[0][0]
    if sample_rate is not None and rate != sample_rate:
        import torchaudio.functional as F

        wave = F.resample(wave, rate, sample_rate).clamp(-1.0, 1.0)
        rate = sample_rate
    return wave, rate


def write_audio(path: str | Path, wave: torch.Tensor, sample_rate: int) -> None:
    """Write float ``[T]`` in ``[-1, 1]`` as WAV (or the format the suffix names)."""
    import soundfile

    path = output_path(path, AUDIO_SUFFIXES, "audio")
    samples = wave.detach().clamp(-1, 1).cpu().numpy()
    _write_atomically(path, lambda tmp: soundfile.write(tmp, samples, sample_rate))
