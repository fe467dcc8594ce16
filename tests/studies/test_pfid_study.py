"""The pFID study end to end on a handful of digits and steps: training, evaluation, correlations, the report,
resuming without retraining or re-evaluating, partial results, budget settings, the shipped recipe and suite."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import zoo
from zoo.errors import ZooError
from zoo.studies import pfid_study
from zoo.studies.pfid_study import (
    evaluation_key,
    load_study_plan,
    load_study_suite,
    pair_stages,
    resolve_stage_references,
    run_study,
    support_stages,
    train_pair,
)
from zoo.studies.study_report import correlation

ROOT = Path(__file__).resolve().parents[2]
DATA = {"name": "digits", "limit": 32}
NET = {"channels": 8, "channel_mult": [1, 2, 2], "num_res_blocks": 1, "z_channels": 8, "attention": False}
QUANTIZERS = {
    "vq-8": {"quantizer": {"kind": "vq", "codebook_size": 8, "code_dim": 4}},
    "fsq-9": {"quantizer": {"kind": "fsq", "levels": [3, 3]}},
    "vq-8-lp": {"quantizer": {"kind": "vq", "codebook_size": 8, "code_dim": 4},
                "perturbation": {"alpha": 1.0, "beta": 0.5, "delta": 2}},
}


def tiny_recipe(tmp_path: Path, names=tuple(QUANTIZERS)) -> Path:
    stages = [{"name": name, "steps": 2, "batch_size": 8, "data": {"train": DATA},
               "model": {"target": "zoo.image.vq.model:VQTokenizer", "config": {**NET, **QUANTIZERS[name]}}}
              for name in names]
    for name in names:
        stages.append({
            "name": f"gen-{name}", "steps": 2, "batch_size": 8,
            "data": {"train": {"name": "image-tokens", "tokenizer": f"stage:{name}", "data": DATA}},
            "model": {"target": "zoo.generators.token_generator:TokenGenerator",
                      "config": {"tokenizer": f"stage:{name}", "num_classes": 10, "image_size": 8,
                                 "gpt": {"depth": 1, "heads": 2, "dim": 16}}},
        })
    recipe = {"output_dir": str(tmp_path / "runs"), "seed": 0, "log": {"every": 1, "progress": False},
              "stages": stages}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture
def suite(tmp_path) -> Path:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    weights = tmp_path / "test_resnet.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("test_resnet").state_dict().items()}, str(weights))
    extractor = f"timm:test_resnet,weights={weights},size=32"
    spec = {"name": "tiny-study", "data": {"name": "digits", "split": "test"}, "limit": 12, "batch_size": 6,
            "examples": 2, "metrics": [{"name": "psnr"}, {"name": "rfid", "extractor": extractor},
                                       {"name": "pfid", "extractor": extractor, "alphas": [0.2, 0.4]},
                                       {"name": "gfid", "extractor": extractor}, {"name": "codebook"}]}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_the_whole_study_runs_resumes_and_reports(tmp_path, suite, monkeypatch):
    recipe = tiny_recipe(tmp_path)
    summary = run_study(str(recipe), str(suite), note="tiny test run", command="pytest", progress=False)
    out = tmp_path / "runs" / "study"
    assert [row["tokenizer"] for row in summary["rows"]] == ["vq-8", "fsq-9", "vq-8-lp"]
    assert summary["pending"] == [] and summary["items"] == 12
    for row in summary["rows"]:
        assert all(isinstance(row[k], float) and row[k] >= 0 for k in ("psnr", "rfid", "pfid", "gfid", "usage"))
    assert summary["rows"][1]["quantizer"] == "fsq" and summary["rows"][1]["codebook"] == 9
    assert summary["rows"][2]["perturbation"] == "alpha 1, beta 0.5, delta 2"
    # The table's numbers are the per-tokenizer suite results, and the correlations are scipy's on them.
    stored = json.loads((out / "tokenizers" / "fsq-9" / "results.json").read_text())
    assert summary["rows"][1]["pfid"] == stored["results"]["fsq-9"]["pfid"]["mean"]
    assert summary["rows"][1]["gfid"] == stored["results"]["fsq-9"]["gfid"]
    from scipy import stats

    gfid = [row["gfid"] for row in summary["rows"]]
    expected = stats.spearmanr([row["pfid"] for row in summary["rows"]], gfid).statistic
    assert summary["correlations"]["pfid_vs_gfid"]["n"] == 3
    assert summary["correlations"]["pfid_vs_gfid"]["spearman"] == pytest.approx(expected)
    assert json.loads((out / "study.json").read_text())["rows"] == summary["rows"]
    markdown = (out / "results.md").read_text()
    assert "> tiny test run" in markdown and "| `vq-8-lp` | vq | 8 | alpha 1, beta 0.5, delta 2 |" in markdown
    page = (out / "report.html").read_text()
    assert "alt='rFID and pFID against gFID' src='data:image/png;base64," in page
    assert "tokenizers/fsq-9/report.html" in page and (out / "tokenizers" / "fsq-9" / "report.html").is_file()

    # A second run trains nothing and evaluates nothing: the same numbers from what is on disk.
    monkeypatch.setattr("zoo.train.stages.train_stage", lambda *a, **k: pytest.fail("retrained a finished stage"))
    monkeypatch.setattr("zoo.evaluate.evaluate_suite", lambda *a, **k: pytest.fail("re-evaluated"))
    again = run_study(str(recipe), str(suite), note="tiny test run", command="pytest", progress=False)
    assert again["rows"] == summary["rows"]


def test_partial_results_are_written_after_each_tokenizer(tmp_path, suite, monkeypatch):
    recipe = tiny_recipe(tmp_path, names=("vq-8", "fsq-9"))
    real = pfid_study.evaluate_pair

    def evaluate_then_stop(label, *args, **kwargs):
        if label == "fsq-9":
            raise KeyboardInterrupt
        return real(label, *args, **kwargs)

    monkeypatch.setattr(pfid_study, "evaluate_pair", evaluate_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_study(str(recipe), str(suite), progress=False)
    partial = json.loads((tmp_path / "runs" / "study" / "study.json").read_text())
    assert [row["tokenizer"] for row in partial["rows"]] == ["vq-8"] and partial["pending"] == ["fsq-9"]
    assert partial["correlations"]["rfid_vs_gfid"]["note"].startswith("needs at least 3 tokenizers")
    assert "Not finished yet: `fsq-9`" in (tmp_path / "runs" / "study" / "results.md").read_text()


def test_budget_settings_reach_every_stage_of_a_kind_and_changed_budgets_are_refused(tmp_path):
    plan = load_study_plan(str(tiny_recipe(tmp_path)), ["seed=3"], ["steps=1", "optimizer.lr=0.01"], ["steps=2"])
    steps = {stage.name: stage.steps for stage in plan.stages}
    assert steps == {"vq-8": 1, "fsq-9": 1, "vq-8-lp": 1, "gen-vq-8": 2, "gen-fsq-9": 2, "gen-vq-8-lp": 2}
    assert {stage.optimizer.lr for stage in plan.stages if not stage.name.startswith("gen")} == {0.01}
    assert {stage.seed for stage in plan.stages} == {3}
    recipe = str(tiny_recipe(tmp_path, names=("vq-8",)))
    plan = load_study_plan(recipe, [], ["steps=1"], ["steps=1"])
    (pair,) = pair_stages(plan)
    assert train_pair(plan, pair) == tmp_path / "runs" / "gen-vq-8" / "final"
    plan = load_study_plan(recipe, [], ["steps=2"], ["steps=1"])
    with pytest.raises(ZooError, match="was trained with other steps than the recipe now asks"):
        train_pair(plan, pair_stages(plan)[0])


def test_pairing_errors(tmp_path):
    recipe = yaml.safe_load(tiny_recipe(tmp_path, names=("vq-8",)).read_text())
    lonely = dict(recipe, stages=[*recipe["stages"], {**recipe["stages"][0], "name": "unused"}])
    path = tmp_path / "lonely.yaml"
    path.write_text(yaml.safe_dump(lonely))
    with pytest.raises(ZooError, match=r"stage\(s\) \['unused'\] are neither a generator nor the tokenizer of one"):
        pair_stages(load_study_plan(str(path)))
    path.write_text(yaml.safe_dump(dict(recipe, stages=recipe["stages"][:1])))
    with pytest.raises(ZooError, match="no stage trains a TokenGenerator"):
        pair_stages(load_study_plan(str(path)))


def test_correlation_matches_hand_computed_values():
    found = correlation([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
    assert found["n"] == 4 and found["spearman"] == pytest.approx(0.8) and found["pearson"] == pytest.approx(0.8)
    assert correlation([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])["spearman"] == pytest.approx(-1.0)
    assert correlation([1.0, None, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0])["n"] == 3
    assert correlation([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])["note"].startswith("undefined")
    assert correlation([1.0, 2.0], [1.0, 2.0])["spearman"] is None


def test_the_shipped_recipe_gives_every_tokenizer_and_generator_one_budget():
    plan = load_study_plan(pfid_study.DEFAULT_RECIPE)
    pairs = pair_stages(plan)
    assert len(pairs) >= 6 and all(pair.tokenizer is not None for pair in pairs)

    def budget(stage):
        return (stage.steps, stage.batch_size, stage.grad_accum, stage.optimizer, stage.schedule, stage.seed)

    assert len({repr(budget(pair.tokenizer)) for pair in pairs}) == 1
    assert len({repr(budget(pair.generator)) for pair in pairs}) == 1
    configs = [pair.tokenizer.model.config for pair in pairs]
    assert len({c["quantizer"]["kind"] for c in configs}) >= 3  # quantisers
    assert len({c["quantizer"].get("codebook_size") for c in configs if c["quantizer"]["kind"] == "vq"}) >= 3
    assert len({json.dumps(c.get("perturbation"), sort_keys=True) for c in configs}) >= 3  # off / on / strength
    suite = load_study_suite(pfid_study.DEFAULT_SUITE)
    assert [m["name"] for m in suite.metrics if m["name"].endswith("fid")] == ["rfid", "pfid", "gfid"]
    assert len({json.dumps(m.get("extractor")) for m in suite.metrics if m["name"].endswith("fid")}) == 1
    resolved, referenced = resolve_stage_references(suite, plan)
    assert referenced == ["fid-features"] * 3 and [s.name for s in support_stages(plan)] == ["fid-features"]
    assert {m["extractor"] for m in resolved.metrics if m["name"].endswith("fid")} == {
        f"zoo:{plan.output_dir / 'fid-features' / 'final'}"}
    changed = load_study_suite(pfid_study.DEFAULT_SUITE, ["metrics.pfid.alphas=[0.2]", "limit=50"])
    assert changed.limit == 50 and next(m for m in changed.metrics if m["name"] == "pfid")["alphas"] == [0.2]


FEATURES = {"name": "features", "steps": 2, "batch_size": 8, "data": {"train": DATA},
            "model": {"target": "zoo.image.classifier:ImageClassifier",
                      "config": {"num_classes": 10, "channels": 8, "channel_mult": [1, 2]}}}


def test_a_feature_stage_named_by_the_suite_is_trained_first_and_gives_the_fids(tmp_path):
    recipe = yaml.safe_load(tiny_recipe(tmp_path, names=("vq-8",)).read_text())
    recipe["stages"].insert(0, FEATURES)
    path = tmp_path / "with-features.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    extractor = "zoo:stage:features"
    spec = {"name": "tiny-study", "data": {"name": "digits", "split": "test"}, "limit": 12, "batch_size": 6,
            "examples": 0, "metrics": [{"name": "rfid", "extractor": extractor},
                                       {"name": "gfid", "extractor": extractor}]}
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(spec))
    summary = run_study(str(path), str(suite), progress=False)
    features = tmp_path / "runs" / "features" / "final"
    assert (features / "model.safetensors").is_file()
    row = summary["rows"][0]
    assert row["rfid"] >= 0 and row["gfid"] >= 0
    stored = json.loads((tmp_path / "runs" / "study" / "tokenizers" / "vq-8" / "results.json").read_text())
    assert stored["metrics"]["rfid"]["extractor"]["source"] == str(features)
    assert stored["metrics"]["gfid"]["extractor"] == stored["metrics"]["rfid"]["extractor"]
    # Retraining the feature classifier makes the stored evaluations stale.
    generator = tmp_path / "runs" / "gen-vq-8" / "final"
    spec_now = load_study_suite(str(suite))
    before = evaluation_key(generator, spec_now, [features])
    classifier = zoo.load(features)
    with torch.no_grad():
        classifier.head.bias.add_(1.0)
    classifier.save_pretrained(features)
    assert evaluation_key(generator, spec_now, [features]) != before

    spec["metrics"] = [{"name": "rfid", "extractor": "zoo:stage:featurez"}]
    suite.write_text(yaml.safe_dump(spec))
    with pytest.raises(ZooError, match=r"'stage:featurez' names no stage of .*'features'"):
        run_study(str(path), str(suite), progress=False)
    spec["metrics"] = [{"name": "psnr"}]
    suite.write_text(yaml.safe_dump(spec))
    with pytest.raises(ZooError, match=r"stage\(s\) \['features'\] train neither a tokenizer nor a generator"):
        run_study(str(path), str(suite), progress=False)


def test_command_line_errors_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "zoo.studies.pfid_study", "--recipe", str(tmp_path / "none.yaml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "pfid-study: error:" in done.stderr and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr
