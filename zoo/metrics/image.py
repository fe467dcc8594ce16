"""Image reconstruction metrics: PSNR, SSIM and rFID.

All compare ``x`` with ``decode(encode(x))``, both clamped to ``[0, 1]`` (data range 1), and average
per-image values over the set.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F

from zoo.errors import ZooError
from zoo.metrics.base import EvalContext, Metric
from zoo.metrics.fid import FrechetMetric


def reconstruction_pair(ctx: EvalContext) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, decode(encode(x)))`` clamped to [0, 1], float; an error when decode returned another shape."""
    original = ctx.inputs.float().clamp(0, 1)
    reconstruction = ctx.reconstruction
    if not isinstance(reconstruction, torch.Tensor) or reconstruction.shape != original.shape:
        got = list(reconstruction.shape) if isinstance(reconstruction, torch.Tensor) else type(reconstruction).__name__
        raise ZooError(f"{type(ctx.tokenizer).__name__}.decode returned {got}, expected {list(original.shape)}")
    return original, reconstruction.float().to(original.device).clamp(0, 1)


def psnr(original: torch.Tensor, reconstruction: torch.Tensor, max_db: float = 100.0) -> torch.Tensor:
    """Per-image PSNR ``10 log10(1 / MSE)`` in dB for images in [0, 1]; capped at ``max_db`` (identical images)."""
    mse = (original - reconstruction).pow(2).flatten(1).mean(1).double()  # [B]
    return (10 * torch.log10(1.0 / mse.clamp_min(10 ** (-max_db / 10)))).clamp_max(max_db)


def _gaussian_window(sigma: float, truncate: float, dtype, device) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()  # [2r+1]


def ssim(
    original: torch.Tensor, reconstruction: torch.Tensor, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03
) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004, https://doi.org/10.1109/TIP.2003.819861) for images in [0, 1].

    Gaussian-weighted local statistics (σ = 1.5, window 11 px), population covariances, averaged over
    the pixels whose window lies inside the image and over channels: the same numbers as
    ``skimage.metrics.structural_similarity(a, b, data_range=1, channel_axis=0, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False)``.
    """
    b, c, h, w = original.shape
    window = _gaussian_window(sigma, 3.5, torch.float64, original.device)
    size = window.numel()
    if h < size or w < size:
        raise ZooError(f"SSIM needs images of at least {size}x{size} pixels, got {h}x{w}")
    x = original.double().reshape(b * c, 1, h, w)
    y = reconstruction.double().reshape(b * c, 1, h, w)

    def blur(z: torch.Tensor) -> torch.Tensor:  # separable Gaussian, valid region only: [N, 1, h-2r, w-2r]
        z = F.conv2d(z, window.view(1, 1, size, 1))
        return F.conv2d(z, window.view(1, 1, 1, size))

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov_xy = blur(x * y) - mu_x * mu_y
    c1, c2 = k1**2, k2**2  # (K·L)² with data range L = 1
    index = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return index.reshape(b, c, -1).mean(-1).mean(-1)  # [B]


class _PerImageMean(Metric):
    """Mean over images of a per-image score; state: the sum and the count."""

    modalities: ClassVar[tuple[str, ...]] = ("image",)
    needs_decoder: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64))
        self.add_state("count", torch.zeros((), dtype=torch.float64))

    def score(self, original: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        raise ZooError(f"{type(self).__name__} does not define score()")

    def update(self, ctx: EvalContext) -> None:
        values = self.score(*reconstruction_pair(ctx)).double().cpu()
        self.total = self.total + values.sum()
        self.count = self.count + values.numel()

    def compute(self) -> float:
        if float(self.count) == 0:
            return math.nan
        return float(self.total / self.count)


class PSNR(_PerImageMean):
    """Peak signal-to-noise ratio in dB (mean over images of ``10 log10(1 / MSE)``, capped at 100 dB)."""

    name: ClassVar[str] = "psnr"
    higher_is_better: ClassVar[bool | None] = True

    def score(self, original, reconstruction):
        return psnr(original, reconstruction)


class SSIM(_PerImageMean):
    """Structural similarity, mean over images (Gaussian window σ = 1.5, K1 = 0.01, K2 = 0.03)."""

    name: ClassVar[str] = "ssim"
    higher_is_better: ClassVar[bool | None] = True

    def __init__(self, sigma: float = 1.5) -> None:
        super().__init__()
        self.sigma = sigma

    def score(self, original, reconstruction):
        return ssim(original, reconstruction, sigma=self.sigma)


class RFID(FrechetMetric):
    """Reconstruction FID: Fréchet distance between features of the originals and of ``decode(encode(x))``."""

    name: ClassVar[str] = "rfid"
    needs_decoder: ClassVar[bool] = True

    def candidate_images(self, ctx: EvalContext) -> torch.Tensor:
        return reconstruction_pair(ctx)[1]
