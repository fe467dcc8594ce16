"""Fit k-means units from a recipe: ``python -m zoo.audio.kmeans.fit recipes/audio/kmeans-beats-ssl2.yaml``.

The recipe has the trainer's shape (``name``, ``seed``, ``data.train``, ``model.target`` + ``config``)
plus ``fit:`` (``KMeansUnits.fit`` options); the fitted model is exported to ``runs/<name>/final``
(``zoo.load`` reads it). ``zoo train`` hands fit-only tokenizers texts, so audio units fit here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from zoo.errors import ZooError

RECIPE_KEYS = {"name", "seed", "data", "model", "fit", "out_dir"}


def fit_recipe(path: str | Path, out_dir: str | Path | None = None) -> Path:
    """Fit the recipe's ``KMeansUnits`` on its training data and export it; returns the ``final`` folder."""
    from zoo.audio.kmeans.units import KMeansUnits
    from zoo.data import load_dataset
    from zoo.yamlfile import read_yaml

    recipe = read_yaml(path)
    if not isinstance(recipe, dict):
        raise ZooError(f"{path}: a k-means recipe is a mapping")
    unknown = sorted(set(recipe) - RECIPE_KEYS)
    if unknown:
        raise ZooError(f"{path}: unknown key(s) {unknown}; a k-means recipe takes {sorted(RECIPE_KEYS)}")
    model_spec = recipe.get("model") or {}
    if model_spec.get("target") not in (None, "zoo.audio.kmeans.units:KMeansUnits"):
        raise ZooError(f"{path}: model.target must be zoo.audio.kmeans.units:KMeansUnits, got {model_spec['target']!r}")
    data = recipe.get("data") or {}
    if "train" not in data:
        raise ZooError(f"{path}: data.train must name the audio to fit on (e.g. espeak:split=train)")
    torch.manual_seed(int(recipe.get("seed", 0)))
    model = KMeansUnits(**(model_spec.get("config") or {}))
    dataset = load_dataset(data["train"], split="train")
    started = time.perf_counter()
    summary = model.fit(dataset, **(recipe.get("fit") or {}))
    summary["fit_seconds"] = round(time.perf_counter() - started, 1)
    root = Path(out_dir or recipe.get("out_dir") or Path("runs") / str(recipe.get("name", "kmeans")))
    final, temp = root / "final", root / ".final.tmp"
    shutil.rmtree(temp, ignore_errors=True)
    model.save_pretrained(temp, metadata={"recipe": str(path), "fit": summary, "data": data["train"]})
    if final.exists():
        shutil.rmtree(final)
    temp.rename(final)
    print(json.dumps({"final": str(final), **summary}))
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.audio.kmeans.fit", description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)
    fit_recipe(args.recipe, args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
