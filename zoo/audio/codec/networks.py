"""The codec's convolutional encoder and decoder, in the style of SEANet / DAC.

    audio [B, 1, T] -> Conv(7) -> [ResidualUnit x len(dilations) -> act -> Conv(2s, stride s)] per stride s
                    -> act -> Conv(3) -> latent [B, latent_dim, T / hop]           (hop = prod(strides))
    latent -> Conv(7) -> [act -> ConvTranspose(2s, stride s) -> ResidualUnit x len(dilations)] per stride
           -> act -> Conv(7) -> tanh -> audio [B, 1, T]

Every convolution is weight-normalised (https://arxiv.org/abs/1602.07868), as in MelGAN, EnCodec and
DAC. The activation is DAC's Snake, ``x + sin^2(alpha x) / alpha`` with a learned ``alpha`` per channel
(Ziyin et al., https://arxiv.org/abs/2006.08195; DAC, https://arxiv.org/abs/2306.06546, section 3.1),
which suits periodic signals, or SEANet's ELU (EnCodec, https://arxiv.org/abs/2210.13438).
The encoder doubles its width at each downsampling; the decoder halves its width at each upsampling.
Every padding keeps lengths exact: ``T`` a multiple of ``hop`` gives ``T / hop`` frames and back.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from zoo.errors import ZooError

ACTIVATIONS = ("snake", "elu")


class Snake(nn.Module):
    """``x + sin^2(alpha x) / alpha`` per channel, ``alpha`` learned (initialised to 1); input ``[B, C, T]``."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.sin(self.alpha * x).pow(2) / (self.alpha + 1e-9)


def activation(kind: str, channels: int) -> nn.Module:
    if kind == "snake":
        return Snake(channels)
    if kind == "elu":
        return nn.ELU()
    raise ZooError(f"codec: activation must be one of {ACTIVATIONS}, got {kind!r}")


def conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, dilation: int = 1,
         padding: int | None = None) -> nn.Conv1d:
    """A weight-normalised Conv1d; by default padded so that stride 1 keeps the length."""
    padding = (kernel - 1) * dilation // 2 if padding is None else padding
    return weight_norm(nn.Conv1d(in_channels, out_channels, kernel, stride=stride, dilation=dilation,
                                 padding=padding))


class ResidualUnit(nn.Module):
    """``x + Conv1(act(Conv7_dilated(act(x))))``: one dilated residual unit of SEANet / DAC."""

    def __init__(self, channels: int, dilation: int, kind: str):
        super().__init__()
        self.block = nn.Sequential(
            activation(kind, channels), conv(channels, channels, 7, dilation=dilation),
            activation(kind, channels), conv(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def checked_strides(strides) -> list[int]:
    strides = [int(s) for s in strides]
    if not strides or any(s < 1 for s in strides):
        raise ZooError(f"codec: strides must be a non-empty list of positive integers, got {strides}")
    return strides


class Encoder(nn.Module):
    """audio ``[B, 1, T]`` -> latent ``[B, latent_dim, T / prod(strides)]``."""

    def __init__(self, channels: int, strides: list[int], dilations: list[int], latent_dim: int, kind: str):
        super().__init__()
        layers: list[nn.Module] = [conv(1, channels, 7)]
        width = channels
        for stride in checked_strides(strides):
            layers += [ResidualUnit(width, d, kind) for d in dilations]
            layers += [activation(kind, width),
                       conv(width, 2 * width, 2 * stride, stride=stride, padding=math.ceil(stride / 2))]
            width *= 2
        layers += [activation(kind, width), conv(width, latent_dim, 3)]
        self.net = nn.Sequential(*layers)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.net(audio)


class Decoder(nn.Module):
    """latent ``[B, latent_dim, N]`` -> audio ``[B, 1, N * prod(strides)]`` in ``(-1, 1)``."""

    def __init__(self, channels: int, strides: list[int], dilations: list[int], latent_dim: int, kind: str):
        super().__init__()
        strides = checked_strides(strides)
        if channels % 2 ** len(strides):
            raise ZooError(f"codec: decoder_channels ({channels}) must be divisible by 2^{len(strides)} "
                           f"(it halves at each of the {len(strides)} upsamplings)")
        layers: list[nn.Module] = [conv(latent_dim, channels, 7)]
        width = channels
        for stride in reversed(strides):
            up = weight_norm(nn.ConvTranspose1d(width, width // 2, 2 * stride, stride=stride,
                                                padding=math.ceil(stride / 2), output_padding=stride % 2))
            layers += [activation(kind, width), up]
            width //= 2
            layers += [ResidualUnit(width, d, kind) for d in dilations]
        layers += [activation(kind, width), conv(width, 1, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.net(latent)
