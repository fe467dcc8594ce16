"""Checkpoints of a run: accelerate ``save_state`` folders, written atomically and rotated.

A checkpoint is ``OUTPUT/checkpoints/step-00000100/``: accelerate's ``save_state`` files (model
weights, optimiser states, every process's RNG states, registered objects such as the EMA) plus
``trainer_state.json``. It is written into a hidden temporary folder and renamed into place only
when complete, so a run killed at any moment leaves the previous checkpoints intact and never a
half-written one that ``--resume`` could pick up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from accelerate import Accelerator

from zoo.errors import ZooError

STATE_NAME = "trainer_state.json"
_NAME = re.compile(r"^step-(\d+)$")
_TEMP_PREFIX = ".tmp-"


def _fsync_tree(folder: Path) -> None:
    """Flush every file to disk before the rename publishes the folder (a crash must not publish empty files)."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _NAME.match(path.name)
        if match and (path / STATE_NAME).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(root: Path) -> Path | None:
    found = checkpoints(root)
    return found[-1][1] if found else None


def remove_partial(root: Path) -> None:
    """Delete temporary folders a killed run left behind."""
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith(_TEMP_PREFIX):
                shutil.rmtree(path, ignore_errors=True)


def save_checkpoint(accelerator: Accelerator, root: Path, step: int, keep: int, state: dict) -> Path:
    """Save the full training state after ``step`` optimiser steps; keep only the ``keep`` newest checkpoints."""
    final = root / f"step-{step:08d}"
    temp = root / f"{_TEMP_PREFIX}{final.name}"
    if accelerator.is_main_process:
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    # Every process writes its own RNG state file; the main process writes weights and optimiser states.
    accelerator.save_state(str(temp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (temp / STATE_NAME).write_text(json.dumps({"step": step, **state}, indent=2) + "\n", encoding="utf-8")
        _fsync_tree(temp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(temp, final)
        for _, old in checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, folder: Path) -> dict:
    """Restore weights, optimisers, RNG states and registered objects; returns ``trainer_state.json``."""
    try:
        state = json.loads((folder / STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ZooError(f"checkpoint {folder}: cannot read {STATE_NAME} ({err})") from None
    rng_files = sorted(folder.glob("random_states_*.pkl"))
    if len(rng_files) != accelerator.num_processes:
        raise ZooError(
            f"checkpoint {folder} was written by {len(rng_files)} process(es); this run has "
            f"{accelerator.num_processes}: resume with the same number of processes"
        )
    accelerator.load_state(str(folder))
    return state
