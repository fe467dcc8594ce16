"""Running a recipe's stages in order; a stage finished earlier is skipped on ``--resume``.

A single-stage recipe writes ``OUTPUT/final``; stage ``NAME`` of a multi-stage recipe writes
``OUTPUT/NAME/final``, and a later stage names it as ``"stage:NAME"`` (resolved when the recipe is
loaded, see ``zoo.train.recipe``). A stage counts as finished once its ``final/config.json`` exists:
the export writes it last and renames the folder into place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from accelerate import PartialState

from zoo.errors import ZooError
from zoo.pretrained import CONFIG_NAME, FINAL
from zoo.train.recipe import Plan
from zoo.train.trainer import train_stage

# What a run writes into a stage folder; --overwrite removes exactly these, nothing else the folder holds.
RUN_FILES = (FINAL, "checkpoints", "log.jsonl", "tensorboard", "eval")


def process_state() -> PartialState:
    """Join the process group ``accelerate launch`` set up (one process otherwise), refusing a silent split.

    accelerate reads ``ACCELERATE_USE_CPU`` only when an ``Accelerator`` is built, so it is passed here too;
    without it, two processes launched on a machine without GPUs each see a world of one and would train
    two independent models into the same folder.
    """
    import os

    from accelerate.utils import parse_flag_from_env

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and state.num_processes != launched:
        raise ZooError(
            f"launched as {launched} processes but accelerate sees a world of {state.num_processes}; on a machine "
            "without GPUs set ACCELERATE_USE_CPU=true (see docs/training.md, 'Distributed')"
        )
    return state


def finished(stage_dir: Path) -> bool:
    return (stage_dir / FINAL / CONFIG_NAME).is_file()


def run_plan(plan: Plan, resume: bool = False, overwrite: bool = False) -> Path:
    """Train every stage of ``plan``; returns the last stage's ``final`` folder."""
    state = process_state()
    stage_dirs = [plan.stage_dir(recipe) for recipe in plan.stages]
    existing = [d / name for d in stage_dirs for name in RUN_FILES if (d / name).exists()]
    # Every process looks before any writes: otherwise rank 0's first log line makes rank 1 see "a run".
    state.wait_for_everyone()
    if existing and not resume:
        if not overwrite:
            raise ZooError(
                f"{plan.output_dir} already holds a run ({existing[0]}); pass --resume to continue it, "
                f"--overwrite to start again, or choose another output_dir=..."
            )
        if state.is_main_process:
            for path in existing:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        state.wait_for_everyone()
    final = None
    for recipe, stage_dir in zip(plan.stages, stage_dirs):
        if resume and finished(stage_dir):
            if state.is_main_process:
                print(f"zoo train: stage {recipe.name!r} finished earlier ({stage_dir / FINAL}): skipping")
            final = stage_dir / FINAL
            continue
        final = train_stage(recipe, stage_dir, resume=resume, source=plan.source)
    return final
