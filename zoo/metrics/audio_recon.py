"""Audio reconstruction metrics: mel distance, multi-scale STFT distance, SI-SDR, PESQ, STOI / ESTOI, bitrate.

Each compares every clip ``x`` with ``decode(encode(x))`` over the clip's own samples (``audio_lengths``;
decoders may pad to whole frames, the padding is never scored) at the tokenizer's ``sample_rate``, and
averages per-clip values over the set. State is a float64 sum and count per metric, summable across
processes.

- ``mel-distance`` (DAC's multi-scale mel loss, https://arxiv.org/abs/2306.06546, ``conf/base.yml``): for
  Hann windows of 32 .. 2048 samples (hop = window / 4) with 5 .. 320 mel bands (Slaney filters, 0 Hz to
  Nyquist), the mean absolute difference of ``log10(max(mel magnitude, 1e-5))``, summed over the 7 scales.
- ``stft-distance`` (DAC's ``MultiScaleSTFTLoss``): for windows 2048 and 512, the mean absolute difference of
  ``log10(max(|STFT|, 1e-5)^2)`` plus that of ``|STFT|``, summed over the scales.
- ``si-sdr`` (Le Roux et al., https://arxiv.org/abs/1811.02508), dB: both signals zero-mean, the target
  ``alpha s`` with ``alpha = <s_hat, s> / |s|^2``, ``10 log10(|alpha s|^2 / |s_hat - alpha s|^2)``.
- ``pesq``: ITU-T P.862.2 wide band (P.862 narrow band with ``mode: nb``) from the ``pesq`` package, at
  16 kHz (8 kHz for nb; other rates are resampled for this metric only). Range -0.5 .. 4.64 (wb).
- ``stoi`` / ``estoi``: (extended) short-time objective intelligibility from ``pystoi``, 0 .. 1.
- ``bitrate``: measured tokens per second (valid frames x codebook levels / seconds of audio) and
  ``kbps`` = tokens per second x log2(vocab_size) / 1000. Needs no decoder.

A clip PESQ or STOI cannot score (too short, or no speech found) is left out and counted in a note: it
never scores as a number (Codec-SUPERB's PESQ, for one, turns a failure into 1.0).
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import ClassVar

import torch

from zoo.errors import ZooError
from zoo.metrics.base import EvalContext, Metric

MEL_WINDOWS = (32, 64, 128, 256, 512, 1024, 2048)
MEL_BANDS = (5, 10, 20, 40, 80, 160, 320)
STFT_WINDOWS = (2048, 512)
CLAMP = 1e-5


# -- spectra: shared with the codec family's training losses ----------------------------------------------


def complex_stft(audio: torch.Tensor, window: int, hop: int | None = None) -> torch.Tensor:
    """Complex STFT ``[B, window // 2 + 1, frames]`` of ``[B, T]`` audio: Hann window, hop ``window // 4`` by
    default, centred frames (reflect padding where the clip is long enough), float32 whatever the autocast dtype."""
    hop = hop or window // 4
    with torch.autocast(audio.device.type, enabled=False):
        audio = audio.float()
        mode = "reflect" if audio.shape[-1] > window // 2 else "constant"
        return torch.stft(audio, n_fft=window, hop_length=hop, win_length=window,
                          window=torch.hann_window(window, device=audio.device), center=True, pad_mode=mode,
                          return_complex=True)


def stft_magnitude(audio: torch.Tensor, window: int, hop: int | None = None) -> torch.Tensor:
    """``|STFT|`` ``[B, window // 2 + 1, frames]`` (``complex_stft``'s framing)."""
    return complex_stft(audio, window, hop).abs()


@functools.lru_cache(maxsize=64)
def _mel_filters(window: int, bands: int, sample_rate: int) -> torch.Tensor:
    import torchaudio

    with warnings.catch_warnings():  # the smallest scales leave some bands empty, as DAC's do
        warnings.simplefilter("ignore")
        return torchaudio.functional.melscale_fbanks(window // 2 + 1, 0.0, sample_rate / 2, bands, sample_rate,
                                                     norm="slaney", mel_scale="slaney")  # [F, bands]


def mel_magnitude(audio: torch.Tensor, sample_rate: int, window: int, bands: int) -> torch.Tensor:
    """Mel-filtered STFT magnitude ``[B, bands, frames]`` (Slaney mel filters, 0 Hz to Nyquist)."""
    filters = _mel_filters(window, bands, sample_rate).to(audio.device)
    return torch.einsum("bft,fm->bmt", stft_magnitude(audio, window), filters)


def _check_pair(reference: torch.Tensor, estimate: torch.Tensor) -> None:
    if reference.shape != estimate.shape or reference.ndim != 2:
        raise ZooError(f"audio distance: expected two [B, T] tensors of one shape, got {list(reference.shape)} "
                       f"and {list(estimate.shape)}")


def mel_distance(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int,
                 windows: tuple[int, ...] = MEL_WINDOWS, bands: tuple[int, ...] = MEL_BANDS) -> torch.Tensor:
    """Per-clip multi-scale log-mel L1 distance ``[B]`` (see the module docstring)."""
    _check_pair(reference, estimate)
    total = reference.new_zeros(reference.shape[0], dtype=torch.float32)
    for window, n_mels in zip(windows, bands, strict=True):
        ref = mel_magnitude(reference, sample_rate, window, n_mels).clamp_min(CLAMP).log10()
        est = mel_magnitude(estimate, sample_rate, window, n_mels).clamp_min(CLAMP).log10()
        total = total + (ref - est).abs().mean(dim=(1, 2))
    return total


def stft_distance(reference: torch.Tensor, estimate: torch.Tensor,
                  windows: tuple[int, ...] = STFT_WINDOWS) -> torch.Tensor:
    """Per-clip multi-scale STFT distance ``[B]``: log-power L1 plus magnitude L1 per scale, summed."""
    _check_pair(reference, estimate)
    total = reference.new_zeros(reference.shape[0], dtype=torch.float32)
    for window in windows:
        ref, est = stft_magnitude(reference, window), stft_magnitude(estimate, window)
        log_gap = (ref.clamp_min(CLAMP).pow(2).log10() - est.clamp_min(CLAMP).pow(2).log10()).abs()
        total = total + log_gap.mean(dim=(1, 2)) + (ref - est).abs().mean(dim=(1, 2))
    return total


def si_sdr(reference: torch.Tensor, estimate: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-clip scale-invariant SDR in dB ``[B]`` of ``[B, T]`` signals (float64; see the module docstring)."""
    _check_pair(reference, estimate)
    ref = reference.double() - reference.double().mean(dim=1, keepdim=True)
    est = estimate.double() - estimate.double().mean(dim=1, keepdim=True)
    alpha = (est * ref).sum(1, keepdim=True) / (ref.pow(2).sum(1, keepdim=True) + eps)
    target = alpha * ref
    return 10 * torch.log10((target.pow(2).sum(1) + eps) / ((est - target).pow(2).sum(1) + eps))


# -- per-clip pairs from the shared context -------------------------------------------------------------------


def clip_pairs(ctx: EvalContext) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, decode(encode(x)))`` for every clip, each cut to the clip's own length, float32 on the CPU."""
    audio = ctx.inputs.float().cpu()
    lengths = ctx.batch.get("audio_lengths")
    lengths = torch.full((audio.shape[0],), audio.shape[1]) if lengths is None else torch.as_tensor(lengths).cpu()
    longest = int(lengths.max()) if len(lengths) else 0
    reconstruction = ctx.reconstruction
    if (not isinstance(reconstruction, torch.Tensor) or reconstruction.ndim != 2
            or reconstruction.shape[0] != audio.shape[0] or reconstruction.shape[1] < longest):
        got = list(reconstruction.shape) if isinstance(reconstruction, torch.Tensor) else type(reconstruction).__name__
        raise ZooError(f"{type(ctx.tokenizer).__name__}.decode returned {got}, expected [{audio.shape[0]}, T] with "
                       f"T >= {longest} (the longest clip)")
    reconstruction = reconstruction.float().cpu()
    return [(audio[b, :n], reconstruction[b, :n]) for b, n in enumerate(lengths.tolist()) if n > 0]


class _PerClipMean(Metric):
    """Mean over clips of a per-clip score; state: the sum, the count and the clips that could not be scored."""

    modalities: ClassVar[tuple[str, ...]] = ("audio",)
    needs_decoder: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64))
        self.add_state("count", torch.zeros((), dtype=torch.float64))
        self.add_state("failed", torch.zeros((), dtype=torch.float64))
        self.notes: list[str] = []

    def score(self, reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int) -> float | None:
        """One clip's score ``[T]`` vs ``[T]``; None when the clip cannot be scored."""
        raise ZooError(f"{type(self).__name__} does not define score()")

    def update(self, ctx: EvalContext) -> None:
        sample_rate = int(ctx.tokenizer.sample_rate)
        for reference, estimate in clip_pairs(ctx):
            value = self.score(reference, estimate, sample_rate)
            if value is None or not math.isfinite(value):
                self.failed = self.failed + 1
            else:
                self.total = self.total + value
                self.count = self.count + 1

    def compute(self) -> float:
        failed = int(self.failed)
        self.notes = [f"{failed} of {failed + int(self.count)} clips could not be scored and are left out"] \
            if failed else []
        if float(self.count) == 0:
            return math.nan
        return float(self.total / self.count)


class MelDistance(_PerClipMean):
    """DAC's multi-scale log-mel L1 distance (7 scales, 32..2048-sample windows)."""

    name: ClassVar[str] = "mel-distance"
    higher_is_better: ClassVar[bool | None] = False

    def score(self, reference, estimate, sample_rate):
        return float(mel_distance(reference[None], estimate[None], sample_rate)[0])


class STFTDistance(_PerClipMean):
    """DAC's multi-scale STFT distance (windows 2048 and 512: log-power L1 + magnitude L1)."""

    name: ClassVar[str] = "stft-distance"
    higher_is_better: ClassVar[bool | None] = False

    def score(self, reference, estimate, sample_rate):
        return float(stft_distance(reference[None], estimate[None])[0])


class SISDR(_PerClipMean):
    """Scale-invariant signal-to-distortion ratio in dB."""

    name: ClassVar[str] = "si-sdr"
    higher_is_better: ClassVar[bool | None] = True

    def score(self, reference, estimate, sample_rate):
        return float(si_sdr(reference[None], estimate[None])[0])


def _resampled(wave: torch.Tensor, rate: int, target: int) -> torch.Tensor:
    if rate == target:
        return wave
    import torchaudio

    return torchaudio.functional.resample(wave, rate, target)


class PESQ(_PerClipMean):
    """PESQ (ITU-T P.862.2 wide band, or P.862 narrow band) from the ``pesq`` package.

    Args:
        mode: ``wb`` (16 kHz) or ``nb`` (8 kHz).
    """

    name: ClassVar[str] = "pesq"
    higher_is_better: ClassVar[bool | None] = True

    def __init__(self, mode: str = "wb") -> None:
        super().__init__()
        if mode not in ("wb", "nb"):
            raise ZooError(f"pesq: mode must be 'wb' (16 kHz) or 'nb' (8 kHz), got {mode!r}")
        try:
            import pesq  # noqa: F401
        except ImportError:
            raise ZooError("pesq needs the `pesq` package: pip install 'zoo[audio]'") from None
        self.mode = mode

    def score(self, reference, estimate, sample_rate):
        from pesq import PesqError, pesq

        if not reference.abs().max() > 0:
            return None  # a silent reference has no utterance to score
        rate = 16_000 if self.mode == "wb" else 8_000
        ref = _resampled(reference, sample_rate, rate).double().numpy()
        est = _resampled(estimate, sample_rate, rate).double().numpy()
        try:
            return float(pesq(rate, ref, est, self.mode))
        except PesqError:  # too short, or no utterance found in the reference
            return None


class STOI(_PerClipMean):
    """Short-time objective intelligibility (Taal et al. 2011) from ``pystoi``."""

    name: ClassVar[str] = "stoi"
    higher_is_better: ClassVar[bool | None] = True
    extended: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        try:
            import pystoi  # noqa: F401
        except ImportError:
            raise ZooError(f"{self.name} needs the `pystoi` package: pip install 'zoo[audio]'") from None

    def score(self, reference, estimate, sample_rate):
        from pystoi import stoi

        if not reference.abs().max() > 0:
            return None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = stoi(reference.double().numpy(), estimate.double().numpy(), sample_rate, extended=self.extended)
        if any("Not enough STFT frames" in str(w.message) for w in caught):
            return None  # pystoi returns 1e-5 for a clip under 30 frames of speech
        return float(value)


class ESTOI(STOI):
    """Extended STOI (Jensen & Taal 2016), which also scores modulated noise, from ``pystoi``."""

    name: ClassVar[str] = "estoi"
    extended: ClassVar[bool] = True


class Bitrate(Metric):
    """Measured tokens per second and kilobits per second (``log2(vocab_size)`` bits per token)."""

    name: ClassVar[str] = "bitrate"
    higher_is_better: ClassVar[bool | None] = None
    directions: ClassVar[dict[str, bool | None]] = {"kbps": None, "tokens_per_s": None}
    modalities: ClassVar[tuple[str, ...]] = ("audio",)

    def __init__(self) -> None:
        super().__init__()
        self.add_state("tokens", torch.zeros((), dtype=torch.float64))
        self.add_state("seconds", torch.zeros((), dtype=torch.float64))
        self.bits_per_token = math.nan

    def setup(self, tokenizer, data_key: str | None = None) -> None:
        self.bits_per_token = math.log2(int(tokenizer.vocab_size))

    def update(self, ctx: EvalContext) -> None:
        if math.isnan(self.bits_per_token):
            self.setup(ctx.tokenizer)
        encoded = ctx.encoded
        levels = encoded.ids.shape[2] if encoded.ids.ndim == 3 else 1
        lengths = ctx.batch.get("audio_lengths")
        samples = ctx.inputs.shape[0] * ctx.inputs.shape[1] if lengths is None else int(torch.as_tensor(lengths).sum())
        self.tokens = self.tokens + float(encoded.lengths.sum()) * levels
        self.seconds = self.seconds + samples / int(ctx.tokenizer.sample_rate)

    def compute(self) -> dict[str, float]:
        if float(self.seconds) == 0:
            raise ZooError("bitrate: no audio was seen")
        per_second = float(self.tokens / self.seconds)
        return {"kbps": per_second * self.bits_per_token / 1000, "tokens_per_s": per_second}


__all__ = ["ESTOI", "PESQ", "SISDR", "STOI", "Bitrate", "MelDistance", "STFTDistance", "clip_pairs", "complex_stft",
           "mel_distance", "mel_magnitude", "si_sdr", "stft_distance", "stft_magnitude"]
