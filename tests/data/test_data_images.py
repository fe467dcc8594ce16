"""Built-in image sets: shapes, ranges, splits fixed by seed and disjoint, photos split by source; user folders."""

import numpy as np
import pytest
import torch

from zoo.data import collate, load_dataset
from zoo.data import images as image_data
from zoo.errors import ZooError
from zoo.io import write_image


def check_item(item: dict, size: int) -> None:
    image = item["image"]
    assert image.shape == (3, size, size) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert isinstance(item["label"], int)


def test_fashion_mnist_splits():
    test = load_dataset("fashion-mnist:split=test,limit=50")
    check_item(test[0], 28)
    assert torch.equal(test[0]["image"][0], test[0]["image"][2])  # grey repeated to 3 channels
    resized = load_dataset("fashion-mnist", split="val", size=32, limit=4)
    check_item(resized[3], 32)
    train, val = image_data.fashion_mnist("train", seed=3), image_data.fashion_mnist("val", seed=3)
    assert len(train) == 55_000 and len(val) == 5_000 and len(image_data.fashion_mnist("test")) == 10_000
    # val is held out of the train file: no image of val appears in train (compare raw bytes).
    train_bytes = {bytes(p) for p in train.pixels.reshape(len(train), -1)}
    overlap = sum(bytes(p) in train_bytes for p in val.pixels.reshape(len(val), -1))
    assert overlap == 0
    again = image_data.fashion_mnist("val", seed=3, limit=20)
    assert np.array_equal(again.pixels, val.pixels[:20])  # fixed by seed, limit keeps a prefix
    assert not np.array_equal(image_data.fashion_mnist("val", seed=4, limit=20).pixels, again.pixels)


def test_fashion_mnist_missing_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(image_data, "FASHION_MNIST_DIR", tmp_path)
    image_data._read_idx.cache_clear()
    try:
        with pytest.raises(ZooError, match="apt-get install dataset-fashion-mnist"):
            image_data.fashion_mnist("test")
    finally:
        image_data._read_idx.cache_clear()


def test_photos_are_split_by_source_photo():
    splits = image_data.split_photo_sources(seed=0)
    sources = set(splits["train"]) | set(splits["val"]) | set(splits["test"])
    assert len(sources) == len(image_data.PHOTO_FILES) == 18
    assert not set(splits["train"]) & set(splits["test"]) and not set(splits["val"]) & set(splits["test"])
    photos = image_data._photo_sources()
    for split in ("val", "test"):  # every held-out split mixes colour and grey photos
        assert {photos[i][1].ndim for i in splits[split]} == {2, 3}
    test = load_dataset("photos:split=test,size=48")
    check_item(test[0], 48)
    assert {item["label"] for item in (test[i] for i in range(len(test)))} <= set(splits["test"])
    assert len(load_dataset("photos:split=train")) > 1000  # thousands of crops across scales
    assert image_data.split_photo_sources(seed=1) != splits


def test_digits():
    data = load_dataset("digits:split=val,size=16")
    check_item(data[0], 16)
    sizes = [len(image_data.digits(split)) for split in ("train", "val", "test")]
    assert sum(sizes) == 1797 and sizes[1] == sizes[2] == 270


def test_image_folder(tmp_path):
    for cls, count in (("cats", 3), ("dogs", 2)):
        (tmp_path / cls).mkdir()
        for i in range(count):
            write_image(tmp_path / cls / f"{i}.png", torch.rand(3, 20, 30))
    write_image(tmp_path / "cats" / "big.png", torch.rand(3, 40, 40))
    data = load_dataset(f"image-folder:{tmp_path},size=16")
    assert data.classes == ["cats", "dogs"] and len(data) == 6
    assert sorted(data.labels) == [0, 0, 0, 0, 1, 1]
    batch = collate([data[i] for i in range(len(data))])
    assert batch["image"].shape == (6, 3, 16, 16)
    parts = [image_data.image_folder(str(tmp_path), split=s, val_fraction=0.2, test_fraction=0.2).files
             for s in ("train", "val", "test")]  # fmt: skip
    assert sorted(sum(parts, [])) == sorted(data.files)  # the splits partition the folder
    native = image_data.image_folder(str(tmp_path))
    with pytest.raises(ZooError, match="pass size=N"):
        [native[i] for i in range(len(native))]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZooError, match="no image files"):
        load_dataset(f"image-folder:{tmp_path / 'empty'}")
    with pytest.raises(ZooError, match="is not a folder"):
        load_dataset(f"image-folder:{tmp_path / 'missing'}")


def test_bad_options_are_clear():
    with pytest.raises(ZooError, match="split must be one of"):
        load_dataset("photos:split=dev")
    with pytest.raises(ZooError, match="size must be a positive integer"):
        load_dataset("digits:size=0")
