"""The codec's training objective: spectral reconstruction terms, commitment and the GAN terms' weights.

    loss = mel * mel_distance(x, x')                          (DAC's multi-scale log-mel L1, 7 scales)
         + stft * multi_resolution_stft(x, x')               (Parallel WaveGAN's spectral convergence + log |STFT|)
         + waveform * |x - x'|                               (EnCodec's time-domain L1)
         + commitment * sum over levels |z - sg(q)|^2        (rvq only; FSQ has none)
         + adversarial * LSGAN_G(D(x')) + feature * FM(D(x), D(x'))      (from gan_start on, with a discriminator)

Defaults are DAC's weights (https://arxiv.org/abs/2306.06546: mel 15, feature matching 2, adversarial 1,
commitment 0.25) with no time-domain or STFT term. The mel and STFT distances are the same functions the
evaluation reports (``zoo.metrics.audio_recon``), so a training curve and a leaderboard speak of one thing.
"""

from __future__ import annotations

from typing import Any

import torch

from zoo.errors import ZooError
from zoo.metrics.audio_recon import mel_distance, stft_magnitude

LOSS_DEFAULTS: dict[str, Any] = {
    "mel": 15.0,
    "stft": 0.0,
    "waveform": 0.0,
    "commitment": 0.25,
    "adversarial": 1.0,
    "feature": 2.0,
    "gan_start": 0,
}
DISCRIMINATOR_DEFAULTS: dict[str, Any] = {"periods": [2, 3, 5, 7, 11], "stft_windows": [2048, 1024, 512],
                                          "channels": 16}
MR_STFT_WINDOWS = (512, 1024, 2048)


def checked_options(name: str, config: dict | None, defaults: dict) -> dict:
    """``config`` over ``defaults``; an option the defaults lack is an error (a typo would otherwise do nothing)."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ZooError(f"codec {name}: unknown option(s) {unknown}; expected some of {sorted(defaults)}")
    options = {**defaults, **config}
    negative = sorted(k for k, v in options.items() if isinstance(v, (int, float)) and v < 0)
    if negative:
        raise ZooError(f"codec {name}: option(s) {negative} must be >= 0, got {[options[k] for k in negative]}")
    return options


def multi_resolution_stft_loss(reference: torch.Tensor, estimate: torch.Tensor,
                               windows: tuple[int, ...] = MR_STFT_WINDOWS) -> torch.Tensor:
    """Spectral convergence ``||X| - |Y||_F / ||X||_F`` plus mean ``|log |X| - log |Y||``, averaged over windows.

    Yamamoto et al., Parallel WaveGAN (https://arxiv.org/abs/1910.11480), eq. 4-6; hop = window / 4.
    """
    total = reference.new_zeros((), dtype=torch.float32)
    for window in windows:
        ref, est = stft_magnitude(reference, window), stft_magnitude(estimate, window)
        convergence = (ref - est).norm(dim=(1, 2)) / ref.norm(dim=(1, 2)).clamp_min(1e-7)
        log_magnitude = (ref.clamp_min(1e-7).log() - est.clamp_min(1e-7).log()).abs().mean(dim=(1, 2))
        total = total + (convergence + log_magnitude).mean()
    return total / len(windows)


def reconstruction_losses(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int,
                          weights: dict) -> dict[str, torch.Tensor]:
    """The unweighted reconstruction terms whose weight is not zero (``mel`` always, it is what is reported)."""
    losses = {"mel": mel_distance(reference, estimate, sample_rate).mean()}
    if weights["stft"] > 0:
        losses["stft"] = multi_resolution_stft_loss(reference, estimate)
    if weights["waveform"] > 0:
        losses["waveform"] = (reference - estimate).abs().mean()
    return losses
