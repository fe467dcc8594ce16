"""Training state as safetensors + JSON, never as pickles: optimiser states, RNG states, plain records.

``torch.save`` / ``torch.load`` go through pickle, and unpickling a tampered file runs its code. Even
``weights_only=True`` is an unpickler with an allow-list, which has had escapes (CVE-2025-32434). The state
a checkpoint needs is tensors plus a few plain numbers, so each file here is a safetensors file: the
tensors as tensors, everything else as JSON in the file's metadata (key ``"zoo"``). Reading one parses a
header and copies bytes; nothing in it can name code.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.errors import ZooError

_META_KEY = "zoo"


def _json(value: Any, where: str) -> str:
    def refuse(obj):
        raise ZooError(f"{where}: a {type(obj).__name__} cannot be stored without pickle (expected tensors, "
                       "numbers, strings, lists and mappings)")

    return json.dumps(value, default=refuse)


def write_state(path: Path, tensors: dict[str, torch.Tensor], plain: Any) -> None:
    """One safetensors file: ``tensors`` as they are, ``plain`` (JSON values) in the metadata."""
    from safetensors.torch import save_file

    save_file({name: t.detach().cpu().contiguous() for name, t in tensors.items()}, str(path),
              metadata={_META_KEY: _json(plain, str(path))})


def read_state(path: Path) -> tuple[dict[str, torch.Tensor], Any]:
    """The ``tensors`` and ``plain`` values ``write_state`` wrote (on the CPU)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            plain = json.loads((handle.metadata() or {})[_META_KEY])
            return {name: handle.get_tensor(name) for name in handle.keys()}, plain
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as err:
        raise ZooError(f"{path}: not a state file zoo wrote ({type(err).__name__}: {err})") from None


# -- optimisers: state_dict() <-> tensors + JSON -------------------------------------------------------


def optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimiser's ``state_dict()`` split into tensors (``state.<param>.<key>``) and JSON values."""
    tensors, plain_state = {}, {}
    for index, entries in state_dict["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value
            else:  # e.g. SGD's momentum_buffer of None
                plain_state.setdefault(str(index), {})[key] = value
    return tensors, {"state": plain_state, "param_groups": state_dict["param_groups"]}


def optimizer_state_dict(tensors: dict[str, torch.Tensor], plain: dict, live: dict) -> dict:
    """The ``state_dict()`` that ``optimizer_state`` split; ``live`` is the optimiser's own, for its tuples."""
    state: dict[int, dict] = {}
    for name, tensor in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = tensor
    for index, entries in plain["state"].items():
        state.setdefault(int(index), {}).update(entries)
    groups = plain["param_groups"]
    # JSON has no tuples: give back those the optimiser holds (betas), so the restored state equals the saved one.
    for group, live_group in zip(groups, live["param_groups"]):
        for key, value in live_group.items():
            if isinstance(value, tuple) and isinstance(group.get(key), list):
                group[key] = tuple(group[key])
    return {"state": dict(sorted(state.items())), "param_groups": groups}


# -- random number generators: Python, NumPy, torch (CPU and CUDA) ---------------------------------------


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """This process's RNG states, as tensors + JSON (what accelerate's ``save_state`` pickles)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return rng_record(random.getstate(), np.random.get_state(legacy=True), torch.get_rng_state(), cuda)


def rng_record(python: tuple, numpy: tuple, cpu: torch.Tensor, cuda: list[torch.Tensor]) -> tuple[dict, dict]:
    """Tensors + JSON for the states ``random.getstate()``, ``np.random.get_state()``, ``torch.get_rng_state()``
    and ``torch.cuda.get_rng_state_all()`` return."""
    version, words, gauss_next = python
    kind, keys, position, has_gauss, cached_gaussian = numpy
    tensors = {
        "python": torch.tensor(words, dtype=torch.int64),  # 625 words below 2**32
        "numpy": torch.from_numpy(np.asarray(keys).astype(np.int64)),
        "torch": cpu,
        **{f"cuda.{i}": state for i, state in enumerate(cuda)},
    }
    plain = {"python": [version, gauss_next], "numpy": [kind, int(position), int(has_gauss), float(cached_gaussian)]}
    return tensors, plain


def set_rng_state(tensors: dict[str, torch.Tensor], plain: dict) -> None:
    """Restore what ``rng_state`` returned."""
    version, gauss_next = plain["python"]
    random.setstate((version, tuple(tensors["python"].tolist()), gauss_next))
    kind, position, has_gauss, cached_gaussian = plain["numpy"]
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(tensors["torch"])
    cuda = sorted((int(name.split(".")[1]), t) for name, t in tensors.items() if name.startswith("cuda."))
    if cuda and torch.cuda.is_available():
        for device, state in cuda[: torch.cuda.device_count()]:
            torch.cuda.set_rng_state(state, device)
