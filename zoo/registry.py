"""The catalog of named tokenizers, read from ``registry/*.yaml`` and validated on load.

An entry::

    vq-f8:
      target: zoo.image.vq.model:VQTokenizer       # "package.module:Class", imported only when built
      modality: image
      summary: one line for `zoo list`
      paper: https://arxiv.org/abs/...       # optional
      config: {...}                          # constructor arguments
      weights: {path: weights/vq-f8.safetensors, sha256: ...}   # or hf://..., https://...
      recipe: recipes/image/vq-f8.yaml       # how the weights were trained
      needs_training: false                  # optional: fully defined by its config (bytes, a seeded projection)
      inputs: {size: 64, multiple_of: 8, min_size: 8, max_size: 1024, range: [0, 1], channels: 3}  # what encode takes
      card: {parameters: 874427, data: ..., steps: 1200, license: MIT,       # optional: where the weights came from
             metrics: {psnr: 19.67}, metrics_source: eval/results/image-recon.md}

``inputs`` (timm's ``pretrained_cfg``, the part saying how inputs are prepared), optional, by modality:

- image: ``size`` (required) the side the entry was trained and measured at; without ``multiple_of`` the
  only side it takes. ``multiple_of``: any height and width that are multiples of it are taken too, from
  ``min_size`` up to ``max_size`` (the largest square it serves) when given. ``range`` ``[low, high]`` of the
  values, ``channels``.
- audio: ``sample_rate`` (required, Hz), ``channels``, ``range``, ``min_samples``: the shortest clip
  that yields a token (shorter ones give none).
- text: ``type: str``, the only input text tokenizers take.

``card``, optional: ``parameters`` (what ``sum(p.numel() for p in model.parameters())`` counts; EMA codebooks
are buffers, not counted), ``data`` it was trained on, ``steps`` of the run (the recipe stage) that made it,
``license``, and ``metrics``: headline numbers measured here, copied from the file ``metrics_source`` names
(required with ``metrics``). Entries of one family share a description through a YAML anchor
(``inputs: *photos_inputs``): the registry never imports a family to describe it.

Unknown keys, missing fields and wrong types are errors naming the entry and the key. Users add
their own catalog with ``zoo.registry.add(path)``; a name defined twice is an error.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.hub import checked_revision, checked_select
from zoo.names import suggest
from zoo.resources import registry_files
from zoo.yamlfile import read_yaml

_FIELDS: dict[str, tuple[type, ...]] = {
    "target": (str,),
    "modality": (str,),
    "summary": (str,),
    "paper": (str,),
    "config": (dict,),
    "weights": (dict,),
    "recipe": (str,),
    "needs_training": (bool,),
    "tags": (list,),
    "inputs": (dict,),
    "card": (dict,),
}
_REQUIRED = ("target", "modality", "summary")
# select: the tensor-name prefix to take from a sharded checkpoint whose path is its .safetensors.index.json
_WEIGHT_FIELDS: dict[str, tuple[type, ...]] = {"path": (str,), "sha256": (str,), "revision": (str,), "select": (str,)}
_INPUT_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "text": {"type": (str,)},
    "image": {"size": (int,), "multiple_of": (int,), "min_size": (int,), "max_size": (int,), "range": (list,),
              "channels": (int,)},
    "audio": {"sample_rate": (int,), "channels": (int,), "range": (list,), "min_samples": (int,)},
}
_INPUT_REQUIRED = {"text": ("type",), "image": ("size",), "audio": ("sample_rate",)}
_CARD_FIELDS: dict[str, tuple[type, ...]] = {
    "parameters": (int,),
    "data": (str,),
    "steps": (int,),
    "license": (str,),
    "metrics": (dict,),
    "metrics_source": (str,),
    "vocab_size": (int,),
    "special_tokens": (list, dict),
    "lossless": (bool,),
}
MODALITIES = ("text", "image", "audio")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class Entry:
    name: str
    target: str
    modality: str
    summary: str
    source: str
    paper: str | None = None
    config: dict = field(default_factory=dict)
    weights: dict | None = None
    recipe: str | None = None
    needs_training: bool = True
    tags: tuple = ()
    inputs: dict | None = None
    card: dict | None = None
    trusted: bool = False  # its catalog was added with trust_remote_code: its target may be outside zoo

    @property
    def pretrained(self) -> bool:
        """True when ``zoo.load(name, pretrained=True)`` gives a ready tokenizer."""
        return self.weights is not None or not self.needs_training

    def as_dict(self) -> dict:
        record = {
            "name": self.name,
            "target": self.target,
            "modality": self.modality,
            "summary": self.summary,
            "paper": self.paper,
            "inputs": self.inputs,
            "config": self.config,
            "weights": self.weights,
            "recipe": self.recipe,
            "card": self.card,
            "needs_training": self.needs_training,
            "pretrained": self.pretrained,
            "tags": list(self.tags),
            "source": self.source,
        }
        return record

    def describe_inputs(self) -> str | None:
        """``inputs`` in one line with its shape legend, e.g. ``images [B, 3, H, W] in [0, 1]: 64x64 native, ...``."""
        spec = self.inputs
        if spec is None:
            return None
        if self.modality == "text":
            return spec["type"]
        values = f" in [{spec['range'][0]}, {spec['range'][1]}]" if "range" in spec else ""
        if self.modality == "audio":
            channels = {None: "", 1: "mono "}.get(spec.get("channels"), f"{spec.get('channels')} channels ")
            text = f"audio [B, T]{values}, {channels}{spec['sample_rate']} Hz"
            if "min_samples" in spec:
                text += f", at least {spec['min_samples']} samples for one token"
            return text
        size, channels = spec["size"], spec.get("channels", "C")
        if "multiple_of" not in spec:
            return f"images [B, {channels}, {size}, {size}]{values} ({size}x{size} only)"
        bounds = [f"at least {spec['min_size']}"] if "min_size" in spec else []
        if "max_size" in spec:
            bounds.append(f"up to {spec['max_size']}x{spec['max_size']}")
        bounds_text = f" ({', '.join(bounds)})" if bounds else ""
        return (f"images [B, {channels}, H, W]{values}: {size}x{size} native, H and W multiples of "
                f"{spec['multiple_of']}{bounds_text}")


def _type_names(kinds: tuple[type, ...]) -> str:
    names = {dict: "a mapping", list: "a list", int: "an integer", str: "a string", bool: "a bool", float: "a number"}
    return " or ".join(names.get(k, f"a {k.__name__}") for k in kinds)


def parse_entry(name: Any, raw: Any, source: str) -> Entry:
    """Validate one entry; every error names the file, the entry and the key."""
    where = f"{source}: entry {name!r}"
    if not isinstance(name, str) or not _NAME.match(name):
        raise ZooError(f"{where}: names must be lowercase letters, digits, '.', '_' or '-'")
    if not isinstance(raw, dict):
        raise ZooError(f"{where}: expected a mapping of fields, got {type(raw).__name__}")
    _check_keys(where, raw, _FIELDS)
    for key in _REQUIRED:
        if raw.get(key) in (None, ""):
            raise ZooError(f"{where}: missing required key {key!r}")
    if raw["modality"] not in MODALITIES:
        raise ZooError(f"{where}: key 'modality' must be one of {MODALITIES}, got {raw['modality']!r}")
    if ":" not in raw["target"]:
        raise ZooError(f"{where}: key 'target' must look like 'package.module:Class', got {raw['target']!r}")
    weights = raw.get("weights")
    if weights is not None:
        _check_keys(where, weights, _WEIGHT_FIELDS, "weights.")
        if "path" not in weights:
            raise ZooError(f"{where}: missing required key 'weights.path'")
        if "revision" in weights:
            checked_revision(weights["path"], weights["revision"])
        if "select" in weights:
            try:
                checked_select(weights["path"], weights["select"])
            except ZooError as err:
                raise ZooError(f"{where}: {err}") from None
    if raw.get("inputs") is not None:
        _check_inputs(where, raw["modality"], raw["inputs"])
    if raw.get("card") is not None:
        _check_card(where, raw["card"])
    return Entry(
        name=name,
        target=raw["target"],
        modality=raw["modality"],
        summary=raw["summary"],
        source=source,
        paper=raw.get("paper"),
        config=dict(raw.get("config") or {}),
        weights=dict(weights) if weights else None,
        recipe=raw.get("recipe"),
        needs_training=raw.get("needs_training") is not False,
        tags=tuple(raw.get("tags") or ()),
        inputs=dict(raw["inputs"]) if raw.get("inputs") is not None else None,
        card=dict(raw["card"]) if raw.get("card") is not None else None,
    )


def _check_keys(where: str, raw: dict, fields: dict[str, tuple[type, ...]], prefix: str = "", scope: str = "") -> None:
    """Unknown keys (with the closest known one) and wrong types are errors naming the entry and the key.

    Top-level keys may be empty (``paper:``); nested ones (``prefix`` set) must hold a value.
    """
    for key, value in raw.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"did you mean {prefix + close[0]!r}?" if close else f"known keys: {', '.join(fields)}"
            raise ZooError(f"{where}: unknown key {prefix + str(key)!r}{scope} ({hint})")
        kinds = fields[key]
        if value is None and not prefix:
            continue
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ZooError(f"{where}: key {prefix + key!r} must be {_type_names(kinds)}, "
                           f"got {type(value).__name__} {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_inputs(where: str, modality: str, inputs: dict) -> None:
    """``inputs`` takes its modality's keys only; sizes are positive and consistent, ``range`` is [low, high]."""
    fields = _INPUT_FIELDS[modality]
    _check_keys(where, inputs, fields, "inputs.", scope=f" for modality {modality!r}")
    for key in _INPUT_REQUIRED[modality]:
        if key not in inputs:
            raise ZooError(f"{where}: missing required key 'inputs.{key}' for modality {modality!r}")
    for key, kinds in fields.items():
        if kinds == (int,) and key in inputs and inputs[key] < 1:
            raise ZooError(f"{where}: key 'inputs.{key}' must be a positive integer, got {inputs[key]}")
    if "type" in inputs and inputs["type"] != "str":
        raise ZooError(f"{where}: key 'inputs.type' must be 'str' (text tokenizers take Python strings), "
                       f"got {inputs['type']!r}")
    span = inputs.get("range")
    if span is not None and not (len(span) == 2 and all(map(_is_number, span)) and span[0] < span[1]):
        raise ZooError(f"{where}: key 'inputs.range' must be [low, high] with low < high, got {span!r}")
    if modality != "image":
        return
    size, step = inputs["size"], inputs.get("multiple_of")
    if step is None and ("min_size" in inputs or "max_size" in inputs):
        raise ZooError(f"{where}: keys 'inputs.min_size' / 'inputs.max_size' need 'inputs.multiple_of' "
                       f"(without it, size {size} is the only side taken)")
    if step is not None and size % step:
        raise ZooError(f"{where}: key 'inputs.size' ({size}) must be a multiple of 'inputs.multiple_of' ({step})")
    if not inputs.get("min_size", size) <= size <= inputs.get("max_size", size):
        raise ZooError(f"{where}: key 'inputs.size' ({size}) must lie within 'inputs.min_size' "
                       f"({inputs.get('min_size')}) and 'inputs.max_size' ({inputs.get('max_size')})")


def _check_card(where: str, card: dict) -> None:
    """Counts are integers >= 0; ``metrics`` maps names to numbers and says where they were measured."""
    _check_keys(where, card, _CARD_FIELDS, "card.")
    for key in ("parameters", "steps"):
        if card.get(key, 0) < 0:
            raise ZooError(f"{where}: key 'card.{key}' must be an integer >= 0, got {card[key]}")
    metrics = card.get("metrics")
    if metrics is None:
        return
    for name, value in metrics.items():
        if not isinstance(name, str) or not _is_number(value):
            raise ZooError(f"{where}: key 'card.metrics' must map metric names to numbers, got {name!r}: {value!r}")
    if "metrics_source" not in card:
        raise ZooError(f"{where}: key 'card.metrics' needs 'card.metrics_source', the file in the repository the "
                       f"numbers come from (eval/results/*.md, docs/*.md)")


def read_registry_file(path: str | Path) -> dict[str, Entry]:
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"registry file {path} does not exist")
    document = read_yaml(path)
    if not isinstance(document, dict) or set(document) != {"tokenizers"} or not isinstance(
        document["tokenizers"], dict
    ):
        raise ZooError(f"{path}: expected one top-level key 'tokenizers' holding a mapping of entries")
    return {name: parse_entry(name, raw, str(path)) for name, raw in document["tokenizers"].items()}


def _natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


class Registry:
    """Named entries from one or more catalog files; lookups suggest close names."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}

    def add(self, path: str | Path, trust_remote_code: bool = False) -> list[str]:
        """Add every entry of a catalog file; a name already defined is an error naming both files."""
        entries = read_registry_file(path)
        if trust_remote_code:  # the caller vouches for this catalog's targets (zoo.targets)
            entries = {name: dataclasses.replace(entry, trusted=True) for name, entry in entries.items()}
        for name, entry in entries.items():
            if name in self._entries:
                raise ZooError(f"{entry.source}: entry {name!r} is already defined in {self._entries[name].source}")
        self._entries.update(entries)
        return list(entries)

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> Entry:
        if name in self._entries:
            return self._entries[name]
        raise ZooError(f"unknown tokenizer {name!r}; {self.suggest(name)}")

    def suggest(self, name: str) -> str:
        return suggest(name, self._entries, fallback="see `zoo list` for the names")

    def names(self, pattern: str = "*", modality: str | None = None, pretrained: bool | None = None) -> list[str]:
        if modality is not None and modality not in MODALITIES:
            raise ZooError(f"modality must be one of {MODALITIES}, got {modality!r}")
        chosen = [
            name
            for name, entry in self._entries.items()
            if fnmatch.fnmatchcase(name, pattern)
            and (modality is None or entry.modality == modality)
            and (pretrained is None or entry.pretrained == pretrained)
        ]
        return sorted(chosen, key=_natural_key)


_REGISTRY: Registry | None = None


def default_registry() -> Registry:
    """The package catalog, read once on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        registry = Registry()
        for path in registry_files():
            registry.add(path)
        _REGISTRY = registry
    return _REGISTRY


def add(path: str | Path, trust_remote_code: bool = False) -> list[str]:
    """Add a user catalog file to the default registry; returns the names it defined."""
    return default_registry().add(path, trust_remote_code=trust_remote_code)


def get(name: str) -> Entry:
    return default_registry().get(name)
