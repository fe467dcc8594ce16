"""Image recipes: the tiny ones train the registry entries they name; the paper-scale ones build and step."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from zoo.train.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[2]
TINY = ("vq-f8", "vq-f8-robust", "fsq-f8", "lfq-f8")


@pytest.mark.parametrize("name", TINY)
def test_tiny_recipes_train_their_registry_entry_on_held_in_photos(name):
    stage = load_recipe(ROOT / "recipes/image" / f"{name}.yaml").stages[0]
    assert stage.model.name == name and not stage.model.overrides
    assert zoo.registry.get(name).recipe == f"recipes/image/{name}.yaml"
    assert stage.data.train["name"] == "photos" and stage.data.train["split"] == "train"
    perturbation = zoo.registry.get(name).config["perturbation"]
    if perturbation:  # the schedule's epochs cover the run as RobusTok's 200 do: anneal over 20% -> 60% of it
        epochs = stage.steps / perturbation["steps_per_epoch"]
        assert perturbation["anneal_start"] / epochs == pytest.approx(0.2)
        assert perturbation["anneal_end"] / epochs == pytest.approx(0.6)


def test_robust_entry_is_the_baseline_plus_perturbation():
    base, robust = zoo.registry.get("vq-f8").config, zoo.registry.get("vq-f8-robust").config
    assert {k: v for k, v in robust.items() if k != "perturbation"} == {k: v for k, v in base.items()
                                                                      if k != "perturbation"}
    assert base["perturbation"] is None and robust["perturbation"]["alpha"] == 1.0


def test_paper_scale_recipes_carry_robustok_settings():
    stage = load_recipe(ROOT / "recipes/image/vq-f16-robust-imagenet.yaml").stages[0]
    config = stage.model.config
    assert config["channel_mult"] == [1, 1, 2, 2, 4] and config["quantizer"]["codebook_size"] == 4096
    assert config["perturbation"] == {"alpha": 1.0, "beta": 0.1, "delta": 100, "anneal_start": 40.0,
                                      "anneal_end": 120.0, "end_ratio": 0.5, "steps_per_epoch": 1251}
    assert stage.steps == 200 * 1251 and stage.batch_size == 1024
    baseline = load_recipe(ROOT / "recipes/image/vq-f16-imagenet.yaml").stages[0].model.config
    assert {k: v for k, v in config.items() if k != "perturbation"} == {k: v for k, v in baseline.items()
                                                                        if k != "perturbation"}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["vq-f16-imagenet", "vq-f16-robust-imagenet"])
def test_paper_scale_recipe_builds_and_runs_one_step_on_cpu(recipe, tmp_path, vgg16_file):
    """256x256, f16, codebook 4096, LPIPS (random VGG file) and the GAN from step 0, perturbation on: one step."""

    vgg = vgg16_file
    out = tmp_path / "run"
    overrides = [
        "steps=1", "batch_size=2", 'mixed_precision="no"', "ema=null", "checkpoint.every=0", "log.every=1",
        "log.progress=false", "data.num_workers=0", "data.val=null",
        "data.train={name: photos, split: train, size: 256, scales: [1]}",
        f"model.config.loss.perceptual_weights={vgg}", "model.config.loss.gan_start=0", f"output_dir={out}",
    ]
    result = subprocess.run([sys.executable, "-m", "zoo", "train", f"recipes/image/{recipe}.yaml", *overrides],
                            cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    step = next(row for row in logged if row.get("step") == 1 and "loss" in row)
    assert {"l1", "l2", "perceptual", "commitment", "gan"} <= set(step)
    tok = zoo.load(out / "final")
    assert tok.vocab_size == 4096 and tok.downsample == 16
    assert tok.encode(torch.rand(1, 3, 256, 256)).shape == (1, 16, 16)
