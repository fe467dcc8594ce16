"""Two CPU processes under ``accelerate launch``: world size 2, half of every batch each, identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from zoo.train import train
from zoo.train.logs import read_log

ROOT = Path(__file__).resolve().parents[2]
RECIPE = "recipes/test/toy-image.yaml"
SETTINGS = [
    "steps=6",
    "batch_size=8",
    "grad_accum=2",
    "checkpoint.every=3",
    "log.every=2",
    "model.config.discriminator=true",
    "model.config.disc_start=2",
]
# The invocation docs/training.md gives. Without ACCELERATE_USE_CPU, --multi_gpu on a machine without
# GPUs gives two worlds of one (zoo refuses that); with --cpu, --num_processes 2 runs a single process.
LAUNCH = [
    "-m",
    "accelerate.commands.launch",
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
]


def _free_port() -> str:
    """A free local port, so concurrent launches (other test runs) never collide on the default 29500."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def _trace(folder: Path, rank: int) -> dict[int, list[list[int]]]:
    """Labels a process saw, by step (one list per micro-batch)."""
    seen: dict[int, list[list[int]]] = {}
    for line in (folder / f"rank-{rank}.jsonl").read_text().splitlines():
        record = json.loads(line)
        seen.setdefault(record["step"], []).append(record["labels"])
    return seen


def test_two_processes_split_every_batch_and_stay_in_sync(tmp_path):
    out, trace2, trace1 = tmp_path / "run", tmp_path / "trace2", tmp_path / "trace1"
    trace2.mkdir()
    trace1.mkdir()
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    command = [
        sys.executable,
        *LAUNCH,
        "--main_process_port",
        _free_port(),
        "-m",
        "zoo",
        "train",
        RECIPE,
        f"output_dir={out}",
        *SETTINGS,
        f"model.config.trace_dir={trace2}",
    ]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]

    records = read_log(out / "log.jsonl")
    starts = [r for r in records if r.get("event") == "start"]
    assert len(starts) == 1, "only the main process writes the log"
    assert starts[0]["world_size"] == 2 and starts[0]["process_batch"] == 4
    (end,) = [r for r in records if r.get("event") == "end"]
    assert end["world_size"] == 2 and len(end["rank_weight_stats"]) == 2
    assert end["rank_weight_stats"][0] == end["rank_weight_stats"][1] and end["ranks_in_sync"]
    # Checkpoints hold both processes' RNG states.
    checkpoint = out / "checkpoints" / "step-00000003"
    assert sorted(p.name for p in checkpoint.glob("random_states_*")) == [
        "random_states_0.safetensors",
        "random_states_1.safetensors",
    ]
    assert json.loads((out / "final" / "config.json").read_text())["metadata"]["world_size"] == 2

    # One process sees whole batches; two processes see its first and second halves, micro-batch by micro-batch.
    train(RECIPE, [f"output_dir={tmp_path / 'single'}", *SETTINGS, f"model.config.trace_dir={trace1}"])
    whole, first, second = _trace(trace1, 0), _trace(trace2, 0), _trace(trace2, 1)
    assert sorted(whole) == sorted(first) == sorted(second) == list(range(6))
    for step, batches in whole.items():
        assert len(batches) == 2  # grad_accum micro-batches
        for micro, labels in enumerate(batches):
            assert len(labels) == 8
            assert first[step][micro] == labels[:4] and second[step][micro] == labels[4:]
