"""Reading the zoo's YAML files (catalogs, recipes, suites) strictly: safe types only, no duplicate keys.

``yaml.safe_load`` builds only plain data (never objects), but it keeps the last of two equal keys, so a
recipe with ``lr:`` twice silently trains with the second. Here a repeated key is an error naming the
file, the key and both lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from zoo.errors import ZooError


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses a mapping holding the same key twice."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    # Only keys written in this mapping count: one that overrides a merged-in key (``<<: *base``) is the point of
    # the merge, not a repeat.
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: SafeLoader's own error says so below
            continue
        if first is not None:
            raise ZooError(f"{loader.name}: line {line}: key {key!r} repeats the key of line {first}; each key may "
                           "appear once in a mapping")
        seen[key] = line
    loader.flatten_mapping(node)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def parse_yaml(text: str, where: str = "<string>") -> Any:
    """Parse YAML text into plain data; syntax errors and repeated keys name ``where``."""
    loader = _StrictLoader(text)
    loader.name = where
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        raise ZooError(f"{where}: not valid YAML ({' '.join(str(err).split())})") from None
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> Any:
    """A YAML file's plain data (see ``parse_yaml``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ZooError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    return parse_yaml(text, str(path))
