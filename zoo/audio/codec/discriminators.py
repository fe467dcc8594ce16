"""The codec's discriminators, their adversarial losses and feature matching.

* Multi-period discriminator (HiFi-GAN, https://arxiv.org/abs/2010.05646, section 2.2): for each period
  ``p`` the waveform ``[B, T]`` is folded to ``[B, 1, T / p, p]`` and 2-D convolutions with ``(k, 1)`` kernels
  look at every ``p``-th sample, so each sub-discriminator sees one periodic structure.
* Multi-scale STFT discriminator (EnCodec, https://arxiv.org/abs/2210.13438, section 3.4): for each window
  the complex STFT (real and imaginary parts as two channels, ``[B, 2, frames, bins]``) goes through 2-D
  convolutions dilated in time and strided in frequency.

Every convolution is weight-normalised, activations are leaky ReLUs, and each sub-discriminator returns
``(logits, features)``: its last map and the maps before it, which feature matching compares.

Losses: least squares (LSGAN, https://arxiv.org/abs/1611.04076; as HiFi-GAN and DAC),
``D: (1 - D(x))^2 + D(G(z))^2`` and ``G: (1 - D(G(z)))^2``, averaged over sub-discriminators; feature
matching is EnCodec's relative L1, ``|f(x) - f(G(z))| / |f(x)|`` averaged over every feature map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from zoo.metrics.audio_recon import complex_stft

Output = list[tuple[torch.Tensor, list[torch.Tensor]]]  # per sub-discriminator: (logits, feature maps)


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN's sub-discriminator for one period: ``[B, T]`` -> logits ``[B, 1, T', p]`` and features."""

    def __init__(self, period: int, channels: int):
        super().__init__()
        self.period = period
        widths = [1, channels, 2 * channels, 4 * channels, 8 * channels]  # HiFi-GAN: 32, 128, 512, 1024
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(a, b, (5, 1), stride=(3, 1), padding=(2, 0))) for a, b in zip(widths, widths[1:])
        )
        self.convs.append(weight_norm(nn.Conv2d(widths[-1], widths[-1], (5, 1), padding=(2, 0))))
        self.out = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        remainder = audio.shape[-1] % self.period
        if remainder:  # pad to whole periods
            pad = self.period - remainder
            audio = F.pad(audio, (0, pad), mode="reflect" if audio.shape[-1] > pad else "constant")
        x = rearrange(audio, "b (t p) -> b 1 t p", p=self.period)
        features = []
        for layer in self.convs:
            x = F.leaky_relu(layer(x), 0.1)
            features.append(x)
        return self.out(x), features


class STFTDiscriminator(nn.Module):
    """EnCodec's sub-discriminator for one STFT window: ``[B, T]`` -> logits ``[B, 1, frames, bins']`` and features."""

    def __init__(self, window: int, channels: int, dilations: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
        self.window = window
        layers = [weight_norm(nn.Conv2d(2, channels, (3, 9), padding=(1, 4)))]
        for dilation in dilations:
            layers.append(weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(dilation, 1),
                                                padding=(dilation, 4))))
        layers.append(weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(layers)
        self.out = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        """Complex STFT as ``[B, 2, frames, bins]`` (the framing of the reconstruction losses)."""
        return rearrange(torch.view_as_real(complex_stft(audio, self.window)), "b f t c -> b c t f")

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.spectrogram(audio)
        features = []
        for layer in self.convs:
            x = F.leaky_relu(layer(x), 0.2)
            features.append(x)
        return self.out(x), features


class CodecDiscriminator(nn.Module):
    """Multi-period + multi-scale STFT discriminators side by side; ``forward(audio [B, T])`` -> ``Output``."""

    def __init__(self, periods: list[int], stft_windows: list[int], channels: int = 16):
        super().__init__()
        self.periods = nn.ModuleList(PeriodDiscriminator(int(p), channels) for p in periods)
        self.stfts = nn.ModuleList(STFTDiscriminator(int(w), channels) for w in stft_windows)

    def forward(self, audio: torch.Tensor) -> Output:
        return [d(audio) for d in [*self.periods, *self.stfts]]


def discriminator_loss(real: Output, fake: Output) -> torch.Tensor:
    """LSGAN: mean over sub-discriminators of ``E[(1 - D(x))^2] + E[D(G(z))^2]``."""
    terms = [(1 - r).pow(2).mean() + f.pow(2).mean() for (r, _), (f, _) in zip(real, fake, strict=True)]
    return torch.stack(terms).mean()


def generator_loss(fake: Output) -> torch.Tensor:
    """LSGAN: mean over sub-discriminators of ``E[(1 - D(G(z)))^2]``."""
    return torch.stack([(1 - logits).pow(2).mean() for logits, _ in fake]).mean()


def feature_matching_loss(real: Output, fake: Output) -> torch.Tensor:
    """Relative L1 between the real (fixed) and fake feature maps, averaged over every map."""
    terms = []
    for (_, real_maps), (_, fake_maps) in zip(real, fake, strict=True):
        for r, f in zip(real_maps, fake_maps, strict=True):
            r = r.detach()
            terms.append((r - f).abs().mean() / (r.abs().mean() + 1e-8))
    return torch.stack(terms).mean()
