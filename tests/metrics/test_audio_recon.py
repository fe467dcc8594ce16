"""Audio reconstruction metrics against hand computations: SI-SDR by its definition, mel and STFT distances
of a gain change in closed form, the STFT framing frame by frame, PESQ / STOI of a clean signal with itself
near their maxima, clip lengths respected, streaming state that sums."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoo.metrics import build_metric
from zoo.metrics.audio_recon import (
    MEL_WINDOWS,
    STFT_WINDOWS,
    mel_distance,
    si_sdr,
    stft_distance,
    stft_magnitude,
)
from zoo.metrics.base import EvalContext
from zoo.tokenizer import AudioTokens

RATE = 16_000


def _speechlike(seconds: float = 3.0, seed: int = 0) -> torch.Tensor:
    """Voiced "syllables": harmonics of a gliding 110-160 Hz pitch under a 4 Hz on/off envelope, a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 135 + 25 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    wave = envelope * voiced + 0.003 * rng.standard_normal(t.shape)
    return torch.from_numpy(0.5 * wave / np.abs(wave).max()).float()


class GainCodec:
    """A stand-in codec: ``decode(encode(x))`` is ``gain * x``, with junk past each clip's end (never scored)."""

    modality = "audio"
    has_decoder = True
    sample_rate = RATE
    vocab_size = 1024
    hop = 320

    def __init__(self, gain: float = 1.0, levels: int = 2):
        self.gain, self.levels = gain, levels

    def encode(self, x, lengths=None):
        self._x = x
        frames = (lengths + self.hop - 1) // self.hop
        return AudioTokens(torch.zeros(x.shape[0], int(frames.max()), self.levels, dtype=torch.long), frames)

    def decode(self, tokens):
        out = torch.full((self._x.shape[0], tokens.ids.shape[1] * self.hop), 0.9)
        out[:, : self._x.shape[1]] = self.gain * self._x
        lengths = tokens.lengths * self.hop
        for row, length in enumerate(lengths.tolist()):
            out[row, min(length, out.shape[1]):] = 0.9
        return out


def _ctx(tokenizer, clips: list[torch.Tensor]) -> EvalContext:
    lengths = torch.tensor([len(c) for c in clips])
    audio = torch.zeros(len(clips), int(lengths.max()))
    for row, clip in enumerate(clips):
        audio[row, : len(clip)] = clip
        audio[row, len(clip):] = 0.7  # padding the metrics must not read
    return EvalContext(tokenizer, {"audio": audio, "audio_lengths": lengths})


def test_si_sdr_matches_the_definition_by_hand():
    rng = np.random.default_rng(0)
    s = rng.standard_normal(4000)
    s -= s.mean()
    n = rng.standard_normal(4000)
    n -= n.mean()
    n -= (n @ s) / (s @ s) * s  # orthogonal to s, zero mean
    estimate = 0.5 * s + 0.1 * n + 0.3  # an offset: SI-SDR removes means
    # Target = (0.5 s), residual = 0.1 n: SI-SDR = 10 log10(|0.5 s|^2 / |0.1 n|^2).
    expected = 10 * math.log10((0.25 * (s @ s)) / (0.01 * (n @ n)))
    got = si_sdr(torch.from_numpy(s)[None], torch.from_numpy(estimate)[None])
    assert got.item() == pytest.approx(expected, abs=1e-9)
    # Scale invariance: any gain of the estimate gives the same value.
    assert si_sdr(torch.from_numpy(s)[None], 7 * torch.from_numpy(estimate)[None]).item() == pytest.approx(expected)


def test_stft_magnitude_is_the_hann_windowed_rfft_of_each_centred_frame():
    x = _speechlike(0.2)
    window, hop = 256, 64
    got = stft_magnitude(x[None], window, hop)[0]  # [129, frames]
    padded = np.pad(x.double().numpy(), window // 2, mode="reflect")
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / window)  # periodic Hann
    for frame in (0, 7, got.shape[1] - 1):
        expected = np.abs(np.fft.rfft(hann * padded[frame * hop : frame * hop + window]))
        assert np.allclose(got[:, frame].double().numpy(), expected, atol=1e-4)


def test_mel_and_stft_distances_of_a_gain_change_in_closed_form():
    x = _speechlike(1.0)[None]
    assert mel_distance(x, x, RATE).item() == 0 and stft_distance(x, x).item() == 0
    # Scaling by c moves every log10 mel magnitude above the clamp by log10(c): one scale gives |log10 c|, the
    # seven give 7 |log10 c|, less the few empty bands of the smallest scales, which sit at the clamp and stay.
    gain = 0.5
    loud = (x + 0.01 * torch.randn(1, x.shape[1], generator=torch.Generator().manual_seed(0))) * 0.9
    one_scale = mel_distance(loud, gain * loud, RATE, windows=(2048,), bands=(320,)).item()
    assert one_scale == pytest.approx(abs(math.log10(gain)), rel=1e-5)
    expected_mel = len(MEL_WINDOWS) * abs(math.log10(gain))
    assert mel_distance(loud, gain * loud, RATE).item() == pytest.approx(expected_mel, rel=5e-3)
    # STFT: 2 |log10 c| (log power) + |1 - c| mean |X| (magnitude), per scale.
    expected_stft = sum(2 * abs(math.log10(gain)) + (1 - gain) * stft_magnitude(loud, w).mean().item()
                        for w in STFT_WINDOWS)
    assert stft_distance(loud, gain * loud).item() == pytest.approx(expected_stft, rel=1e-3)


def test_metrics_score_each_clip_over_its_own_length_and_sum_across_shards():
    clips = [_speechlike(1.0, seed=0), _speechlike(0.7, seed=1)[: 11_000]]
    codec = GainCodec(gain=0.8)
    for name in ("mel-distance", "stft-distance", "si-sdr"):
        whole = build_metric(name)
        whole.update(_ctx(codec, clips))
        by_hand = []
        for clip in clips:
            ref, est = clip[None], 0.8 * clip[None]
            by_hand.append({"mel-distance": mel_distance(ref, est, RATE), "stft-distance": stft_distance(ref, est),
                            "si-sdr": si_sdr(ref, est)}[name].item())
        assert whole.compute() == pytest.approx(sum(by_hand) / 2, rel=1e-5), name
        first, second = build_metric(name), build_metric(name)
        first.update(_ctx(codec, clips[:1]))
        second.update(_ctx(codec, clips[1:]))
        first.merge_state(second)
        assert first.compute() == pytest.approx(whole.compute(), rel=1e-9), name


def test_pesq_and_stoi_of_a_clean_signal_with_itself_are_near_their_maxima():
    pytest.importorskip("pesq", reason="PESQ needs the pesq package (pip install 'zoo[audio]')")
    pytest.importorskip("pystoi", reason="STOI needs the pystoi package (pip install 'zoo[audio]')")
    clean = [_speechlike(3.0)]
    scores = {}
    for name in ("pesq", "stoi", "estoi"):
        metric = build_metric(name)
        metric.update(_ctx(GainCodec(gain=1.0), clean))
        scores[name] = metric.compute()
    assert scores["pesq"] > 4.5  # P.862.2's maximum is 4.64
    assert scores["stoi"] > 0.999 and scores["estoi"] > 0.999
    noisy = clean[0] + 0.05 * torch.randn(len(clean[0]), generator=torch.Generator().manual_seed(0))

    class Noisy(GainCodec):
        def decode(self, tokens):
            return noisy[None].clone()

    for name in ("pesq", "stoi"):
        metric = build_metric(name)
        metric.update(_ctx(Noisy(), clean))
        assert metric.compute() < scores[name] - 0.05, name


def test_pesq_and_stoi_leave_out_clips_they_cannot_score():
    pytest.importorskip("pesq", reason="PESQ needs the pesq package (pip install 'zoo[audio]')")
    pytest.importorskip("pystoi", reason="STOI needs the pystoi package (pip install 'zoo[audio]')")
    clips = [_speechlike(3.0), torch.zeros(1600)]  # 0.1 s of silence: no utterance, too few frames
    for name in ("pesq", "stoi"):
        metric = build_metric(name)
        metric.update(_ctx(GainCodec(), clips))
        value = metric.compute()
        assert value > 0.9 and metric.notes == ["1 of 2 clips could not be scored and are left out"], name
    empty = build_metric("pesq")
    empty.update(_ctx(GainCodec(), clips[1:]))
    assert math.isnan(empty.compute())


def test_bitrate_counts_valid_frames_and_levels():
    clips = [torch.zeros(32_000), torch.zeros(16_000)]
    metric = build_metric("bitrate")
    metric.update(_ctx(GainCodec(levels=3), clips))
    result = metric.compute()
    # 100 + 50 frames x 3 levels over 3 s = 150 tokens/s; log2(1024) = 10 bits each.
    assert result == {"kbps": pytest.approx(1.5), "tokens_per_s": pytest.approx(150.0)}
