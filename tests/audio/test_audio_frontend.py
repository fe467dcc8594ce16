"""BEATs' front end: kaldi fbank on int16-scaled audio, normalisation, patch counts, padding, resampling."""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio.compliance.kaldi as kaldi

from zoo.audio.beats.frontend import (
    BEATS_FBANK_MEAN,
    BEATS_FBANK_STD,
    FbankFrontEnd,
    num_frames,
    num_patches,
    pad_ids,
    padding_mask,
    to_mono_16k,
)
from zoo.errors import ZooError


def _tone(seconds: float, freq: float = 440.0, rate: int = 16_000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return 0.3 * torch.sin(2 * math.pi * freq * t)


def test_frame_and_patch_counts_match_kaldi():
    for samples in (0, 399, 400, 559, 560, 16_000, 16_000 * 10):
        expected = 0 if samples < 400 else kaldi.fbank(torch.randn(1, samples), num_mel_bins=128).shape[0]
        assert int(num_frames(torch.tensor(samples))) == expected
    # BEATs: a 10 s clip gives 998 frames -> 62 time steps of 8 patches = 496 patches.
    assert int(num_patches(torch.tensor(160_000))) == 496
    assert int(num_patches(torch.tensor(16_000))) == 48  # 98 frames -> 6 steps


def test_fbank_is_beats_normalised_kaldi_fbank():
    wave = _tone(1.0)
    fbank, patch_lengths = FbankFrontEnd()(wave.unsqueeze(0), torch.tensor([16_000]))
    reference = kaldi.fbank(
        wave.unsqueeze(0) * 2**15, num_mel_bins=128, sample_frequency=16_000, frame_length=25, frame_shift=10
    )
    reference = (reference - 15.41663) / (2 * 6.55582)
    assert fbank.shape == (1, 1, 96, 128)  # 98 frames cut to 6 whole patches of 16
    torch.testing.assert_close(fbank[0, 0], reference[:96])
    assert patch_lengths.tolist() == [48]
    assert (BEATS_FBANK_MEAN, BEATS_FBANK_STD) == (15.41663, 6.55582)


def test_custom_normalisation_statistics():
    wave = _tone(0.5).unsqueeze(0)
    default, _ = FbankFrontEnd()(wave, torch.tensor([8000]))
    custom, _ = FbankFrontEnd(fbank_mean=0.0, fbank_std=0.5)(wave, torch.tensor([8000]))
    torch.testing.assert_close(custom, default * (2 * BEATS_FBANK_STD) + BEATS_FBANK_MEAN)
    with pytest.raises(ZooError, match="fbank_std must be positive"):
        FbankFrontEnd(fbank_std=0.0)


def test_padded_batch_gives_each_item_its_own_fbank():
    a, b = _tone(1.2, 300.0), _tone(0.5, 900.0)
    batch = torch.zeros(2, a.shape[0])
    batch[0], batch[1, : b.shape[0]] = a, b
    batch[1, b.shape[0] :] = 0.7  # garbage past the end must not leak into item 1
    front = FbankFrontEnd()
    fbank, lengths = front(batch, torch.tensor([a.shape[0], b.shape[0]]))
    alone, alone_lengths = front(b.unsqueeze(0), torch.tensor([b.shape[0]]))
    steps = alone.shape[2]
    assert lengths[1] == alone_lengths[0]
    assert torch.equal(fbank[1, :, :steps], alone[0])
    assert (fbank[1, :, steps:] == 0).all()


def test_padding_helpers():
    lengths = torch.tensor([3, 1, 0])
    assert padding_mask(lengths, 3).tolist() == [[False, False, False], [False, True, True], [True, True, True]]
    ids = torch.arange(9).view(3, 3)
    assert pad_ids(ids, lengths).tolist() == [[0, 1, 2], [3, -1, -1], [-1, -1, -1]]


def test_to_mono_16k_mixes_and_resamples():
    stereo = torch.stack([_tone(1.0, 440.0, 44_100), -_tone(1.0, 440.0, 44_100) * 0.5])
    mono = to_mono_16k(stereo, 44_100)
    assert mono.shape == (16_000,)
    torch.testing.assert_close(to_mono_16k(_tone(1.0), 16_000), _tone(1.0))
    with pytest.raises(ZooError, match=r"expected \[T\] or \[channels, T\]"):
        to_mono_16k(torch.zeros(1, 2, 3), 16_000)
