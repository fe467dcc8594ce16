"""Built-in image sets that work offline, and user image folders.

Every builder returns a ``torch`` dataset of ``{"image": float [3, H, W] in [0, 1], "label": int}``;
grey images are repeated to 3 channels. ``split`` is ``train`` / ``val`` / ``test`` (``all`` for a
folder), fixed by ``seed``; each split is shuffled by the seed, so ``limit=N`` keeps a random
subset of N items and the same N on every run.

=================  ===============================================================================
``fashion-mnist``  60k train + 10k test, 28x28 grey, 10 classes (``apt-get install
                   dataset-fashion-mnist``). ``val`` is 5,000 items held out of the train file.
``photos``         crops at several scales of the scikit-image sample photos bundled in its wheel
                   (no download); split **by source image**, so no test crop shares a photo with
                   a train crop. ``label`` is the source image.
``digits``         scikit-learn's 1,797 8x8 digits, for tiny tests.
``image-folder``   a user tree ``ROOT/[CLASS/]*.png``; class subfolders give labels. ``size=N`` resizes
                   the shorter side to N (bicubic, antialiased) and centre-crops N x N.
``imagefolder``    the same folder reader, for evaluation at a tokenizer's own resolution: ``size``
                   defaults to ``auto``, which ``zoo eval`` replaces by each candidate's registry
                   ``inputs.size`` (ImageNet val, flat or in class folders, is such a tree).
=================  ===============================================================================
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from zoo.errors import ZooError

SPLITS = ("train", "val", "test")
AUTO_SIZE = "auto"  # ``size=auto``: the evaluated tokenizer's own input size, filled in by the eval runner
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)  # fmt: skip

# Photographs bundled in the scikit-image wheel (skimage.data.data_dir): loading them never downloads.
# Left out on purpose: synthetic pictures (chessboard, colorwheel, logo, horse silhouette, phantom),
# the 102-px microaneurysms, the right view of the motorcycle pair (same scene as the left), and every
# image that skimage fetches from the network (brain, cells3d, eagle, lily, skin, vortex).
PHOTO_FILES = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png", "coffee.png",
    "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png",
    "motorcycle_left.png", "page.png", "retina.jpg", "rocket.jpg", "text.png",
)  # fmt: skip


class ArrayImages(Dataset):
    """Images held as uint8 ``[N, H, W]`` (grey) or ``[N, H, W, 3]``, served as float ``[3, H, W]``."""

    def __init__(self, pixels: np.ndarray, labels: np.ndarray, size: int | None = None, classes=None):
        self.pixels, self.labels, self.size = pixels, labels, size
        self.classes = list(classes) if classes is not None else None

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        image = to_rgb_tensor(self.pixels[index])
        if self.size is not None:
            image = resize_square(image, self.size)
        return {"image": image, "label": int(self.labels[index])}


def to_rgb_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 ``[H, W]`` / ``[H, W, 3]`` -> float ``[3, H, W]`` in ``[0, 1]`` (grey repeated to 3 channels)."""
    image = torch.from_numpy(np.ascontiguousarray(pixels)).float().div_(255.0)
    if image.ndim == 2:
        return image.unsqueeze(0).expand(3, -1, -1).contiguous()
    return image.permute(2, 0, 1).contiguous()


def resize_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``[3, H, W]`` to ``[3, size, size]``: bicubic, antialiased when shrinking, clamped to [0, 1]."""
    if image.shape[-2:] == (size, size):
        return image
    out = F.interpolate(image[None], size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return out[0].clamp_(0.0, 1.0)


def _check_common(name: str, split: str, limit: int | None, size: int | None, splits=SPLITS) -> None:
    if split not in splits:
        raise ZooError(f"dataset {name!r}: split must be one of {splits}, got {split!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ZooError(f"dataset {name!r}: limit must be a non-negative integer, got {limit!r}")
    if size is not None and (not isinstance(size, int) or size < 1):
        raise ZooError(f"dataset {name!r}: size must be a positive integer (pixels), got {size!r}")


def _shuffled(count: int, seed: int, salt: int) -> np.ndarray:
    return np.random.default_rng([seed, salt]).permutation(count)


def _take(order: np.ndarray, limit: int | None) -> np.ndarray:
    return order if limit is None else order[:limit]


# -- Fashion-MNIST --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _read_idx(kind: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = {"train": "train", "test": "t10k"}[kind]
    images_path = FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz"
    for path in (images_path, labels_path):
        if not path.is_file():
            raise ZooError(
                f"dataset 'fashion-mnist': {path} is missing; install it with `apt-get install dataset-fashion-mnist`"
            )
    with gzip.open(images_path, "rb") as handle:
        images = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(labels_path, "rb") as handle:
        labels = np.frombuffer(handle.read(), np.uint8, offset=8).astype(np.int64)
    if len(images) != len(labels):
        raise ZooError(f"dataset 'fashion-mnist': {images_path} holds {len(images)} images but {len(labels)} labels")
    return images, labels


def fashion_mnist(
    split: str = "train", seed: int = 0, limit: int | None = None, size: int | None = None, val_size: int = 5000
) -> ArrayImages:
    """Fashion-MNIST: ``test`` is the official 10k test file; ``val`` is ``val_size`` items of the train
    file chosen by ``seed``; ``train`` is the rest. ``size`` resizes (bicubic), e.g. 32."""
    _check_common("fashion-mnist", split, limit, size)
    images, labels = _read_idx("test" if split == "test" else "train")
    if split == "test":
        chosen = _shuffled(len(images), seed, 2)
    else:
        held_out = _shuffled(len(images), seed, 0)
        chosen = held_out[:val_size] if split == "val" else held_out[val_size:]
        chosen = chosen[_shuffled(len(chosen), seed, 1)]
    chosen = _take(chosen, limit)
    return ArrayImages(images[chosen], labels[chosen], size=size, classes=FASHION_MNIST_CLASSES)


# -- scikit-learn digits --------------------------------------------------------------------------------


def digits(split: str = "train", seed: int = 0, limit: int | None = None, size: int | None = None) -> ArrayImages:
    """scikit-learn's 8x8 digits (values 0-16 scaled to [0, 1]); 70 / 15 / 15 % splits fixed by ``seed``."""
    from sklearn.datasets import load_digits

    _check_common("digits", split, limit, size)
    bunch = load_digits()
    pixels = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # [1797, 8, 8]
    order = _shuffled(len(pixels), seed, 0)
    n_val = n_test = round(0.15 * len(pixels))
    parts = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    chosen = _take(parts[split], limit)
    return ArrayImages(pixels[chosen], bunch.target[chosen].astype(np.int64), size=size, classes=range(10))


# -- scikit-image photos --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _photo_sources() -> tuple[tuple[str, np.ndarray], ...]:
    """The bundled photos as uint8 arrays (``[H, W]`` grey or ``[H, W, 3]``), read straight from the wheel."""
    from PIL import Image
    from skimage.data import data_dir

    sources = []
    for file_name in PHOTO_FILES:
        path = Path(data_dir) / file_name
        if not path.is_file():
            raise ZooError(
                f"dataset 'photos': {path} is missing from scikit-image; reinstall it (pip install scikit-image)"
            )
        with Image.open(path) as image:
            grey = image.mode in ("L", "I", "I;16", "1")
            pixels = np.asarray(image.convert("L" if grey else "RGB"), dtype=np.uint8)
        sources.append((Path(file_name).stem, pixels))
    return tuple(sources)


def split_photo_sources(seed: int, n_val: int = 3, n_test: int = 3) -> dict[str, list[int]]:
    """Assign whole source photos to splits, colour and grey photos shuffled apart so every split gets both."""
    sources = _photo_sources()
    colour = [i for i, (_, pixels) in enumerate(sources) if pixels.ndim == 3]
    grey = [i for i, (_, pixels) in enumerate(sources) if pixels.ndim == 2]
    rng = np.random.default_rng([seed, 7])
    colour, grey = list(rng.permutation(colour)), list(rng.permutation(grey))
    # Alternate colour / grey so each held-out split mixes both kinds.
    interleaved = [x for pair in zip(colour, grey) for x in pair] + colour[len(grey) :] + grey[len(colour) :]
    test, val, train = interleaved[:n_test], interleaved[n_test : n_test + n_val], interleaved[n_test + n_val :]
    return {"train": sorted(map(int, train)), "val": sorted(map(int, val)), "test": sorted(map(int, test))}


class PhotoCrops(Dataset):
    """Square crops of source photos: side ``size * scale`` on a grid with stride = side, resized to ``size``."""

    def __init__(self, sources, crops: list[tuple[int, int, int, int]], size: int, names: list[str]):
        self.sources, self.crops, self.size, self.classes = sources, crops, size, names

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        source, top, left, side = self.crops[index]
        pixels = self.sources[source][1][top : top + side, left : left + side]
        return {"image": resize_square(to_rgb_tensor(pixels), self.size), "label": source}


def photos(
    split: str = "train",
    seed: int = 0,
    limit: int | None = None,
    size: int = 64,
    scales: tuple | list = (1, 2, 4),
    min_std: float = 0.02,
) -> PhotoCrops:
    """Crops of the bundled scikit-image photos, split by source photo (see ``split_photo_sources``).

    Args:
        size: side of the returned crops in pixels.
        scales: crop sides as multiples of ``size`` (a crop of side ``4 * size`` is shrunk to ``size``).
        min_std: crops whose pixel standard deviation is below this (flat black borders) are dropped.
    """
    _check_common("photos", split, limit, size)
    if not scales or any(not isinstance(s, (int, float)) or s < 1 for s in scales):
        raise ZooError(f"dataset 'photos': scales must be numbers >= 1, got {scales!r}")
    sources = _photo_sources()
    crops = []
    for source in split_photo_sources(seed)[split]:
        pixels = sources[source][1]
        height, width = pixels.shape[:2]
        for scale in scales:
            side = int(round(size * scale))
            for top in range(0, height - side + 1, side):
                for left in range(0, width - side + 1, side):
                    patch = pixels[top : top + side, left : left + side]
                    if patch.std() / 255.0 >= min_std:
                        crops.append((source, top, left, side))
    order = _take(_shuffled(len(crops), seed, 3), limit)
    return PhotoCrops(sources, [crops[i] for i in order], size, [name for name, _ in sources])


# -- user folders --------------------------------------------------------------------------------------


class ImageFiles(Dataset):
    """Image files read on demand; ``size`` resizes the shorter side and centre-crops to a square."""

    def __init__(self, files: list[Path], labels: list[int], classes: list[str], size: int | None):
        self.files, self.labels, self.classes, self.size = files, labels, classes, size
        self._first_shape: tuple | None = None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        from zoo import io

        if not 0 <= index < len(self):
            raise IndexError(index)
        image = io.read_image(self.files[index])
        if self.size is not None:
            image = _centre_square(image, self.size)
        elif self._first_shape is None:
            self._first_shape = (self.files[index], tuple(image.shape))
        elif tuple(image.shape) != self._first_shape[1]:
            first, shape = self._first_shape
            raise ZooError(
                f"dataset 'image-folder': {self.files[index]} is {list(image.shape)} but {first} is {list(shape)}; "
                "images of different sizes cannot be batched: pass size=N to resize them"
            )
        return {"image": image, "label": self.labels[index]}

    def fingerprint(self, limit: int | None = None) -> str:
        """sha256 over the first ``limit`` files' relative names and bytes, in dataset order, plus ``size``.

        What FID reference statistics are cached under: editing, adding or renaming a file changes it, moving
        the folder does not. It reads every file's bytes once (cheaper than decoding them)."""
        digest = hashlib.sha256(json.dumps({"size": self.size, "items": len(self.files[:limit])}).encode())
        root = getattr(self, "root", None) or _common_root(self.files)
        for path in self.files[:limit]:
            digest.update(path.relative_to(root).as_posix().encode("utf-8", "surrogateescape") + b"\0")
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            digest.update(b"\0")
        return digest.hexdigest()


def _common_root(files: list[Path]) -> Path:
    return Path(os.path.commonpath([str(p.parent) for p in files])) if files else Path(".")


def _centre_square(image: torch.Tensor, size: int) -> torch.Tensor:
    height, width = image.shape[-2:]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    if (new_h, new_w) != (height, width):
        image = F.interpolate(image[None], size=(new_h, new_w), mode="bicubic", antialias=True)[0].clamp_(0, 1)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return image[:, top : top + size, left : left + size].contiguous()


def image_folder(
    path: str,
    split: str = "all",
    seed: int = 0,
    limit: int | None = None,
    size: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> ImageFiles:
    """Images under ``path``; each subfolder is a class (sorted names -> labels), loose files get label 0.

    ``split="all"`` keeps every file; ``train`` / ``val`` / ``test`` take seeded fractions of them. ``size=N``
    resizes the shorter side to N and centre-crops N x N; ``None`` keeps the files' own size (then they must
    all agree). Files are shuffled by ``seed``, so ``limit=N`` is a fixed random subset.
    """
    from zoo.io import IMAGE_SUFFIXES

    if size == AUTO_SIZE:
        raise ZooError(
            "dataset 'imagefolder': size=auto means the evaluated tokenizer's own input size, which `zoo eval` fills "
            "in from the entry's inputs.size; here no tokenizer says it: pass size=N (e.g. imagefolder:PATH,size=256)"
        )
    _check_common("image-folder", split, limit, size, splits=(*SPLITS, "all"))
    root = Path(str(path)).expanduser()
    if not root.is_dir():
        raise ZooError(f"dataset 'image-folder': {root} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ZooError(f"dataset 'image-folder': no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    classes = sorted({p.relative_to(root).parts[0] for p in files if len(p.relative_to(root).parts) > 1})
    labels = [classes.index(p.relative_to(root).parts[0]) if len(p.relative_to(root).parts) > 1 else 0 for p in files]
    order = _shuffled(len(files), seed, 0)
    if split != "all":
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ZooError(f"dataset 'image-folder': val_fraction + test_fraction must lie in [0, 1), got "
                           f"{val_fraction} + {test_fraction}")  # fmt: skip
        n_test, n_val = round(test_fraction * len(files)), round(val_fraction * len(files))
        parts = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
        order = parts[split]
    order = _take(order, limit)
    dataset = ImageFiles([files[i] for i in order], [labels[i] for i in order], classes or ["all"], size)
    dataset.root = root  # names in the content fingerprint are relative to it
    return dataset


def imagefolder(
    path: str,
    split: str = "all",
    seed: int = 0,
    limit: int | None = None,
    size: int | str | None = AUTO_SIZE,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> ImageFiles:
    """``image_folder`` for evaluation at a tokenizer's own resolution: ``size`` defaults to ``auto``.

    ``zoo eval`` (``zoo.evaluate.runner``) replaces ``auto`` by each candidate's registry ``inputs.size``
    (LlamaGen's VQ: 256), so ``imagefolder:/data/imagenet/val`` gives every entry the shorter-side resize +
    centre crop at its own size; ``size=N`` fixes it, ``size=none`` keeps the files' size.
    """
    return image_folder(path, split, seed, limit, size, val_fraction, test_fraction)
