"""BEATs' acoustic front end: 16 kHz mono waveform -> normalised 128-bin log-mel fbank -> 16 x 16 patches.

The recipe of BEATs (https://arxiv.org/abs/2212.09058, ``BEATs.py::preprocess``): the waveform is scaled
to the int16 range (x 2^15), ``torchaudio.compliance.kaldi.fbank`` computes 128 mel bins with 25 ms
windows every 10 ms, and the result is normalised as ``(fbank - mean) / (2 * std)`` with BEATs'
AudioSet constants (or statistics of your own training set, see ``dataset_fbank_statistics``).

Patches are 16 frames x 16 mel bins, so a clip gives ``frames // 16`` time steps of 8 frequency
patches each, flattened time-major (index ``t * 8 + f``): 8 tokens per 160 ms, 50 tokens per second.

Padding: every item's fbank is computed from its own valid samples, and the padding mask says which
patches exist, so a padded batch yields exactly the patches each item yields alone.
"""

from __future__ import annotations

import math

import torch
import torchaudio.compliance.kaldi as kaldi

from zoo.errors import ZooError

SAMPLE_RATE = 16_000
NUM_MEL_BINS = 128
FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = 10.0
WINDOW = int(SAMPLE_RATE * FRAME_LENGTH_MS / 1000)  # 400 samples
HOP = int(SAMPLE_RATE * FRAME_SHIFT_MS / 1000)  # 160 samples
BEATS_FBANK_MEAN = 15.41663
BEATS_FBANK_STD = 6.55582
INT16_SCALE = 2**15


def num_frames(num_samples: torch.Tensor) -> torch.Tensor:
    """Kaldi frames (``snip_edges=True``) in clips of ``num_samples`` samples: 0 when shorter than a window."""
    num_samples = torch.as_tensor(num_samples, dtype=torch.long)
    frames = torch.div(num_samples - WINDOW, HOP, rounding_mode="floor") + 1
    return frames.clamp(min=0)


def num_patches(num_samples: torch.Tensor, patch_size: int = 16) -> torch.Tensor:
    """Patches per clip: ``frames // patch_size`` time steps x ``128 // patch_size`` frequency bands."""
    return torch.div(num_frames(num_samples), patch_size, rounding_mode="floor") * (NUM_MEL_BINS // patch_size)


def to_mono_16k(wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Mix ``[C, T]`` or ``[T]`` audio down to mono ``[T]`` and resample it to 16 kHz."""
    if wave.ndim == 2:
        wave = wave.mean(dim=0)
    if wave.ndim != 1:
        raise ZooError(f"audio: expected [T] or [channels, T], got shape {list(wave.shape)}")
    if sample_rate != SAMPLE_RATE:
        import torchaudio.functional as F

        wave = F.resample(wave, int(sample_rate), SAMPLE_RATE)
    return wave


def log_mel_fbank(wave: torch.Tensor) -> torch.Tensor:
    """Kaldi fbank ``[frames, 128]`` of one 16 kHz clip ``[T]`` in ``[-1, 1]`` (not yet normalised)."""
    if wave.shape[-1] < WINDOW:
        return wave.new_zeros(0, NUM_MEL_BINS)
    return kaldi.fbank(
        wave.unsqueeze(0).float() * INT16_SCALE,
        num_mel_bins=NUM_MEL_BINS,
        sample_frequency=SAMPLE_RATE,
        frame_length=FRAME_LENGTH_MS,
        frame_shift=FRAME_SHIFT_MS,
    )


class FbankFrontEnd:
    """Waveforms ``[B, T]`` + lengths -> normalised fbank ``[B, 1, F, 128]`` padded to whole patches.

    Args:
        fbank_mean, fbank_std: normalisation ``(x - mean) / (2 * std)``; BEATs' AudioSet values by default.
        patch_size: frames (and mel bins) per patch side.
    """

    def __init__(self, fbank_mean: float = BEATS_FBANK_MEAN, fbank_std: float = BEATS_FBANK_STD, patch_size: int = 16):
        if fbank_std <= 0:
            raise ZooError(f"fbank_std must be positive, got {fbank_std}")
        if NUM_MEL_BINS % patch_size:
            raise ZooError(f"patch_size must divide {NUM_MEL_BINS} mel bins, got {patch_size}")
        self.fbank_mean = float(fbank_mean)
        self.fbank_std = float(fbank_std)
        self.patch_size = int(patch_size)
        self.bands = NUM_MEL_BINS // patch_size

    def __call__(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``fbank [B, 1, t * patch, 128]`` (zeros past each item's end) and ``patch_lengths [B]``."""
        patch_lengths = num_patches(lengths, self.patch_size)
        steps = torch.div(patch_lengths, self.bands, rounding_mode="floor")
        max_frames = int(steps.max()) * self.patch_size if len(steps) else 0
        fbank = audio.new_zeros(audio.shape[0], 1, max_frames, NUM_MEL_BINS, dtype=torch.float32)
        if max_frames == 0:
            return fbank, patch_lengths
        # One kaldi call for the whole batch: rows laid end to end, each padded to whole hops, so frame k
        # of row b starts at hop b * per_row + k. Kaldi frames are computed one by one (no dither, no
        # global mean), so every frame that ends inside its item equals the frame of the item alone.
        per_row = -(-audio.shape[1] // HOP)
        rows = torch.nn.functional.pad(audio.float(), (0, per_row * HOP - audio.shape[1]))
        frames = log_mel_fbank(torch.cat([rows.reshape(-1), rows.new_zeros(WINDOW)]))  # [B * per_row, 128]
        frames = (frames - self.fbank_mean) / (2 * self.fbank_std)
        for row, step in enumerate(steps.tolist()):
            count = step * self.patch_size
            fbank[row, 0, :count] = frames[row * per_row : row * per_row + count]
        return fbank, patch_lengths


def padding_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """``[B, N]`` True at padding positions (past each item's length)."""
    positions = torch.arange(max_length, device=lengths.device)
    return positions.unsqueeze(0) >= lengths.to(positions.device).unsqueeze(1)


def pad_ids(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Set ids past each item's length to ``-1`` (the ``AudioTokens`` padding value)."""
    return ids.masked_fill(padding_mask(lengths, ids.shape[1]), -1)


def dataset_fbank_statistics(spec: str | dict, limit: int | None = 512) -> tuple[float, float]:
    """Mean and standard deviation of the (unnormalised) fbank over ``limit`` clips spread evenly over a
    dataset, for ``fbank_mean`` / ``fbank_std``.

    BEATs normalises with one scalar mean and std; these are the same two numbers for your data.
    """
    from zoo.data import load_dataset

    dataset = load_dataset(spec)
    count, total, total_sq = 0, 0.0, 0.0
    size = len(dataset)
    chosen = range(size) if limit is None or limit >= size else torch.linspace(0, size - 1, limit).round().long()
    for index in sorted({int(i) for i in chosen}):  # evenly spread over the dataset
        wave = dataset[index]["audio"]
        frames = log_mel_fbank(wave).double()
        count += frames.numel()
        total += frames.sum().item()
        total_sq += frames.square().sum().item()
    if count == 0:
        raise ZooError(f"dataset {spec!r}: no clip is long enough ({WINDOW} samples) for one fbank frame")
    mean = total / count
    return mean, math.sqrt(max(total_sq / count - mean**2, 0.0))


if __name__ == "__main__":  # python -m zoo.audio.beats.frontend gm-notes:split=train
    import sys

    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m zoo.audio.beats.frontend DATASET_SPEC  (prints fbank_mean and fbank_std)")
    mean_value, std_value = dataset_fbank_statistics(sys.argv[1])
    print(f"fbank_mean: {mean_value:.5f}\nfbank_std: {std_value:.5f}")
