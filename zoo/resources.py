"""Where the catalog, recipes, suites and shipped weights live.

In a source checkout they sit at the repository's top level; in an installed wheel they are
copied under ``zoo/_data`` (see ``pyproject.toml``). Everything else asks this module.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_root() -> Path:
    """The folder holding ``registry/``, ``recipes/``, ``eval/`` and ``weights/``."""
    installed = _PACKAGE_DIR / "_data"
    if (installed / "registry").is_dir():
        return installed
    return _PACKAGE_DIR.parent


def registry_files() -> list[Path]:
    """The package catalog: one YAML file per family group, so additions to different groups never collide.

    Read in name order; a name defined in two files is an error naming both (``zoo.registry``)."""
    return sorted((data_root() / "registry").glob("*.yaml"))


def resolve_resource(path: str | Path) -> Path:
    """A path as given if it exists, else the same path under the data root (``recipes/x.yaml``)."""
    candidate = Path(path).expanduser()
    if candidate.exists() or candidate.is_absolute():
        return candidate
    shipped = data_root() / candidate
    return shipped if shipped.exists() else candidate
