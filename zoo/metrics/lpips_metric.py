"""LPIPS (Zhang et al. 2018, https://arxiv.org/abs/1801.03924) through the ``lpips`` package, offline.

LPIPS compares unit-normalised activations of an ImageNet backbone (AlexNet or VGG16) with learned per-channel
weights. The two halves come from two places:

- the learned linear weights (``lin0`` ... ``lin4``) ship inside the ``lpips`` wheel (``lpips/weights/v0.1/``),
  read here with ``torch.load(weights_only=True)``;
- the backbone is torchvision's ImageNet AlexNet / VGG16, which ``lpips`` would download on first use. zoo never
  downloads: it reads the file torchvision's own download leaves, ``$TORCH_HOME/hub/checkpoints/<file>``
  (default ``~/.cache/torch/hub/checkpoints``; ``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``), checks the
  sha256 prefix in its name, and fails in one error naming the file, the folder and the URL when it is missing.
  ``backbone_weights: PATH`` points at another copy of the same file.

Images in ``[0, 1]`` are mapped to ``[-1, 1]`` (``normalize=True``), scored at the size they are, in float32;
the value is the mean over images of the spatially averaged distance (lower is better).
"""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path
from typing import ClassVar

import torch

from zoo.errors import ZooError
from zoo.metrics.image import _PerImageMean

NETS = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights"}  # LPIPS trunk -> torchvision weights enum


def backbone_url(net: str) -> str:
    import torchvision.models

    return getattr(torchvision.models, NETS[net]).IMAGENET1K_V1.url


def default_backbone_path(net: str) -> Path:
    """Where torchvision's own download puts the backbone: ``torch.hub.get_dir()/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / backbone_url(net).rsplit("/", 1)[-1]


def _check_hash_prefix(path: Path) -> str | None:
    """torchvision file names carry the first hex digits of their sha256 (``-7be5be79.pth``); check them."""
    match = re.search(r"-([0-9a-f]{8,})\.pth$", path.name)
    if match is None:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if not digest.hexdigest().startswith(match.group(1)):
        raise ZooError(f"lpips: {path} does not match the sha256 prefix {match.group(1)} its name carries "
                       f"(got {digest.hexdigest()[:12]}...); delete it and fetch it again")  # fmt: skip
    return match.group(1)


def build_lpips(net: str = "alex", version: str = "0.1", backbone_weights: str | Path | None = None):
    """An ``lpips.LPIPS`` network with its wheel's linear weights and a local backbone file; no download.

    Returns ``(model, note)``; the note says which backbone file was used and whether its hash was checked."""
    try:
        import lpips
    except ImportError:
        raise ZooError("lpips: the `lpips` package is not installed (pip install lpips)") from None
    if net not in NETS:
        raise ZooError(f"lpips: net must be one of {sorted(NETS)}, got {net!r}")
    path = Path(backbone_weights).expanduser() if backbone_weights is not None else default_backbone_path(net)
    if not path.is_file():
        raise ZooError(
            f"lpips: the torchvision {NETS[net].split('_')[0]} ImageNet backbone is missing: {path}. zoo does not "
            f"download it; put the file there (from {backbone_url(net)}, or copy it from a machine where torchvision "
            f"fetched it), set $TORCH_HOME, or give the metric backbone_weights: PATH"
        )
    prefix = _check_hash_prefix(path)
    lin_path = Path(lpips.__file__).parent / "weights" / f"v{version}" / f"{net}.pth"
    if not lin_path.is_file():
        raise ZooError(f"lpips: {lin_path} is missing from the lpips package (version {version!r}); "
                       "reinstall lpips or use version 0.1")  # fmt: skip
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=`; nothing is fetched
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, version=version, pretrained=False, pnet_rand=True, verbose=False)
    lins = torch.load(lin_path, map_location="cpu", weights_only=True)
    loaded = model.load_state_dict(lins, strict=False)
    stray = [k for k in loaded.missing_keys if not k.startswith(("net.", "lins.", "scaling_layer."))]
    if loaded.unexpected_keys or stray:
        raise ZooError(f"lpips: {lin_path} does not fit the {net} LPIPS head "
                       f"(unexpected {loaded.unexpected_keys[:3]}, missing {stray[:3]})")  # fmt: skip
    _load_backbone(model.net, torch.load(path, map_location="cpu", weights_only=True), path)
    model.eval().requires_grad_(False)
    check = f"sha256 prefix {prefix} checked" if prefix else "no hash in its name to check"
    return model, f"{net} backbone from {path} ({check}); linear weights v{version} from the lpips wheel"


def _load_backbone(trunk: torch.nn.Module, state: dict, path: Path) -> None:
    """Copy torchvision ``features.<i>.<param>`` tensors into lpips' slices, which keep the layer indices
    (``slice2.3.weight`` is ``features.3.weight``); every trunk parameter must be found."""
    if not isinstance(state, dict):
        raise ZooError(f"lpips: {path} holds a {type(state).__name__}, expected a torchvision state dict")
    for block in trunk.children():
        for index, layer in block.named_children():
            for name, parameter in layer.named_parameters(recurse=False):
                key = f"features.{index}.{name}"
                value = state.get(key)
                if not isinstance(value, torch.Tensor) or value.shape != parameter.shape:
                    got = list(value.shape) if isinstance(value, torch.Tensor) else "nothing"
                    raise ZooError(f"lpips: {path} is not the torchvision backbone lpips expects: {key} is {got}, "
                                   f"expected {list(parameter.shape)}")  # fmt: skip
                with torch.no_grad():
                    parameter.copy_(value)


class LPIPS(_PerImageMean):
    """LPIPS perceptual distance between x and decode(encode(x)) (lpips package, AlexNet), mean over images."""

    name: ClassVar[str] = "lpips"
    higher_is_better: ClassVar[bool | None] = False

    def __init__(self, net: str = "alex", version: str = "0.1", backbone_weights: str | None = None,
                 batch_size: int = 32) -> None:  # fmt: skip
        super().__init__()
        if net not in NETS:
            raise ZooError(f"lpips: net must be one of {sorted(NETS)}, got {net!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ZooError(f"lpips: batch_size must be a positive integer, got {batch_size!r}")
        self.net, self.version, self.backbone_weights, self.batch_size = net, version, backbone_weights, batch_size
        self.model = None
        self.notes: list[str] = []

    def _network(self, device: torch.device):
        # Built on first use, so a missing backbone file skips this metric (with its error as the note), not the run.
        if self.model is None:
            self.model, note = build_lpips(self.net, self.version, self.backbone_weights)
            self.notes.append(note)
        return self.model.to(device)

    def score(self, original: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        model = self._network(original.device)
        values = []
        with torch.no_grad(), torch.autocast(device_type=original.device.type, enabled=False):
            for start in range(0, original.shape[0], self.batch_size):
                a = original[start : start + self.batch_size].float()
                b = reconstruction[start : start + self.batch_size].float()
                values.append(model(a, b, normalize=True).flatten())  # [b]: spatial mean per image
        return torch.cat(values)
