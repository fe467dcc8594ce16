"""LPIPS through the lpips package: same numbers as lpips itself, never a download, one clear error offline."""

from __future__ import annotations

import warnings

import pytest
import torch

from zoo.errors import ZooError

lpips = pytest.importorskip("lpips")
torchvision = pytest.importorskip("torchvision")

from zoo.metrics.lpips_metric import LPIPS, build_lpips, default_backbone_path  # noqa: E402


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path / "torch-home"


def _random_alexnet(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.alexnet(weights=None)


def _images(seed: int, n: int = 3, size: int = 64) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_missing_backbone_is_one_error_naming_the_file_and_folder(empty_torch_home):
    metric = LPIPS()
    with pytest.raises(ZooError) as err:
        metric.score(_images(0), _images(1))
    message = str(err.value)
    expected = empty_torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert str(expected) in message and "does not download" in message
    assert "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in message
    assert not expected.parent.exists()  # nothing was fetched or created
    assert default_backbone_path("vgg").name == "vgg16-397923af.pth"


def test_values_equal_the_lpips_package_with_the_same_backbone(tmp_path, monkeypatch, empty_torch_home):
    trunk = _random_alexnet()
    weights = tmp_path / "alexnet-random.pth"  # no hash in the name: loaded, reported unchecked
    torch.save(trunk.state_dict(), weights)
    metric = LPIPS(backbone_weights=str(weights), batch_size=2)
    x, y = _images(0), _images(1)
    ours = metric.score(x, y)
    assert "no hash in its name" in metric.notes[0]

    # The reference: lpips building its own network, torchvision's "pretrained" AlexNet being the same tensors.
    monkeypatch.setattr(torchvision.models, "alexnet", lambda *args, **kwargs: trunk)
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore")
        reference = lpips.LPIPS(net="alex", verbose=False).eval()
    with torch.no_grad():
        expected = reference(x, y, normalize=True).flatten()
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)
    assert torch.all(metric.score(x, x).abs() < 1e-7)  # identical images: distance 0


def test_a_file_whose_hash_prefix_does_not_match_is_refused(empty_torch_home):
    path = default_backbone_path("alex")
    path.parent.mkdir(parents=True)
    torch.save(_random_alexnet().state_dict(), path)
    with pytest.raises(ZooError, match="sha256 prefix 7be5be79"):
        build_lpips("alex")


def test_options_are_checked():
    with pytest.raises(ZooError, match="net must be one of"):
        LPIPS(net="squeezenet")
    with pytest.raises(ZooError, match="batch_size"):
        LPIPS(batch_size=0)


@pytest.mark.skipif(not default_backbone_path("alex").is_file(),
                    reason=f"torchvision's AlexNet weights are not at {default_backbone_path('alex')} "
                           "(zoo never downloads them; see docs/evaluation.md)")  # fmt: skip
def test_real_weights_rank_a_blur_above_a_tiny_shift():
    x = _images(3, n=2, size=64)
    blurred = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    metric = LPIPS()
    assert float(metric.score(x, x).abs().max()) < 1e-6
    assert "sha256 prefix 7be5be79 checked" in metric.notes[0]
    assert float(metric.score(x, blurred).mean()) > float(metric.score(x, (x + 0.01).clamp(0, 1)).mean())

