"""PSNR and SSIM against scikit-image on fixtures; the metrics' streaming state on a real tokenizer."""

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tests.reference_tokenizers import PixelQuantizer
from zoo.data import load_dataset
from zoo.errors import ZooError
from zoo.metrics import build_metric
from zoo.metrics.base import EvalContext
from zoo.metrics.image import psnr, ssim


def fixtures() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, original, distorted) pairs of [B, 3, H, W] float64 images in [0, 1]."""
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(3, 3, 23, 37, generator=g, dtype=torch.float64)
    photos = load_dataset("photos", split="test", size=48, limit=4)
    real = torch.stack([photos[i]["image"] for i in range(4)]).double()
    noisy_real = (real + 0.08 * torch.randn(real.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    quantised = PixelQuantizer(factor=4, levels=8).decode(PixelQuantizer(factor=4, levels=8).encode(real.float()))
    grey = real[:, :1].expand(-1, 3, -1, -1)
    return [
        ("noise-vs-noise", noise, torch.rand(3, 3, 23, 37, generator=g, dtype=torch.float64)),
        ("photo-vs-noisy", real, noisy_real),
        ("photo-vs-quantised", real, quantised.double()),
        ("grey-vs-blurred", grey, torch.nn.functional.avg_pool2d(grey, 3, 1, 1, count_include_pad=False)),
    ]


@pytest.mark.parametrize("name,original,distorted", fixtures(), ids=lambda v: v if isinstance(v, str) else "")
def test_ssim_matches_scikit_image(name, original, distorted):
    ours = ssim(original, distorted)
    reference = [
        structural_similarity(
            a.numpy(),
            b.numpy(),
            data_range=1.0,
            channel_axis=0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )  # fmt: skip
        for a, b in zip(original, distorted)
    ]
    np.testing.assert_allclose(ours.numpy(), reference, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,original,distorted", fixtures(), ids=lambda v: v if isinstance(v, str) else "")
def test_psnr_matches_scikit_image(name, original, distorted):
    reference = [peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=1.0) for a, b in zip(original, distorted)]
    np.testing.assert_allclose(psnr(original, distorted).numpy(), reference, rtol=1e-10)


def test_identical_images_score_the_caps():
    x = torch.rand(2, 3, 16, 16)
    assert psnr(x, x).tolist() == [100.0, 100.0]
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))


def test_ssim_refuses_images_smaller_than_its_window():
    with pytest.raises(ZooError, match="at least 11x11"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_metrics_average_per_image_values_over_batches():
    tokenizer = PixelQuantizer(factor=4, levels=4)
    images = torch.rand(10, 3, 16, 16)
    metrics = {name: build_metric(name) for name in ("psnr", "ssim")}
    for batch in images.split(3):  # uneven batches
        ctx = EvalContext(tokenizer, {"image": batch})
        for metric in metrics.values():
            metric.update(ctx)
    reconstruction = tokenizer.decode(tokenizer.encode(images))
    assert metrics["psnr"].compute() == pytest.approx(psnr(images, reconstruction).mean().item(), rel=1e-9)
    assert metrics["ssim"].compute() == pytest.approx(ssim(images, reconstruction).mean().item(), rel=1e-9)
    assert metrics["psnr"].higher_is_better and metrics["ssim"].higher_is_better and metrics["psnr"].needs_decoder


def test_state_of_shards_merges_to_the_whole():
    tokenizer = PixelQuantizer(factor=2, levels=4)
    images = torch.rand(8, 3, 12, 12)
    whole, first, second = build_metric("psnr"), build_metric("psnr"), build_metric("psnr")
    whole.update(EvalContext(tokenizer, {"image": images}))
    first.update(EvalContext(tokenizer, {"image": images[:5]}))
    second.update(EvalContext(tokenizer, {"image": images[5:]}))
    first.merge_state(second)
    assert first.compute() == pytest.approx(whole.compute(), rel=1e-12)
    first.reset()
    assert float(first.count) == 0
