"""Resume never runs code from a checkpoint folder, and a damaged newest checkpoint falls back to an older one.

Every test resumes a copy of one finished run (checkpoints after steps 2 and 4 of 6) without its ``final``;
a resume that goes through must end with exactly the weights of that uninterrupted run.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from zoo.errors import ZooError
from zoo.hub import sha256_of
from zoo.train import train
from zoo.train.checkpoint import STATE_NAME, checkpoints, convert_pickled_checkpoint
from zoo.train.safe_state import optimizer_state_dict, read_state

ROOT = Path(__file__).resolve().parents[2]
RECIPE = "recipes/test/toy-image.yaml"
SETTINGS = ["steps=6", "checkpoint.every=2", "checkpoint.keep=3", "ema={decay: 0.5}", "log.progress=false"]
# What accelerate's save_state / load_state write and read (pickles), and what an attacker would plant.
PICKLE_NAMES = ["random_states_0.pkl", "optimizer.bin", "optimizer_1.bin", "scheduler.bin", "scaler.pt",
                "custom_checkpoint_0.pkl"]


class Planted:
    """A pickle whose loading runs a shell command that creates ``marker``: what a hostile checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ckpt")
    train(RECIPE, [f"output_dir={root / 'run'}", *SETTINGS])
    return root / "run"


def _copy(finished: Path, tmp_path: Path) -> Path:
    """The run as if killed after its last checkpoint: no ``final`` yet."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    shutil.rmtree(run / "final")
    return run


def _resume(run: Path) -> Path:
    return train(RECIPE, [f"output_dir={run}", *SETTINGS], resume=True)


def _assert_same_weights(a: Path, b: Path) -> None:
    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _refusal(run: Path) -> str:
    with pytest.raises(ZooError) as caught:
        _resume(run)
    message = str(caught.value)
    assert "\n" not in message, "a refusal is one line"
    return message


def _rehash(folder: Path) -> None:
    """Rewrite the file list of ``trainer_state.json`` to match the folder, as an attacker could."""
    state = json.loads((folder / STATE_NAME).read_text())
    state["files"] = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_of(p)}
                      for p in folder.iterdir() if p.name != STATE_NAME}
    (folder / STATE_NAME).write_text(json.dumps(state))


def test_a_checkpoint_is_safetensors_and_json_only(finished):
    for _, folder in checkpoints(finished / "checkpoints"):
        names = sorted(p.name for p in folder.iterdir())
        assert names == ["ema.safetensors", "model.safetensors", "optimizer.safetensors",
                         "random_states_0.safetensors", "trainer_state.json"]
        recorded = json.loads((folder / STATE_NAME).read_text())["files"]
        assert sorted(recorded) == [n for n in names if n != STATE_NAME]
        assert all(recorded[n]["sha256"] == sha256_of(folder / n) for n in recorded)


def test_resuming_the_copy_ends_like_the_uninterrupted_run(finished, tmp_path):
    _assert_same_weights(_resume(_copy(finished, tmp_path)), finished / "final")


@pytest.mark.parametrize("planted_as", [*PICKLE_NAMES, "all"])
def test_a_planted_pickle_is_refused_unopened(finished, tmp_path, planted_as):
    run, marker = _copy(finished, tmp_path), tmp_path / "MARKER"
    for _, folder in checkpoints(run / "checkpoints"):
        for name in PICKLE_NAMES if planted_as == "all" else [planted_as]:
            (folder / name).write_bytes(pickle.dumps(Planted(marker)))
    message = _refusal(run)
    print(message)
    assert "pickle files, which zoo never opens" in message and "convert_pickled_checkpoint" in message
    assert (planted_as if planted_as != "all" else "custom_checkpoint_0.pkl") in message
    assert not marker.exists(), "the planted pickle ran"


@pytest.mark.parametrize("replaced", ["random_states_0.safetensors", "optimizer.safetensors", "ema.safetensors",
                                      "model.safetensors"])
def test_pickle_bytes_in_place_of_a_safetensors_file_never_run(finished, tmp_path, replaced):
    run, marker = _copy(finished, tmp_path), tmp_path / "MARKER"
    for _, folder in checkpoints(run / "checkpoints"):
        (folder / replaced).write_bytes(pickle.dumps(Planted(marker)))
    # As written, the file list's sha256 no longer matches: every checkpoint is damaged.
    message = _refusal(run)
    assert "no checkpoint can be resumed from" in message and "--overwrite" in message and replaced in message
    # With the file list forged to match, the file is still read as safetensors only, and refused.
    for _, folder in checkpoints(run / "checkpoints"):
        _rehash(folder)
    message = _refusal(run)
    print(message)
    assert f"{replaced} is not a safetensors file" in message or "not a state file zoo wrote" in message
    assert not marker.exists(), "the planted pickle ran"


def test_the_cli_refuses_a_planted_pickle_in_one_line_with_exit_2(finished, tmp_path):
    run, marker = _copy(finished, tmp_path), tmp_path / "MARKER"
    for _, folder in checkpoints(run / "checkpoints"):
        for name in PICKLE_NAMES:
            (folder / name).write_bytes(pickle.dumps(Planted(marker)))
    result = subprocess.run([sys.executable, "-m", "zoo", "train", RECIPE, f"output_dir={run}", *SETTINGS, "--resume"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    print(result.stderr)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "pickle files, which zoo never opens" in result.stderr and not marker.exists()


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path)
    (_, older), (_, newest) = checkpoints(run / "checkpoints")
    weights = newest / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    final = _resume(run)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "skipping a damaged checkpoint" in line]
    print(*warnings)
    assert len(warnings) == 1 and str(newest) in warnings[0] and "model.safetensors is" in warnings[0]
    assert warnings[0].endswith(f"resuming from {older}")
    _assert_same_weights(final, finished / "final")  # steps 3 to 6 redone from the checkpoint after step 2
    (resumed,) = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"resume"' in line]
    assert resumed["step"] == 2


def test_every_checkpoint_damaged_is_refused_not_restarted(finished, tmp_path):
    run = _copy(finished, tmp_path)
    for _, folder in checkpoints(run / "checkpoints"):
        os.truncate(folder / "optimizer.safetensors", 100)
    message = _refusal(run)
    assert "no checkpoint can be resumed from" in message and "optimizer.safetensors is 100 bytes" in message
    assert not (run / "final").exists()


def test_a_checkpoint_of_another_run_shape_is_refused(finished, tmp_path):
    run = _copy(finished, tmp_path)
    with pytest.raises(ZooError, match="holds 1 optimiser state.*this run has 2"):
        train(RECIPE, [f"output_dir={run}", *SETTINGS, "model.config.discriminator=true"], resume=True)
    for _, folder in checkpoints(run / "checkpoints"):
        (folder / "ema.safetensors").unlink()
        _rehash(folder)
    assert "the recipe has an EMA but the checkpoint holds no ema.safetensors" in _refusal(run)


def _to_pickled_layout(folder: Path) -> None:
    """Rewrite a checkpoint the way accelerate's save_state wrote it for an older zoo (torch.save pickles)."""
    rng, plain = read_state(folder / "random_states_0.safetensors")
    (version, gauss_next), (kind, position, has_gauss, cached) = plain["python"], plain["numpy"]
    torch.save({"random_state": (version, tuple(rng["python"].tolist()), gauss_next),
                "numpy_random_seed": (kind, rng["numpy"].numpy().astype("uint32"), position, has_gauss, cached),
                "torch_manual_seed": rng["torch"]}, folder / "random_states_0.pkl")
    torch.save(optimizer_state_dict(*read_state(folder / "optimizer.safetensors"), {"param_groups": []}),
               folder / "optimizer.bin")
    torch.save(load_file(str(folder / "ema.safetensors")), folder / "custom_checkpoint_0.pkl")
    for name in ("random_states_0.safetensors", "optimizer.safetensors", "ema.safetensors"):
        (folder / name).unlink()
    state = json.loads((folder / STATE_NAME).read_text())
    del state["files"], state["grad_scaler"]
    (folder / STATE_NAME).write_text(json.dumps(state))


def test_an_older_pickled_checkpoint_is_refused_then_converted_by_its_owner(finished, tmp_path):
    run = _copy(finished, tmp_path)
    for _, folder in checkpoints(run / "checkpoints"):
        _to_pickled_layout(folder)
    assert "random_states_0.pkl" in _refusal(run)
    for _, folder in checkpoints(run / "checkpoints"):
        convert_pickled_checkpoint(folder)
        assert not [p for p in folder.iterdir() if p.suffix in (".pkl", ".bin")]
    _assert_same_weights(_resume(run), finished / "final")
