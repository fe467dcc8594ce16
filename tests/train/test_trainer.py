"""The trainer on the toy family: export, EMA, schedule, accumulation, clipping, GAN phases, fit, eval, stages."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import zoo
from tests._toy_family import ToyVQ
from zoo.data import collate, load_dataset
from zoo.errors import ZooError
from zoo.train import train
from zoo.train.data import StepSampler
from zoo.train.logs import read_log
from zoo.train.schema import ScheduleSpec
from zoo.train.trainer import learning_rate, named_losses

RECIPE = "recipes/test/toy-image.yaml"


def run(tmp_path: Path, *overrides: str, name: str = "run") -> Path:
    return train(RECIPE, [f"output_dir={tmp_path / name}", *overrides])


def weight_stats(state: dict) -> list[float]:
    """The trainer's fingerprint of a state dict, in module order (see zoo.train.trainer.weight_stats)."""
    flat = torch.cat([t.double().reshape(-1) for t in state.values() if t.is_floating_point()])
    positions = torch.arange(1, flat.numel() + 1, dtype=torch.float64) / flat.numel()
    return [flat.sum().item(), (flat * flat).sum().item(), (flat * positions).sum().item()]


def images(n: int = 4) -> torch.Tensor:
    dataset = load_dataset("synthetic-images:size=16", split="test")
    return collate([dataset[i] for i in range(n)])["image"]


def test_export_is_the_trained_model_and_loads_with_zoo_load(tmp_path):
    final = run(tmp_path, "steps=6", "log.every=3")
    assert final == tmp_path / "run" / "final"
    records = read_log(tmp_path / "run" / "log.jsonl")
    assert [r["step"] for r in records if "loss" in r] == [3, 6]
    assert all(r["samples_per_s"] > 0 and math.isfinite(r["loss"]) for r in records if "loss" in r)
    (end,) = [r for r in records if r.get("event") == "end"]

    tok = zoo.load(final)
    assert isinstance(tok, ToyVQ) and not tok.training
    assert weight_stats(tok.state_dict()) == end["rank_weight_stats"][0]  # the exported weights are the trained ones
    again = zoo.load(final)
    x = images()
    assert torch.equal(tok.encode(x), again.encode(x))
    assert torch.equal(tok.decode(tok.encode(x)), again.decode(again.encode(x)))
    record = json.loads((final / "config.json").read_text())
    assert record["target"] == "tests._toy_family:ToyVQ"
    metadata = record["metadata"]
    assert metadata["recipe"]["steps"] == 6 and metadata["recipe"]["optimizer"]["lr"] == 3e-3
    assert metadata["steps"] == 6 and metadata["weights"] == "raw" and metadata["world_size"] == 1
    assert metadata["git"] is None or len(metadata["git"].split("+")[0]) == 40


def test_ema_weights_are_exported(tmp_path):
    steps = ["steps=5", "log.every=5"]
    copy = run(tmp_path, *steps, "ema={decay: 0.0}", name="copy")  # decay 0: the EMA is the last weights
    end = [r for r in read_log(copy.parent / "log.jsonl") if r.get("event") == "end"][0]
    assert weight_stats(zoo.load(copy).state_dict()) == end["rank_weight_stats"][0]

    smooth = run(tmp_path, *steps, "ema={decay: 0.9}", name="smooth")
    end = [r for r in read_log(smooth.parent / "log.jsonl") if r.get("event") == "end"][0]
    exported = zoo.load(smooth).state_dict()
    assert weight_stats(exported) != end["rank_weight_stats"][0]
    assert json.loads((smooth / "config.json").read_text())["metadata"]["weights"] == "ema"
    # A slow EMA stays close to the initial weights (ToyVQ under seed 0).
    torch.manual_seed(0)
    initial = ToyVQ(channels=8, codebook_size=16, code_dim=4).state_dict()
    raw = load_file(str(copy / "model.safetensors"))
    assert (exported["codes"] - initial["codes"]).norm() < (raw["codes"] - initial["codes"]).norm()


def test_learning_rate_schedule_by_hand():
    warm_cos = ScheduleSpec(warmup_steps=4, decay="cosine", min_lr_ratio=0.1)
    assert [learning_rate(1.0, warm_cos, s, 14) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert learning_rate(1.0, warm_cos, 4, 14) == pytest.approx(1.0)
    assert learning_rate(1.0, warm_cos, 9, 14) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: cos = 0
    assert learning_rate(1.0, warm_cos, 14, 14) == pytest.approx(0.1)
    linear = ScheduleSpec(warmup_steps=0, decay="linear", min_lr_ratio=0.0)
    assert learning_rate(2.0, linear, 5, 10) == pytest.approx(1.0)
    assert learning_rate(2.0, ScheduleSpec(decay="constant"), 7, 10) == 2.0


def test_gradient_accumulation_matches_one_large_batch(tmp_path):
    common = ["steps=3", "model.config.noise=0", "grad_clip=null"]
    large = run(tmp_path, *common, "batch_size=8", "grad_accum=1", name="large")
    accumulated = run(tmp_path, *common, "batch_size=4", "grad_accum=2", name="accumulated")
    a, b = load_file(str(large / "model.safetensors")), load_file(str(accumulated / "model.safetensors"))
    for name in a:
        if name != "usage":  # a statistic of micro-batches, not trained
            torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_gradient_clipping_bounds_the_update(tmp_path):
    # One plain SGD step of lr 1 moves the weights by exactly the clipped gradient, whose norm is grad_clip.
    final = run(
        tmp_path,
        "steps=1",
        "optimizer={name: sgd, lr: 1.0, momentum: 0.0}",
        "schedule={warmup_steps: 0, decay: constant}",
        "grad_clip=0.001",
    )
    torch.manual_seed(0)
    initial = ToyVQ(channels=8, codebook_size=16, code_dim=4).state_dict()
    trained = load_file(str(final / "model.safetensors"))
    moved = torch.cat([(trained[k] - initial[k]).reshape(-1) for k in initial if k != "usage"])
    assert moved.norm().item() == pytest.approx(0.001, rel=1e-3)
    logged = [r for r in read_log(final.parent / "log.jsonl") if "grad_norm" in r][0]
    assert logged["grad_norm"] > 0.001  # the raw norm is logged, before clipping


def test_discriminator_has_its_own_optimiser_and_phases(tmp_path):
    torch.manual_seed(0)
    initial = ToyVQ(channels=8, codebook_size=16, code_dim=4, discriminator=True).state_dict()
    disc_keys = [k for k in initial if k.startswith("discriminator.")]
    resting = run(
        tmp_path,
        "steps=4",
        "log.every=1",
        "model.config.discriminator=true",
        "model.config.disc_start=100",
        name="resting",
    )
    weights = load_file(str(resting / "model.safetensors"))
    assert all(torch.equal(weights[k], initial[k]) for k in disc_keys)  # untouched by the main optimiser
    assert not any("disc_loss" in r for r in read_log(resting.parent / "log.jsonl"))

    active = run(
        tmp_path,
        "steps=4",
        "log.every=1",
        "model.config.discriminator=true",
        "model.config.disc_start=2",
        "discriminator.optimizer.lr=0.01",
        name="active",
    )
    weights = load_file(str(active / "model.safetensors"))
    assert not all(torch.equal(weights[k], initial[k]) for k in disc_keys)
    records = read_log(active.parent / "log.jsonl")
    assert [r["step"] for r in records if "disc_loss" in r] == [3, 4]  # steps 2 and 3 (0-based) train it
    assert [r["step"] for r in records if "adversarial" in r] == [3, 4]
    start = [r for r in records if r.get("event") == "start"][0]
    assert start["discriminator_parameters"] == sum(initial[k].numel() for k in disc_keys)


def test_fit_path_trains_a_text_tokenizer_without_gradients(tmp_path):
    final = train(
        {
            "model": {"target": "tests._toy_family:ToyCharTokenizer"},
            "data": {"train": "synthetic-text:count=40"},
            "output_dir": str(tmp_path / "chars"),
        }
    )
    tok = zoo.load(final)
    texts = [item["text"] for item in load_dataset("synthetic-text:count=40", split="train")]
    assert set(tok.chars) == set("".join(texts))
    assert tok.decode(tok.encode(texts[0])) == texts[0]
    assert [r["event"] for r in read_log(tmp_path / "chars" / "log.jsonl")] == ["fit", "end"]


def test_something_untrainable_is_refused(tmp_path):
    with pytest.raises(ZooError, match="neither trainable parameters nor fit"):
        train({"model": {"name": "byte"}, "data": {"train": "synthetic-text"}, "output_dir": str(tmp_path / "b")})


def test_named_losses_checks_what_families_return():
    w = torch.ones(2, requires_grad=True)
    assert named_losses({"loss": w.sum(), "extra": w.mean()}, "f")["loss"].item() == 2.0
    with pytest.raises(ZooError, match="scalar tensor 'loss'"):
        named_losses({"total": w.sum()}, "f")
    with pytest.raises(ZooError, match="does not depend on any trainable parameter"):
        named_losses({"loss": torch.tensor(1.0)}, "f")
    with pytest.raises(ZooError, match="dict of losses or a TokenizerOutput"):
        named_losses(w.sum(), "f")


def test_periodic_eval_runs_the_suite_and_validation(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: toy\ndata: synthetic-images:size=16,split=test\nbatch_size: 4\nexamples: 0\nmetrics: [psnr, codebook]\n"
    )
    run(tmp_path, "steps=4", f"eval={{every: 2, suite: {suite}, limit: 8, val_batches: 2}}")
    evals = [r for r in read_log(tmp_path / "run" / "log.jsonl") if "val_loss" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert all(r["val_loss"] > 0 and 0 < r["eval/psnr"] < 100 for r in evals)
    for step in (2, 4):
        results = json.loads((tmp_path / "run" / "eval" / f"step-{step:08d}" / "results.json").read_text())
        assert results["data"]["items"] == 8 and results["tokenizers"]["ToyVQ"]["source"] == "object"
    final_psnr = results["results"]["ToyVQ"]["psnr"]
    assert evals[-1]["eval/psnr"] == (final_psnr if not isinstance(final_psnr, dict) else final_psnr["value"])


def test_missing_evaluation_harness_or_suite_is_a_clear_error_before_training(tmp_path, monkeypatch):
    with pytest.raises(ZooError, match="nowhere.yaml"):
        run(tmp_path, "steps=2", f"eval={{suite: {tmp_path / 'nowhere.yaml'}}}", name="a")
    monkeypatch.setitem(sys.modules, "zoo.evaluate", None)  # import fails
    suite = tmp_path / "suite.yaml"
    suite.write_text("data: synthetic-images\n")
    with pytest.raises(ZooError, match=r"eval.suite needs the evaluation harness \(zoo.evaluate\)"):
        run(tmp_path, "steps=2", f"eval={{suite: {suite}}}", name="b")
    assert not (tmp_path / "a" / "final").exists() and not (tmp_path / "b" / "final").exists()


def test_checkpoints_rotate_and_a_run_is_not_overwritten_by_accident(tmp_path):
    run(tmp_path, "steps=9", "checkpoint.every=2", "checkpoint.keep=2", "ema={decay: 0.5}")
    folder = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000006", "step-00000008"]
    contents = {p.name for p in (folder / "step-00000008").iterdir()}
    assert {
        "model.safetensors",
        "optimizer.safetensors",
        "random_states_0.safetensors",
        "ema.safetensors",
        "trainer_state.json",
    } == contents  # no pickle among them
    assert json.loads((folder / "step-00000008" / "trainer_state.json").read_text())["step"] == 8
    with pytest.raises(ZooError, match="already holds a run.*--resume.*--overwrite"):
        run(tmp_path, "steps=9")
    train(RECIPE, [f"output_dir={tmp_path / 'run'}", "steps=2"], overwrite=True)
    assert not folder.exists() and (tmp_path / "run" / "final").is_dir()


def test_bf16_mixed_precision_trains(tmp_path):
    final = run(tmp_path, "steps=2", "mixed_precision=bf16")
    assert torch.isfinite(
        torch.cat([t.reshape(-1) for t in load_file(str(final / "model.safetensors")).values()])
    ).all()


def test_multi_stage_uses_the_earlier_stage_and_skips_it_on_resume(tmp_path):
    recipe = {
        "output_dir": str(tmp_path / "staged"),
        "data": {"train": "synthetic-images:size=16,count=32"},
        "batch_size": 4,
        "log": {"progress": False},
        "stages": [
            {"name": "first", "steps": 3, "model": {"target": "tests._toy_family:ToyVQ"}},
            # The second stage continues from the first stage's export (a folder loads with its weights).
            {"name": "second", "steps": 2, "model": {"name": "stage:first", "overrides": {"noise": 0.0}}},
        ],
    }
    final = train(recipe)
    assert final == tmp_path / "staged" / "second" / "final"
    first = tmp_path / "staged" / "first" / "final"
    second_start = [r for r in read_log(tmp_path / "staged" / "second" / "log.jsonl") if r.get("event") == "start"]
    assert len(second_start) == 1
    assert json.loads((final / "config.json").read_text())["config"]["noise"] == 0.0
    metadata = json.loads((final / "config.json").read_text())["metadata"]
    assert metadata["recipe"]["model"]["name"] == str(first.resolve()) and metadata["stage"] == "second"

    stamp = (first / "model.safetensors").stat().st_mtime_ns
    final_again = train(recipe, resume=True)  # both stages are finished: nothing runs again
    assert final_again == final and (first / "model.safetensors").stat().st_mtime_ns == stamp
    for stage in ("first", "second"):
        events = [r.get("event") for r in read_log(tmp_path / "staged" / stage / "log.jsonl")]
        assert events.count("start") == 1 and "resume" not in events


def test_data_order_is_a_function_of_the_seed():
    def stream(seed, batches=6, **kw):
        sampler = StepSampler(10, 4, seed, **kw)
        out = []
        for batch in sampler:
            out.append(batch)
            if len(out) == batches:
                return out

    a, b, other = stream(0), stream(0), stream(1)
    assert a == b and a != other
    indices = [index for batch in a for _, index in batch]
    assert sorted(indices[:10]) == list(range(10)) and sorted(indices[10:20]) == list(range(10))  # epochs
    assert [p for batch in a for p, _ in batch] == list(range(24))  # stream positions
    assert stream(0, batches=3, start_batch=3) == a[3:]  # a resumed stream continues exactly
    halves = [stream(0, rank=r, world=2) for r in (0, 1)]
    assert all(h0 + h1 == whole for h0, h1, whole in zip(*halves, a))  # two processes split every batch
    with pytest.raises(ZooError, match="divisible by the number of processes"):
        StepSampler(10, 5, 0, rank=0, world=2)
    ordered = StepSampler(10, 4, 0, shuffle=False, stop_batch=3)
    assert [i for batch in ordered for _, i in batch] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_random_transforms_repeat_by_position(tmp_path):
    from zoo.train.data import batches
    from zoo.train.schema import DataSpec

    dataset = load_dataset("synthetic-images:size=16,count=8", split="train")
    spec = DataSpec(train="synthetic-images", crop=12, flip=True)
    first = [b["image"] for _, b in zip(range(4), batches(dataset, spec, 4, 0, 0, 1))]
    resumed = [b["image"] for _, b in zip(range(2), batches(dataset, spec, 4, 0, 0, 1, start_batch=2))]
    assert first[0].shape == (4, 3, 12, 12)
    assert torch.equal(first[2], resumed[0]) and torch.equal(first[3], resumed[1])
    assert not torch.equal(first[0], first[2])  # epoch 2 reshuffles and re-crops


def test_audio_crop_and_streaming_datasets(tmp_path):
    from torch.utils.data import IterableDataset

    from zoo.train.data import batches
    from zoo.train.schema import DataSpec

    audio = load_dataset("synthetic-audio:count=8,sample_rate=8000")
    batch = next(iter(batches(audio, DataSpec(train="x", audio_seconds=0.1), 4, 0, 0, 1)))
    assert batch["audio"].shape == (4, 800) and batch["audio_lengths"].tolist() == [800] * 4

    class Counting(IterableDataset):  # a stream of 5 labelled items, cycled by the loader
        def __iter__(self):
            return iter({"label": i} for i in range(5))

    def labels(rank=0, world=1, start=0, n=3):
        loader = batches(Counting(), DataSpec(train="x"), 4, 0, rank, world, start_batch=start)
        return [b["label"].tolist() for _, b in zip(range(n), loader)]

    assert labels() == [[0, 1, 2, 3], [4, 0, 1, 2], [3, 4, 0, 1]]
    assert labels(start=1, n=2) == labels()[1:]
    assert [a + b for a, b in zip(labels(0, 2), labels(1, 2))] == labels()


def test_resuming_with_a_changed_recipe_says_what_changed(tmp_path, capsys):
    run(tmp_path, "steps=4", "checkpoint.every=2")
    shutil.rmtree(tmp_path / "run" / "final")  # as if killed after the checkpoint at step 2 (of 4)
    train(
        RECIPE,
        [f"output_dir={tmp_path / 'run'}", "steps=4", "checkpoint.every=2", "optimizer.lr=0.01", "log.every=1"],
        resume=True,
    )
    (resumed,) = [r for r in read_log(tmp_path / "run" / "log.jsonl") if r.get("event") == "resume"]
    assert resumed["step"] == 2 and resumed["changed_settings"] == ["optimizer"]
    assert "resuming with changed optimizer" in capsys.readouterr().out


def test_a_registered_family_trains_end_to_end_from_its_recipe(tmp_path):
    """vq-f8's own recipe, shortened, with its GAN loss switched on: the export is the trained model."""
    final = train(
        "recipes/image/vq-f8.yaml",
        [
            f"output_dir={tmp_path / 'vq'}",
            "steps=3",
            "batch_size=4",
            "log.every=1",
            "data={train: 'synthetic-images:size=32,count=16'}",
            "model.overrides={loss: {gan: 0.1}}",
        ],
    )
    records = read_log(tmp_path / "vq" / "log.jsonl")
    start = [r for r in records if r.get("event") == "start"][0]
    assert start["discriminator_parameters"] > 0
    assert [r["step"] for r in records if "disc_loss" in r] == [1, 2, 3]
    end = [r for r in records if r.get("event") == "end"][0]
    tok = zoo.load(final)
    assert weight_stats(tok.state_dict()) == end["rank_weight_stats"][0]
    x = torch.nn.functional.interpolate(images(2), size=32)  # [2, 3, 32, 32]
    assert torch.equal(tok.encode(x), zoo.load(final).encode(x))
