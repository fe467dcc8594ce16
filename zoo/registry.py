"""The catalog of named tokenizers, read from ``registry.yaml`` and validated on load.

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
from zoo.names import suggest
from zoo.resources import registry_file
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
}
_REQUIRED = ("target", "modality", "summary")
_WEIGHT_FIELDS = {"path": str, "sha256": str}
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
            "config": self.config,
            "weights": self.weights,
            "recipe": self.recipe,
            "needs_training": self.needs_training,
            "pretrained": self.pretrained,
            "tags": list(self.tags),
            "source": self.source,
        }
        return record


def _type_names(kinds: tuple[type, ...]) -> str:
    return " or ".join({dict: "mapping", list: "list"}.get(k, k.__name__) for k in kinds)


def parse_entry(name: Any, raw: Any, source: str) -> Entry:
    """Validate one entry; every error names the file, the entry and the key."""
    where = f"{source}: entry {name!r}"
    if not isinstance(name, str) or not _NAME.match(name):
        raise ZooError(f"{where}: names must be lowercase letters, digits, '.', '_' or '-'")
    if not isinstance(raw, dict):
        raise ZooError(f"{where}: expected a mapping of fields, got {type(raw).__name__}")
    for key, value in raw.items():
        if key not in _FIELDS:
            close = difflib.get_close_matches(str(key), _FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(_FIELDS)})"
            raise ZooError(f"{where}: unknown key {key!r}{hint}")
        if value is not None and not isinstance(value, _FIELDS[key]):
            raise ZooError(
                f"{where}: key {key!r} must be a {_type_names(_FIELDS[key])}, got {type(value).__name__} {value!r}"
            )
    for key in _REQUIRED:
        if raw.get(key) in (None, ""):
            raise ZooError(f"{where}: missing required key {key!r}")
    if raw["modality"] not in MODALITIES:
        raise ZooError(f"{where}: key 'modality' must be one of {MODALITIES}, got {raw['modality']!r}")
    if ":" not in raw["target"]:
        raise ZooError(f"{where}: key 'target' must look like 'package.module:Class', got {raw['target']!r}")
    weights = raw.get("weights")
    if weights is not None:
        for key, value in weights.items():
            if key not in _WEIGHT_FIELDS:
                raise ZooError(f"{where}: unknown key 'weights.{key}' (expected path and sha256)")
            if not isinstance(value, _WEIGHT_FIELDS[key]):
                raise ZooError(f"{where}: key 'weights.{key}' must be a string")
        if "path" not in weights:
            raise ZooError(f"{where}: missing required key 'weights.path'")
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
    )


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
        registry.add(registry_file())
        _REGISTRY = registry
    return _REGISTRY


def add(path: str | Path, trust_remote_code: bool = False) -> list[str]:
    """Add a user catalog file to the default registry; returns the names it defined."""
    return default_registry().add(path, trust_remote_code=trust_remote_code)


def get(name: str) -> Entry:
    return default_registry().get(name)
