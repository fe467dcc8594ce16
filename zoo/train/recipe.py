"""Recipes: YAML files validated into dataclasses, with ``include:``, ``key.sub=value`` overrides and stages.

A recipe file is read with ``yaml.safe_load``. ``include:`` (a path or a list, relative to the file)
pulls other files in first; the including file's keys win, mappings merge key by key, lists are
replaced. Overrides from the command line (``optimizer.lr=3e-4``, ``stages.student.steps=10``) are
applied to the merged mapping, their values read as YAML. Then every key is checked against the
dataclasses of ``zoo.train.schema``: an unknown key, a wrong type, a number out of range or a missing
field is one ``ZooError`` naming the file, the key and what was expected. ``docs/training.md`` lists
every key with its default.

A recipe with ``stages:`` runs one stage after another; the top-level keys are defaults every stage
inherits, and a stage may name an earlier stage's exported model as ``"stage:NAME"``.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from zoo.errors import ZooError
from zoo.train.schema import Recipe, build
from zoo.yamlfile import read_yaml


@dataclass
class Plan:
    """A loaded recipe: its stages in order, where they write, and the merged mapping they came from."""

    source: str
    output_dir: Path
    stages: list[Recipe]
    resolved: dict

    @property
    def multi_stage(self) -> bool:
        return "stages" in self.resolved

    def stage_dir(self, recipe: Recipe) -> Path:
        """Where a stage writes: ``OUTPUT`` for a single-stage recipe, ``OUTPUT/<stage>`` otherwise."""
        return self.output_dir / recipe.name if self.multi_stage else self.output_dir


# Keys a stage may not set: the stage list and the output folder belong to the whole recipe.
_TOP_LEVEL_ONLY = ("stages", "output_dir", "include")
_STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
STAGE_PREFIX = "stage:"


def _check_stage_keys(raw: dict, where: str, prefix: str) -> None:
    for key in _TOP_LEVEL_ONLY:
        if key in raw:
            raise ZooError(f"{where}: key {prefix + key!r} is not allowed inside a stage (set it at the top level)")


# -- reading files: include, merge, overrides ----------------------------------------------------------


def deep_merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``: mappings merge key by key, everything else is replaced."""
    merged = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read_yaml(path: Path, where: str) -> dict:
    document = read_yaml(path)
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ZooError(f"{where}: a recipe must be a mapping of keys, got {type(document).__name__}")
    return document


def read_recipe_file(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict:
    """Read one recipe file with its includes merged in (included first, this file's keys win)."""
    path = Path(path)
    resolved = path.resolve()
    if resolved in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, resolved))
        raise ZooError(f"{_chain[-1]}: include cycle: {cycle}")
    if not path.is_file():
        raise ZooError(f"recipe {path} does not exist")
    document = _read_yaml(path, str(path))
    includes = document.pop("include", None) or []
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ZooError(f"{path}: key 'include' must be a path or a list of paths, got {includes!r}")
    # Each file's own keys are checked where they are written, so an error names the file that holds it.
    _check_document(document, str(path), partial=True)
    merged: dict = {}
    for name in includes:
        target = path.parent / name
        if not target.is_file():
            raise ZooError(f"{path}: key 'include': file {name!r} not found (looked for {target})")
        merged = deep_merge(merged, read_recipe_file(target, (*_chain, resolved)))
    return deep_merge(merged, document)


def _check_document(document: dict, where: str, partial: bool) -> None:
    top = {k: v for k, v in document.items() if k != "stages"}
    build(Recipe, top, where, partial=partial)
    stages = document.get("stages")
    if stages is None:
        return
    if not isinstance(stages, list) or not stages:
        raise ZooError(f"{where}: key 'stages' must be a non-empty list of mappings, got {stages!r}")
    for index, stage in enumerate(stages):
        prefix = f"stages[{index}]."
        if not isinstance(stage, dict):
            raise ZooError(f"{where}: key 'stages[{index}]' must be a mapping, got {stage!r}")
        _check_stage_keys(stage, where, prefix)
        build(Recipe, stage, where, prefix=prefix, partial=True)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optimizer.lr=3e-4"`` -> (["optimizer", "lr"], 0.0003); the value is read as YAML."""
    key, eq, value = text.partition("=")
    parts = key.strip().split(".")
    if not eq or not all(part.strip() for part in parts):
        raise ZooError(f"override {text!r}: expected KEY=VALUE with a dotted key, e.g. optimizer.lr=3e-4")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        raise ZooError(f"override {text!r}: the value is not valid YAML") from None
    return [part.strip() for part in parts], parsed


def apply_override(document: dict, text: str) -> None:
    """Set one ``key.sub=value`` in place; list items are addressed by index or by their ``name``."""
    parts, value = parse_override(text)
    node: Any = document
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        here = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            matches = [i for i, item in enumerate(node) if isinstance(item, dict) and item.get("name") == part]
            if part.isdigit() and int(part) < len(node):
                index = int(part)
            elif matches:
                index = matches[0]
            else:
                names = [item.get("name") for item in node if isinstance(item, dict)]
                raise ZooError(
                    f"override {text!r}: {here!r} is neither an index below {len(node)} nor a name in {names}"
                )
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise ZooError(f"override {text!r}: {'.'.join(parts[:depth])!r} is {node!r}, not a mapping")


# -- the plan: stages, output folders, stage references ------------------------------------------------


def load_recipe(source: str | Path | dict, overrides: list[str] | tuple[str, ...] = ()) -> Plan:
    """Read a recipe file (or take a mapping), apply overrides, validate, and split it into stages."""
    if isinstance(source, dict):
        where = "recipe"
        _check_document({k: v for k, v in source.items() if k != "include"}, where, partial=True)
        if "include" in source:
            raise ZooError(f"{where}: key 'include' only works in recipe files")
        document = copy.deepcopy(source)
        default_name = "recipe"
    else:
        from zoo.resources import resolve_resource

        path = resolve_resource(source)
        where = str(path)
        document = read_recipe_file(path)
        default_name = path.stem
    for text in overrides:
        apply_override(document, text)
    if overrides:
        where = f"{where} (with overrides {' '.join(overrides)})"
        _check_document(document, where, partial=True)

    top = {k: v for k, v in document.items() if k != "stages"}
    top.setdefault("name", default_name)
    output_dir = Path(top.get("output_dir") or f"runs/{top['name']}")
    top["output_dir"] = str(output_dir)
    raw_stages = document.get("stages")
    if raw_stages is None:
        stages = [_finish(_resolve_stage_refs(top, [], output_dir, where, "recipe"), where, "")]
    else:
        stages, seen = [], []
        for index, raw in enumerate(raw_stages):
            name = raw.get("name")
            if not isinstance(name, str) or not _STAGE_NAME.match(name):
                raise ZooError(
                    f"{where}: key 'stages[{index}].name' must be a name of letters, digits, '_' or '-', got {name!r}"
                )
            if name in seen:
                raise ZooError(f"{where}: key 'stages[{index}].name': stage {name!r} is defined twice")
            merged = deep_merge(top, raw)
            merged = _resolve_stage_refs(merged, seen, output_dir, where, f"stages[{index}]")
            stages.append(_finish(merged, where, f"stages[{index}]."))
            seen.append(name)
    resolved = dict(document, name=top["name"], output_dir=str(output_dir))
    return Plan(source=where, output_dir=output_dir, stages=stages, resolved=resolved)


def _finish(raw: dict, where: str, prefix: str) -> Recipe:
    recipe = build(Recipe, raw, where)
    model = recipe.model
    if (model.name is None) == (model.target is None):
        raise ZooError(
            f"{where}: key '{prefix}model' needs exactly one of 'name' (a registry name or folder) "
            f"or 'target' ('package.module:Class')"
        )
    if model.config and model.name is not None:
        raise ZooError(f"{where}: key '{prefix}model.config' goes with 'target'; with 'name' use 'model.overrides'")
    if recipe.data.train is None:
        raise ZooError(f"{where}: missing key '{prefix}data.train' (a dataset spec such as 'synthetic-images')")
    # numbers out of range (steps < 1, a negative learning rate, seed: -1) were refused by build, see schema._range
    return recipe


def _resolve_stage_refs(node: Any, earlier: list[str], output_dir: Path, where: str, key: str) -> Any:
    """Replace every string ``"stage:NAME"`` by the absolute path of that earlier stage's ``final`` folder."""
    if isinstance(node, dict):
        return {k: _resolve_stage_refs(v, earlier, output_dir, where, f"{key}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_stage_refs(v, earlier, output_dir, where, f"{key}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str) and node.startswith(STAGE_PREFIX):
        name = node[len(STAGE_PREFIX) :]
        if name not in earlier:
            known = f"earlier stages: {', '.join(earlier)}" if earlier else "it is the first stage"
            raise ZooError(f"{where}: key {key!r}: {node!r} does not name an earlier stage ({known})")
        return str((output_dir / name / "final").resolve())
    return node
