"""``imagefolder:PATH``: ImageNet-val-like folders, shorter-side resize + centre crop, size from the candidate."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from tests.reference_tokenizers import PixelQuantizer
from zoo.data import load_dataset
from zoo.data.images import ImageFiles
from zoo.errors import ZooError
from zoo.io import write_image


def _gradient(height: int, width: int) -> torch.Tensor:
    """A smooth picture whose rows and columns differ, so a wrong crop offset shows."""
    ys = torch.linspace(0, 1, height).view(height, 1).expand(height, width)
    xs = torch.linspace(0, 1, width).view(1, width).expand(height, width)
    return torch.stack([ys, xs, (ys + xs) / 2])


@pytest.fixture
def folder(tmp_path):
    """Flat like ImageNet val as shipped (``ILSVRC2012_val_*.JPEG``) plus one class folder, mixed sizes."""
    root = tmp_path / "val"
    (root / "n01440764").mkdir(parents=True)
    write_image(root / "ILSVRC2012_val_00000001.png", _gradient(40, 60))  # landscape
    write_image(root / "ILSVRC2012_val_00000002.png", _gradient(72, 48))  # portrait
    write_image(root / "n01440764" / "a.png", _gradient(32, 32))
    (root / "notes.txt").write_text("not an image")
    return root


def test_shorter_side_resize_then_centre_crop(folder):
    data = load_dataset(f"imagefolder:{folder},size=24")
    assert isinstance(data, ImageFiles) and len(data) == 3
    by_name = {path.name: data[i]["image"] for i, path in enumerate(data.files)}
    assert all(image.shape == (3, 24, 24) for image in by_name.values())
    # 40x60 -> shorter side 24 gives 24x36; the centre crop drops 6 columns on each side.
    source = _gradient(40, 60)
    source = torch.round(source * 255) / 255  # as written to the 8-bit PNG
    resized = F.interpolate(source[None], size=(24, 36), mode="bicubic", antialias=True)[0].clamp(0, 1)
    torch.testing.assert_close(by_name["ILSVRC2012_val_00000001.png"], resized[:, :, 6:30], atol=1e-5, rtol=0)


def test_size_auto_is_the_default_and_needs_a_tokenizer(folder):
    with pytest.raises(ZooError, match="size=auto .* pass size=N"):
        load_dataset(f"imagefolder:{folder}")
    native = load_dataset(f"imagefolder:{folder},size=none,limit=1")  # size=none: the files' own size
    assert native[0]["image"].shape[0] == 3
    assert load_dataset(f"image-folder:{folder},size=16")[0]["image"].shape == (3, 16, 16)  # the same reader


def test_limit_is_a_seeded_subset(folder):
    first = load_dataset(f"imagefolder:{folder},size=16,limit=2,seed=3").files
    assert first == load_dataset(f"imagefolder:{folder},size=16,limit=2,seed=3").files
    assert len(first) == 2


def test_fingerprint_follows_the_bytes_not_the_location(folder, tmp_path):
    copy = tmp_path / "elsewhere"
    shutil.copytree(folder, copy)
    a, b = load_dataset(f"imagefolder:{folder},size=16"), load_dataset(f"imagefolder:{copy},size=16")
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint(2) != a.fingerprint()
    assert load_dataset(f"imagefolder:{folder},size=24").fingerprint() != a.fingerprint()
    write_image(copy / "n01440764" / "a.png", _gradient(32, 33))
    assert load_dataset(f"imagefolder:{copy},size=16").fingerprint() != a.fingerprint()


def test_runner_gives_each_candidate_its_own_size(folder):
    from zoo.evaluate import run_suite
    from zoo.evaluate.runner import load_suite_data
    from zoo.evaluate.suite import parse_suite

    suite = {"name": "own-size", "data": f"imagefolder:{folder}", "batch_size": 2, "examples": 2,
             "metrics": ["psnr"]}  # fmt: skip
    results = run_suite(suite, ["vq-fmnist", "vq-f8", PixelQuantizer(factor=4)], progress=False)
    assert results["data"]["sizes"] == {"vq-fmnist": 32, "vq-f8": 64, "PixelQuantizer": None}
    assert "evaluated at 32x32 (the entry's inputs.size)" in results["notes"]["vq-fmnist"]
    assert set(results["results"]) == {"vq-fmnist", "vq-f8"}
    assert any("has none; give the spec size=N" in n for n in results["notes"]["PixelQuantizer"])
    assert all(0 < results["results"][label]["psnr"] < 100 for label in ("vq-fmnist", "vq-f8"))
    # Reference statistics are keyed by the folder's contents and the size, not by its path.
    parsed = parse_suite({**suite, "data": f"imagefolder:{folder},size=32"})
    key = load_suite_data(parsed).key
    assert '"content_sha256"' in key and str(folder) not in key
