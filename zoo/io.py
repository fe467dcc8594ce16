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
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def write_image(path: str | Path, image: torch.Tensor) -> None:
    """Write float ``[3, H, W]`` in ``[0, 1]`` as PNG (or the format the suffix names)."""
    from PIL import Image

    array = (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


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
    import soundfile

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), wave.detach().clamp(-1, 1).cpu().numpy(), sample_rate)
