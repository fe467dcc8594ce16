"""Checkpoints of a run: safetensors and JSON only, written atomically, rotated, checked before they are read.

A checkpoint is ``OUTPUT/checkpoints/step-00000100/``:

======================================  =====================================  ==================================
file                                    format                                 read with
======================================  =====================================  ==================================
``model.safetensors``                   safetensors: the model's state_dict    ``safetensors.torch.load_model``
``optimizer.safetensors`` (``_1``: the  safetensors: tensors, with the param   ``zoo.train.safe_state``
discriminator's)                        groups and plain values as JSON
``random_states_<rank>.safetensors``    safetensors: torch / NumPy / Python    ``zoo.train.safe_state``, by each
                                        RNG words, the rest as JSON            process
``ema.safetensors``                     safetensors: the EMA's shadow weights  ``safetensors.torch.load_file``
``trainer_state.json``                  JSON: step, samples, recipe, loss      ``json``
                                        scaler; size + sha256 of every file
======================================  =====================================  ==================================

Nothing is written with ``torch.save`` and nothing is read with ``torch.load`` or ``pickle``: accelerate's
``save_state`` pickles RNG states and optimisers, and its ``load_state`` unpickles registered objects with
``weights_only=False`` (a tampered ``custom_checkpoint_0.pkl`` runs its code). A checkpoint folder holding any
pickle-format file (``.pkl``, ``.bin``, ``.pt``, ...) is refused before anything in it is opened; one an older
zoo wrote that way can be converted once, by its owner, with ``convert_pickled_checkpoint``.

A checkpoint is written into a hidden temporary folder and renamed into place only when complete, so a run
killed at any moment leaves the previous checkpoints intact. ``trainer_state.json`` records the size and
sha256 of every other file; a checkpoint damaged later (a truncated or changed file) is skipped on ``--resume``
for the newest one that checks out, and the run says so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from accelerate import Accelerator

from zoo.errors import ZooError
from zoo.train.safe_state import (
    optimizer_state,
    optimizer_state_dict,
    read_state,
    rng_record,
    rng_state,
    set_rng_state,
    write_state,
)

STATE_NAME = "trainer_state.json"
MODEL_NAME = "model.safetensors"
EMA_NAME = "ema.safetensors"
# Suffixes of pickle-based formats (pickle, torch.save, accelerate's save_state): never opened on resume.
PICKLE_SUFFIXES = (".pkl", ".pickle", ".bin", ".pt", ".pth", ".ckpt")
_RNG_NAME = re.compile(r"^random_states_(\d+)\.safetensors$")
_OPTIMIZER_NAME = re.compile(r"^optimizer(?:_(\d+))?\.safetensors$")
_NAME = re.compile(r"^step-(\d+)$")
_TEMP_PREFIX = ".tmp-"


class CheckpointRefused(ZooError):
    """A checkpoint resume will not use, and that no older checkpoint of the run would fix (not damage)."""


def rng_name(rank: int) -> str:
    return f"random_states_{rank}.safetensors"


def optimizer_name(index: int) -> str:
    return "optimizer.safetensors" if index == 0 else f"optimizer_{index}.safetensors"


def _fsync_tree(folder: Path) -> None:
    """Flush every file to disk before the rename publishes the folder (a crash must not publish empty files)."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def _file_record(folder: Path) -> dict[str, dict]:
    """Size and sha256 of every file in ``folder`` (what ``trainer_state.json`` records)."""
    from zoo.hub import sha256_of

    return {p.name: {"bytes": p.stat().st_size, "sha256": sha256_of(p)} for p in sorted(folder.iterdir())}


def checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Checkpoint folders under ``root`` that were renamed into place (complete when written), oldest first."""
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


def save_checkpoint(accelerator: Accelerator, root: Path, step: int, keep: int, state: dict, model,
                    optimizers: list, ema=None) -> Path:
    """Save the full training state after ``step`` optimiser steps; keep only the ``keep`` newest checkpoints.

    ``state``: JSON values recorded in ``trainer_state.json``; ``optimizers`` in a fixed order (the main one
    first); ``ema``: the ``EMA`` or None."""
    from safetensors.torch import save_file, save_model

    final = root / f"step-{step:08d}"
    temp = root / f"{_TEMP_PREFIX}{final.name}"
    if accelerator.is_main_process:
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    # Every process writes its own RNG states; the main process writes weights, optimiser states and the EMA.
    write_state(temp / rng_name(accelerator.process_index), *rng_state())
    if accelerator.is_main_process:
        save_model(model, str(temp / MODEL_NAME))
        for index, optimizer in enumerate(optimizers):
            write_state(temp / optimizer_name(index), *optimizer_state(optimizer.state_dict()))
        if ema is not None:
            save_file({name: t.contiguous() for name, t in ema.state_dict().items()}, str(temp / EMA_NAME))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        scaler = getattr(accelerator, "scaler", None)
        record = {"step": step, **state, "grad_scaler": scaler.state_dict() if scaler is not None else None}
        record["files"] = _file_record(temp)
        (temp / STATE_NAME).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        _fsync_tree(temp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(temp, final)
        for _, old in checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _refuse_pickles(folder: Path) -> None:
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointRefused(
            f"checkpoint {folder} holds {', '.join(pickles)}: pickle files, which zoo never opens (loading one can "
            "run code); an older zoo wrote checkpoints that way: start again with --overwrite, or, if you wrote this "
            "folder yourself, convert it once with zoo.train.checkpoint.convert_pickled_checkpoint(folder)"
        )


def check_checkpoint(folder: Path, processes: int, optimizers: int, with_ema: bool) -> dict:
    """Check a checkpoint before anything in it is loaded; returns its ``trainer_state.json``.

    Raises ``CheckpointRefused`` for a pickle file or a checkpoint of another kind of run (process or
    optimiser count, no EMA), and a plain ``ZooError`` for damage (a file missing, truncated or changed)."""
    from zoo.hub import sha256_of

    _refuse_pickles(folder)
    try:
        state = json.loads((folder / STATE_NAME).read_text(encoding="utf-8"))
        files = state["files"]
        expected = {name: (int(entry["bytes"]), str(entry["sha256"])) for name, entry in files.items()}
    except (OSError, ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
        raise ZooError(f"checkpoint {folder}: {STATE_NAME} is damaged ({type(err).__name__}: {err})") from None
    for name, (size, digest) in expected.items():
        path = folder / name
        if Path(name).name != name or name == STATE_NAME:
            raise ZooError(f"checkpoint {folder}: {STATE_NAME} lists {name!r}, not a file of the checkpoint")
        if not path.is_file():
            raise ZooError(f"checkpoint {folder}: {name} is missing")
        if path.stat().st_size != size:
            raise ZooError(f"checkpoint {folder}: {name} is {path.stat().st_size} bytes, {size} were written")
        if sha256_of(path) != digest:
            raise ZooError(f"checkpoint {folder}: {name} has changed since it was written (sha256 differs)")
    ranks = sorted(int(m.group(1)) for m in map(_RNG_NAME.match, expected) if m)
    if ranks != list(range(processes)):
        raise CheckpointRefused(f"checkpoint {folder} was written by {len(ranks)} process(es); this run has "
                                f"{processes}: resume with the same number of processes")
    if MODEL_NAME not in expected:
        raise ZooError(f"checkpoint {folder}: {STATE_NAME} lists no {MODEL_NAME}")
    saved = sum(1 for name in expected if _OPTIMIZER_NAME.match(name))
    if saved != optimizers:
        raise CheckpointRefused(f"checkpoint {folder} holds {saved} optimiser state(s), this run has {optimizers} "
                                "(was the discriminator switched on or off?): resume with the recipe that wrote it")
    if with_ema and EMA_NAME not in expected:
        raise CheckpointRefused(f"checkpoint {folder}: the recipe has an EMA but the checkpoint holds no {EMA_NAME}")
    return state


def newest_usable_checkpoint(root: Path, processes: int, optimizers: int,
                             with_ema: bool) -> tuple[Path | None, dict | None, list[str]]:
    """The newest checkpoint that passes ``check_checkpoint``, its state, and why each newer one was skipped.

    Damage is skipped; a refusal (``CheckpointRefused``) is raised, and so is damage in every checkpoint
    (resuming from step 0 would throw the run away: that takes ``--overwrite``)."""
    skipped: list[str] = []
    found = checkpoints(root)
    for _, folder in reversed(found):
        try:
            return folder, check_checkpoint(folder, processes, optimizers, with_ema), skipped
        except CheckpointRefused:
            raise
        except ZooError as err:
            skipped.append(str(err))
    if found:
        raise ZooError(f"{root}: no checkpoint can be resumed from (the newest: {skipped[0]}); "
                       "start again with --overwrite")
    return None, None, skipped


def load_checkpoint(accelerator: Accelerator, folder: Path, state: dict, model, optimizers: list, ema=None) -> None:
    """Restore weights, optimisers, the loss scaler, the EMA and this process's RNG states from a checked folder."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, load_model

    def restore(name: str, action) -> None:
        try:
            action(folder / name)
        except ZooError:
            raise
        except SafetensorError as err:
            raise CheckpointRefused(f"checkpoint {folder}: {name} is not a safetensors file ({err})") from None
        except (RuntimeError, ValueError, KeyError, TypeError) as err:  # torch's messages for a mismatch
            reason = " ".join(str(err).split())[:300]
            raise CheckpointRefused(f"checkpoint {folder}: {name} does not fit this run ({reason})") from None

    restore(MODEL_NAME, lambda path: load_model(model, str(path), strict=True))
    for index, optimizer in enumerate(optimizers):
        restore(optimizer_name(index), lambda path, optimizer=optimizer: optimizer.load_state_dict(
            optimizer_state_dict(*read_state(path), optimizer.state_dict())))
    if ema is not None:
        restore(EMA_NAME, lambda path: ema.load_state_dict(load_file(str(path))))
    scaler = getattr(accelerator, "scaler", None)
    if scaler is not None and state.get("grad_scaler"):
        restore(STATE_NAME, lambda path: scaler.load_state_dict(state["grad_scaler"]))
    restore(rng_name(accelerator.process_index), lambda path: set_rng_state(*read_state(path)))


def convert_pickled_checkpoint(folder: str | Path) -> Path:
    """Rewrite, in place, a checkpoint an older zoo saved with accelerate's ``save_state`` (pickles) as safetensors.

    The pickles are opened with ``torch.load(weights_only=True)`` (tensors and plain values only), once, at the
    owner's request: call it only on a folder you wrote. Returns the folder, which ``--resume`` then accepts."""
    from accelerate.utils import load
    from safetensors.torch import save_file

    folder = Path(folder)
    state = json.loads((folder / STATE_NAME).read_text(encoding="utf-8"))
    for path in sorted(folder.glob("random_states_*.pkl")):
        saved = load(path, weights_only=True)
        cuda = saved.get("torch_cuda_manual_seed", [])
        record = rng_record(saved["random_state"], saved["numpy_random_seed"], saved["torch_manual_seed"], cuda)
        write_state(folder / path.with_suffix(".safetensors").name, *record)
    for path in sorted(folder.glob("optimizer*.bin")):
        write_state(folder / path.with_suffix(".safetensors").name, *optimizer_state(load(path, weights_only=True)))
    if (folder / "custom_checkpoint_0.pkl").is_file():  # the EMA, the only object the trainer registered
        ema = load(folder / "custom_checkpoint_0.pkl", weights_only=True)
        save_file({name: t.contiguous() for name, t in ema.items()}, str(folder / EMA_NAME))
    if (folder / "scaler.pt").is_file():
        state["grad_scaler"] = load(folder / "scaler.pt", weights_only=True)
    for path in folder.iterdir():
        if path.suffix in PICKLE_SUFFIXES:
            path.unlink()
    files = _file_record(folder)
    files.pop(STATE_NAME)
    state["files"] = files
    (folder / STATE_NAME).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    return folder
