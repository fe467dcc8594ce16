"""A run killed with SIGKILL mid-training and resumed ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from zoo.train.checkpoint import checkpoints, latest_checkpoint, remove_partial
from zoo.train.logs import read_log

ROOT = Path(__file__).resolve().parents[2]
RECIPE = "recipes/test/toy-image.yaml"
# Everything that carries state across steps: random crops and flips, latent noise (global RNG), an
# AdamW state, gradient accumulation, a discriminator with its own optimiser from step 4, and EMA weights.
SETTINGS = [
    "steps=14",
    "batch_size=4",
    "grad_accum=2",
    "checkpoint.every=3",
    "checkpoint.keep=2",
    "log.every=1",
    "data.crop=12",
    "data.flip=true",
    "model.config.discriminator=true",
    "model.config.disc_start=4",
    "ema={decay: 0.8}",
]


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "zoo", "train", RECIPE, f"output_dir={out}", *SETTINGS, *extra]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _weights(final: Path) -> dict[str, torch.Tensor]:
    return load_file(str(final / "model.safetensors"))


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    subprocess.run(_command(whole), cwd=ROOT, env=_env(), check=True, capture_output=True, timeout=180)

    # The same run, slowed down so it can be killed between checkpoints; sleep changes no number.
    slow = "model.config.sleep=0.1"
    process = subprocess.Popen(
        _command(broken, slow), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while latest_checkpoint(broken / "checkpoints") is None or checkpoints(broken / "checkpoints")[-1][0] < 6:
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint at step 6 within 120 s"
        time.sleep(0.02)
    time.sleep(0.15)  # into the next steps: the kill lands mid-training, maybe mid-checkpoint
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert not (broken / "final").exists()
    killed_at = max(r["step"] for r in read_log(broken / "log.jsonl") if "loss" in r)
    assert killed_at < 14

    subprocess.run(
        _command(broken, slow, "--resume"), cwd=ROOT, env=_env(), check=True, capture_output=True, timeout=180
    )
    records = read_log(broken / "log.jsonl")
    (resumed,) = [r for r in records if r.get("event") == "resume"]
    assert 6 <= resumed["step"] <= killed_at
    assert resumed["checkpoint"].endswith(f"step-{resumed['step']:08d}")
    assert resumed["changed_settings"] == []

    expected, got = _weights(whole / "final"), _weights(broken / "final")
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    # The logged losses after the resume point repeat the uninterrupted run's exactly.
    whole_losses = {r["step"]: r["loss"] for r in read_log(whole / "log.jsonl") if "loss" in r}
    resumed_losses = {r["step"]: r["loss"] for r in records[records.index(resumed) :] if "loss" in r}
    assert resumed_losses == {s: whole_losses[s] for s in resumed_losses}


def test_latest_checkpoint_ignores_partial_and_incomplete_folders(tmp_path):
    root = tmp_path / "checkpoints"
    for name, complete in [
        ("step-00000003", True),
        ("step-00000006", True),
        ("step-00000009", False),
        (".tmp-step-00000012", True),
    ]:
        (root / name).mkdir(parents=True)
        if complete:
            (root / name / "trainer_state.json").write_text("{}")
    assert [step for step, _ in checkpoints(root)] == [3, 6]
    assert latest_checkpoint(root).name == "step-00000006"
    remove_partial(root)
    assert not (root / ".tmp-step-00000012").exists()
    assert latest_checkpoint(tmp_path / "nothing-here") is None
