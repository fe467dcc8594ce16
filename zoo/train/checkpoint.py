"""Checkpoints of a run: accelerate ``save_state`` folders, written atomically and rotated, read without
ever unpickling code.

A checkpoint is ``OUTPUT/checkpoints/step-00000100/``:

==============================  ==================  ===================================================
file                            format              read with
==============================  ==================  ===================================================
``model.safetensors``           safetensors         accelerate (safetensors)
``optimizer.bin`` (``_1``...)   torch.save          ``torch.load(weights_only=True)`` (accelerate)
``random_states_<rank>.pkl``    torch.save          ``torch.load(weights_only=True)``, checked here first
``ema.safetensors``             safetensors         here (the EMA's shadow weights)
``trainer_state.json``          JSON                here
==============================  ==================  ===================================================

Nothing is registered with accelerate's ``register_for_checkpointing``: accelerate reloads such objects
with ``weights_only=False``, i.e. it would run whatever a tampered ``custom_checkpoint_0.pkl`` holds.
Every torch-saved file is opened once with ``weights_only=True`` before accelerate sees it, so a planted
pickle is refused with one line (accelerate itself would silently skip a random-state file it cannot read).

A checkpoint is written into a hidden temporary folder and renamed into place only when complete, so a
run killed at any moment leaves the previous checkpoints intact. A checkpoint damaged later (a truncated
file) is skipped on ``--resume`` for the newest one that reads, and the run says so.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

from accelerate import Accelerator

from zoo.errors import ZooError

STATE_NAME = "trainer_state.json"
EMA_NAME = "ema.safetensors"
# accelerate's file for objects registered for checkpointing: a pickle loaded with weights_only=False.
_UNSAFE_PATTERN = "custom_checkpoint_*.pkl"


class UnsafeCheckpoint(ZooError):
    """A checkpoint file that only an unpickler running code could read: refused, never skipped quietly."""
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


def save_checkpoint(accelerator: Accelerator, root: Path, step: int, keep: int, state: dict,
                    ema_state: dict | None = None) -> Path:
    """Save the full training state after ``step`` optimiser steps; keep only the ``keep`` newest checkpoints.

    ``ema_state``: the EMA's tensors, written as ``ema.safetensors`` (never as a pickle)."""
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
        if ema_state is not None:
            from safetensors.torch import save_file

            save_file({name: tensor.contiguous() for name, tensor in ema_state.items()}, str(temp / EMA_NAME))
        (temp / STATE_NAME).write_text(json.dumps({"step": step, **state}, indent=2) + "\n", encoding="utf-8")
        _fsync_tree(temp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(temp, final)
        for _, old in checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def check_checkpoint(folder: Path, processes: int, with_ema: bool) -> dict:
    """Read everything of a checkpoint that can be read safely and check it is whole; returns its state.

    Refuses (ZooError) a pickle of accelerate's custom objects, any torch-saved file that needs more than
    ``weights_only=True`` (a planted pickle), an unreadable safetensors file and a missing or bad state."""
    from accelerate.utils import load as accelerate_load
    from safetensors import SafetensorError, safe_open

    try:
        state = json.loads((folder / STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ZooError(f"checkpoint {folder}: cannot read {STATE_NAME} ({err})") from None
    unsafe = sorted(p.name for p in folder.glob(_UNSAFE_PATTERN))
    if unsafe:
        raise UnsafeCheckpoint(f"checkpoint {folder}: holds {', '.join(unsafe)}, a pickle zoo never opens (an older zoo wrote "
                       "the EMA that way); restart the run, or delete the file to resume without the EMA state")
    rng_files = sorted(folder.glob("random_states_*.pkl"))
    if len(rng_files) != processes:
        raise ZooError(
            f"checkpoint {folder} was written by {len(rng_files)} process(es); this run has "
            f"{processes}: resume with the same number of processes"
        )
    for path in sorted(folder.iterdir()):
        if path.suffix in (".pkl", ".bin", ".pt", ".pth"):
            try:
                accelerate_load(path, map_location="cpu")  # weights_only=True: tensors and plain values only
            except pickle.UnpicklingError as err:
                if "Weights only load failed" in str(err):  # it names a callable: loading it could run code
                    raise UnsafeCheckpoint(f"checkpoint {folder}: {path.name} holds objects other than tensors and "
                                           "plain values; refused, as loading it could run code") from None
                raise ZooError(f"checkpoint {folder}: {path.name} is not a complete tensor file ({err})") from None
            except Exception as err:  # truncated or garbled: torch raises several kinds
                reason = " ".join(str(err).split())[:160]
                raise ZooError(f"checkpoint {folder}: {path.name} is not a complete tensor file ({reason})") from None
        elif path.suffix == ".safetensors":
            try:
                with safe_open(str(path), framework="pt") as handle:
                    for name in handle.keys():
                        handle.get_tensor(name)
            except (SafetensorError, OSError) as err:
                raise ZooError(f"checkpoint {folder}: {path.name} is not a complete safetensors file ({err})") from None
    if with_ema and not (folder / EMA_NAME).is_file():
        raise ZooError(f"checkpoint {folder}: the recipe has an EMA but the checkpoint holds no {EMA_NAME}")
    return state


def newest_usable_checkpoint(root: Path, processes: int, with_ema: bool) -> tuple[Path | None, list[str]]:
    """The newest checkpoint that passes ``check_checkpoint``, and why each newer one was skipped."""
    skipped: list[str] = []
    for _, folder in reversed(checkpoints(root)):
        try:
            check_checkpoint(folder, processes, with_ema)
        except UnsafeCheckpoint:
            raise  # not damage: a hostile or foreign file is the user's to look at, not to train past
        except ZooError as err:
            if "process(es)" in str(err):
                raise  # not damage: the same holds for every older checkpoint of this run
            skipped.append(str(err))
            continue
        return folder, skipped
    return None, skipped


def load_checkpoint(accelerator: Accelerator, folder: Path, ema=None) -> dict:
    """Restore weights, optimisers, RNG states and the EMA; returns ``trainer_state.json``."""
    state = check_checkpoint(folder, accelerator.num_processes, ema is not None)
    accelerator.load_state(str(folder))
    if ema is not None:
        from safetensors.torch import load_file

        try:
            ema.load_state_dict(load_file(str(folder / EMA_NAME)))
        except ValueError as err:
            raise ZooError(f"checkpoint {folder}: {EMA_NAME} does not fit this model ({err})") from None
    return state
