"""The BEATs loop as one multi-stage recipe: every stage exports a folder the next stage loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from zoo.train.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[2]
SMALL_DATA = (
    'data.train={name: audio-mix, sets: ["gm-notes:pitch_step=24", "espeak:languages=en+de,per_language=10"]}'
)


def _per_stage(recipe: str, **values) -> list[str]:
    """Overrides setting ``key=value`` in every stage (a stage's own keys win over top-level ones)."""
    names = [stage.name for stage in load_recipe(recipe).stages]
    return [f"stages.{name}.{key}={value}" for name in names for key, value in values.items()]


def _train(recipe: str, out: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "zoo", "train", recipe, f"output_dir={out}", SMALL_DATA, *overrides]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_tiny_recipe_chains_its_stages():
    plan = load_recipe("recipes/audio/beats-tiny.yaml")
    assert [stage.name for stage in plan.stages] == ["ssl1", "tokenizer2", "ssl2", "tokenizer3", "ssl3"]
    ssl1, tokenizer2, ssl2, tokenizer3, ssl3 = plan.stages
    assert ssl1.model.config["label_tokenizer"] == "beats-random"

    def final(stage):
        return str((plan.output_dir / stage.name / "final").resolve())

    for teacher, tokenizer, student in ((ssl1, tokenizer2, ssl2), (ssl2, tokenizer3, ssl3)):
        assert tokenizer.model.config["teacher"] == final(teacher)
        assert student.model.config["label_tokenizer"] == final(tokenizer)
        assert student.model.config["vocab_size"] == tokenizer.model.config["codebook_size"]
    assert {k: v for k, v in tokenizer3.model.config.items() if k != "teacher"} == \
        {k: v for k, v in tokenizer2.model.config.items() if k != "teacher"}


def test_tiny_loop_runs_end_to_end(tmp_path):
    audio = torch.rand(2, 24_000) * 0.2 - 0.1
    recipe = "recipes/audio/beats-tiny.yaml"
    _train(recipe, tmp_path, *_per_stage(recipe, steps=2, batch_size=4), "schedule.warmup_steps=1")
    finals = {name: tmp_path / name / "final" for name in ("ssl1", "tokenizer2", "ssl2", "tokenizer3", "ssl3")}
    for name, final in finals.items():
        model = zoo.load(final)
        tokens = model.encode(audio, torch.tensor([24_000, 16_000]))
        assert tokens.lengths.tolist() == [72, 48] and tokens.ids.max() < 1024, name
        record = json.loads((final / "config.json").read_text())
        assert record["metadata"]["stage"] == name and record["metadata"]["steps"] == 2
    for tokenizer_stage, ssl_stage in (("tokenizer2", "ssl2"), ("tokenizer3", "ssl3")):
        tokenizer = zoo.load(finals[tokenizer_stage])
        assert tokenizer.estimator is None and bool(tokenizer.quantizer.initted)
        trained_with = json.loads((finals[ssl_stage] / "config.json").read_text())["metadata"]["trained_with"]
        assert trained_with == {"label_tokenizer": str(finals[tokenizer_stage].resolve())}


@pytest.mark.slow
def test_paper_scale_recipe_builds_and_runs_one_step(tmp_path):
    recipe = "recipes/audio/beats-base.yaml"
    overrides = _per_stage(recipe, steps=1, batch_size=2)
    _train(recipe, tmp_path, *overrides, "data.audio_seconds=1.0", "mixed_precision=no", "checkpoint.every=0")
    ssl3 = zoo.load(tmp_path / "ssl3" / "final")
    tokenizer3 = zoo.load(tmp_path / "tokenizer3" / "final")
    assert sum(p.numel() for p in ssl3.encoder.parameters()) > 85e6  # 12 x 768 ViT
    assert tokenizer3.codebook.shape == (1024, 256) and tokenizer3.estimator is None
    tokens = ssl3.encode(torch.rand(1, 32_000) * 0.2 - 0.1)
    assert tokens.ids.shape == (1, 96) and tokens.ids.max() < 1024
