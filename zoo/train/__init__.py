"""Training from recipes: ``zoo train RECIPE`` and ``zoo.train.train(recipe)``.

    >>> from zoo.train import train
    >>> final = train("recipes/test/toy.yaml", overrides=["steps=4"])   # doctest: +SKIP
    >>> tok = zoo.load(final)                                            # doctest: +SKIP

See ``docs/training.md`` for the recipe keys, multi-stage recipes, resuming and distributed runs.
"""

from __future__ import annotations

from pathlib import Path

from zoo.train.recipe import Plan, load_recipe
from zoo.train.schema import Recipe

__all__ = ["Plan", "Recipe", "load_recipe", "train"]


def train(
    recipe: str | Path | dict,
    overrides: list[str] | tuple[str, ...] = (),
    resume: bool = False,
    overwrite: bool = False,
) -> Path:
    """Train a recipe (a YAML path or a mapping) and return the ``final`` folder of its last stage.

    Args:
        recipe: a recipe file or the mapping it would hold.
        overrides: ``key.sub=value`` strings, values read as YAML (``optimizer.lr=3e-4``).
        resume: continue from the latest complete checkpoint, skipping finished stages.
        overwrite: start again in an output folder that already holds a run.
    """
    from zoo.train.stages import run_plan

    return run_plan(load_recipe(recipe, overrides), resume=resume, overwrite=overwrite)
