"""Suites: YAML files naming data and metrics, parsed and checked before anything runs.

A suite (``eval/*.yaml``)::

    name: image-recon
    description: reconstruction quality on held-out photo crops
    data: photos:split=test,size=64     # a dataset spec (zoo.data), string or mapping
    limit: 256                          # items to evaluate (``--limit`` overrides); omit for all
    batch_size: 32
    seed: 0                             # seeds the per-batch generator metrics may sample from
    examples: 8                         # items shown in the report (reconstruction grids, token splits)
    metrics:                            # names from zoo.metrics.METRICS, bare or with options
      - psnr
      - ssim
      - {name: rfid, extractor: inception}
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.yamlfile import read_yaml

SUITE_KEYS = ("name", "description", "data", "limit", "batch_size", "seed", "examples", "metrics")


@dataclass
class Suite:
    name: str
    data: str | dict
    metrics: list[dict]  # [{"name": ..., **options}]
    description: str = ""
    limit: int | None = None
    batch_size: int = 16
    seed: int = 0
    examples: int = 8
    path: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def positive_int(where: str, key: str, value: Any, allow_none: bool = False, allow_zero: bool = False) -> None:
    if value is None and allow_none:
        return
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ZooError(f"{where}: key {key!r} must be an integer >= {low}, got {value!r}")


def parse_suite(raw: Any, where: str = "suite") -> Suite:
    """Validate a suite mapping; errors name the suite, the key and what was expected."""
    if not isinstance(raw, dict):
        raise ZooError(f"{where}: expected a mapping of suite keys ({', '.join(SUITE_KEYS)}), got {type(raw).__name__}")
    for key in raw:
        if key not in SUITE_KEYS:
            close = difflib.get_close_matches(str(key), SUITE_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(SUITE_KEYS)})"
            raise ZooError(f"{where}: unknown key {key!r}{hint}")
    if "data" not in raw or not isinstance(raw["data"], (str, dict)) or not raw["data"]:
        raise ZooError(
            f"{where}: key 'data' must be a dataset spec (e.g. 'photos:split=test'), got {raw.get('data')!r}"
        )
    metrics = raw.get("metrics")
    if not isinstance(metrics, list) or not metrics:
        raise ZooError(f"{where}: key 'metrics' must be a non-empty list of metric names or mappings")
    parsed = []
    for item in metrics:
        entry = {"name": item} if isinstance(item, str) else dict(item) if isinstance(item, dict) else None
        if entry is None or not isinstance(entry.get("name"), str):
            raise ZooError(f"{where}: each metric is a name or a mapping with a 'name', got {item!r}")
        parsed.append(entry)
    names = [m["name"] for m in parsed]
    for name in names:
        if names.count(name) > 1:
            raise ZooError(f"{where}: metric {name!r} is listed twice")
    positive_int(where, "limit", raw.get("limit"), allow_none=True)
    positive_int(where, "batch_size", raw.get("batch_size", 16))
    positive_int(where, "examples", raw.get("examples", 8), allow_zero=True)
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ZooError(f"{where}: key 'seed' must be an integer, got {seed!r}")
    return Suite(
        name=str(raw.get("name") or Path(where).stem),
        data=raw["data"],
        metrics=parsed,
        description=str(raw.get("description") or ""),
        limit=raw.get("limit"),
        batch_size=raw.get("batch_size", 16),
        seed=seed,
        examples=raw.get("examples", 8),
    )


def load_suite(suite: str | Path | dict | Suite) -> Suite:
    """A suite from a mapping, a YAML path, or a shipped suite's name (``image-recon``: eval/image-recon.yaml)."""
    from zoo.resources import resolve_resource

    if isinstance(suite, Suite):
        return suite
    if isinstance(suite, dict):
        return parse_suite(suite)
    text = str(suite)
    candidates = [Path(text).expanduser(), resolve_resource(text), resolve_resource(f"eval/{text}.yaml")]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        from zoo.resources import data_root

        shipped = sorted(p.stem for p in (data_root() / "eval").glob("*.yaml"))
        raise ZooError(f"suite {text!r}: no such file; shipped suites: {', '.join(shipped) or 'none'}")
    raw = read_yaml(path)
    parsed = parse_suite(raw, where=str(path))
    parsed.path = str(path.resolve())
    return parsed
