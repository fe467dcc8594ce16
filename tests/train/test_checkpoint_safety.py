"""Resume never runs code from a checkpoint folder, and a damaged newest checkpoint falls back to an older one."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from zoo.errors import ZooError
from zoo.train import train
from zoo.train.checkpoint import EMA_NAME, checkpoints

RECIPE = "recipes/test/toy-image.yaml"
SETTINGS = ["steps=6", "checkpoint.every=2", "checkpoint.keep=3", "ema={decay: 0.5}", "log.progress=false"]


class Planted:
    """A pickle whose loading writes a marker file: what a hostile checkpoint would do with os.system."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "code ran"))


def _run(tmp_path: Path, *extra: str, name: str = "run") -> Path:
    return train(RECIPE, [f"output_dir={tmp_path / name}", *SETTINGS, *extra])


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 6-step run with checkpoints after steps 2 and 4 (resuming it without ``final`` redoes 5 and 6)."""
    root = tmp_path_factory.mktemp("ckpt")
    train(RECIPE, [f"output_dir={root / 'run'}", *SETTINGS])
    return root / "run"


def test_checkpoints_hold_no_pickle_of_objects_and_the_ema_as_safetensors(finished):
    (_, newest), *_ = reversed(checkpoints(finished / "checkpoints"))
    names = sorted(p.name for p in newest.iterdir())
    assert EMA_NAME in names and not [n for n in names if n.startswith("custom_checkpoint")]
    assert load_file(str(newest / EMA_NAME))  # tensors, readable without unpickling


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "run"
    shutil.copytree(run, target)
    shutil.rmtree(target / "final", ignore_errors=True)
    return target


@pytest.mark.parametrize("planted_as", ["random_states_0.pkl", "optimizer.bin", "custom_checkpoint_0.pkl", "all"])
def test_a_planted_pickle_never_runs(finished, tmp_path, planted_as):
    run = _copy(finished, tmp_path)
    marker = tmp_path / "MARKER"
    for _, folder in checkpoints(run / "checkpoints"):
        names = [p.name for p in folder.iterdir() if p.suffix in (".pkl", ".bin")] + ["custom_checkpoint_0.pkl"]
        for name in names if planted_as == "all" else [planted_as]:
            with open(folder / name, "wb") as handle:
                pickle.dump(Planted(marker), handle)
    with pytest.raises(ZooError) as caught:
        train(RECIPE, [f"output_dir={run}", *SETTINGS], resume=True)
    message = str(caught.value)
    assert "\n" not in message and ("pickle zoo never opens" in message or "loading it could run code" in message)
    assert not marker.exists()


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path)
    (_, newest), (older_step, _) = list(reversed(checkpoints(run / "checkpoints")))[:2]
    weights = newest / "model.safetensors"
    with open(weights, "r+b") as handle:
        handle.truncate(os.path.getsize(weights) // 2)
    resumed = train(RECIPE, [f"output_dir={run}", *SETTINGS], resume=True)
    out = capsys.readouterr()
    assert "skipping a damaged checkpoint" in out.out + out.err and newest.name in out.out + out.err
    uninterrupted = _run(tmp_path, name="straight")
    a, b = load_file(str(resumed / "model.safetensors")), load_file(str(uninterrupted / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # resumed from step `older_step`
    assert older_step == 2
