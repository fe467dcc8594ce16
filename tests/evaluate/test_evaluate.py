"""Suites and the runner: validation, results provenance, skips with notes, the CLI, 2 processes, the demo."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from tests.reference_tokenizers import ImageLabeller, PaletteVQ, PixelQuantizer
from zoo.errors import ZooError
from zoo.evaluate import load_suite, parse_suite, run_suite
from zoo.hub import sha256_of
from zoo.metrics import METRICS
from zoo.metrics.image import psnr
from zoo.resources import data_root

ROOT = Path(__file__).resolve().parents[2]
SUITE = {
    "name": "tiny-recon",
    "data": "photos:split=test,size=32",
    "limit": 24,
    "batch_size": 8,
    "examples": 4,
    "metrics": ["psnr", "ssim", "codebook", {"name": "throughput", "warmup_batches": 1}],
}


def test_suite_errors_name_the_key():
    with pytest.raises(ZooError, match=r"unknown key 'metric' \(did you mean 'metrics'\?\)"):
        parse_suite({**SUITE, "metric": []})
    with pytest.raises(ZooError, match="key 'data' must be a dataset spec"):
        parse_suite({"metrics": ["psnr"]})
    with pytest.raises(ZooError, match="non-empty list"):
        parse_suite({"data": "digits", "metrics": []})
    with pytest.raises(ZooError, match="listed twice"):
        parse_suite({"data": "digits", "metrics": ["psnr", {"name": "psnr"}]})
    with pytest.raises(ZooError, match="'limit' must be an integer >= 1"):
        parse_suite({**SUITE, "limit": "ten"})
    with pytest.raises(ZooError, match="shipped suites: .*demo-image"):
        load_suite("no-such-suite")
    with pytest.raises(ZooError, match="unknown metric 'psnrr'; did you mean 'psnr'"):
        run_suite({**SUITE, "metrics": ["psnrr"]}, [PixelQuantizer()])


@pytest.mark.parametrize("path", sorted((data_root() / "eval").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_suites_parse_and_name_known_metrics(path):
    suite = load_suite(path.stem)
    assert suite.path == str(path.resolve())
    for metric in suite.metrics:
        assert metric["name"] in METRICS, f"{path.name}: metric {metric['name']!r} is not registered"


REPO = Path(__file__).resolve().parents[2]
DOCS = "\n".join(path.read_text() for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])


@pytest.mark.parametrize("name", sorted(METRICS))
def test_every_registered_metric_is_documented(name):
    assert f"`{name}`" in DOCS, f"metric {name!r} is registered but no page of docs/ or the README names it"


def test_run_records_values_provenance_and_notes(tmp_path):
    folder = PaletteVQ(codes=12).save_pretrained(tmp_path / "palette")
    quantiser = PixelQuantizer(factor=4, levels=4)
    results = run_suite(SUITE, [str(folder), quantiser, ImageLabeller(), "byte"], progress=False)

    assert list(results["results"]) == ["palette", "PixelQuantizer", "ImageLabeller"]
    record = results["tokenizers"]["palette"]
    assert record["weights_sha256"] == sha256_of(folder / "model.safetensors")
    assert record["config"] == {"codes": 12, "factor": 4, "seed": 0} and record["vocab_size"] == 12
    assert results["tokenizers"]["PixelQuantizer"]["config"] == quantiser.config
    assert results["tokenizers"]["byte"]["source"] == "registry:byte"
    run = results["run"]
    assert run["zoo_version"] == zoo.__version__ and run["world_size"] == 1 and "torch" in run["versions"]
    assert re.fullmatch(r"[0-9a-f]{40}", run["git"]["hash"] or "") and re.match(r"\d{4}-\d\d-\d\dT", run["date"])
    assert results["data"] == {"spec": SUITE["data"], "modality": "image", "items": 24}
    assert results["suite"]["metrics"][3] == {"name": "throughput", "warmup_batches": 1}

    # Values equal the metric computed by hand on the same items.
    from zoo.data import load_dataset

    data = load_dataset(SUITE["data"])
    images = torch.stack([data[i]["image"] for i in range(24)])
    expected = psnr(images, quantiser.decode(quantiser.encode(images))).mean().item()
    assert results["results"]["PixelQuantizer"]["psnr"] == pytest.approx(expected, rel=1e-9)
    assert set(results["results"]["palette"]) == {"psnr", "ssim", "codebook", "throughput"}

    assert "psnr: skipped, ImageLabeller has no decoder" in results["notes"]["ImageLabeller"]
    assert "codebook" in results["results"]["ImageLabeller"]
    assert results["notes"]["byte"] == ["skipped: a text tokenizer cannot run on image data"]
    assert results["metrics"]["psnr"]["higher_is_better"] is True


def test_limit_and_batch_size_overrides():
    results = run_suite(SUITE, [PixelQuantizer()], limit=5, batch_size=2, progress=False)
    assert results["data"]["items"] == 5 and results["suite"]["batch_size"] == 2
    with pytest.raises(ZooError, match="'limit' must be an integer >= 1"):
        run_suite(SUITE, [PixelQuantizer()], limit=0)


def _zoo(*args: str, env: dict | None = None, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    command = (launcher or [sys.executable]) + ["-m", "zoo", *args]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=environment, timeout=600)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> list[str]:
    base = tmp_path_factory.mktemp("checkpoints")
    return [
        str(PaletteVQ(codes=16, seed=1).save_pretrained(base / "palette-16")),
        str(PixelQuantizer(factor=4, levels=6).save_pretrained(base / "pixels-6")),
    ]


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "tiny.yaml"
    path.write_text(json.dumps({**SUITE, "name": "tiny-cli", "limit": 20}))  # JSON is YAML
    return path


def test_cli_writes_all_three_outputs(tmp_path, checkpoints, suite_file):
    done = _zoo("eval", str(suite_file), "-t", *checkpoints, "--out", str(tmp_path / "out"), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "| `palette-16` |" in done.stdout and "| `pixels-6` |" in done.stdout
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["results"]) == {"palette-16", "pixels-6"}
    assert "| `pixels-6` |" in (tmp_path / "out" / "results.md").read_text()
    assert (tmp_path / "out" / "report.html").read_text().count("data:image/png;base64,") >= 3

    bad = _zoo("eval", "no-such-suite", "-t", "byte")
    assert bad.returncode == 2 and "no such file" in bad.stderr and "Traceback" not in bad.stderr


def test_two_processes_equal_one(tmp_path, checkpoints, suite_file):
    if shutil.which("accelerate") is None:
        pytest.skip("the accelerate launcher is not on PATH")
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    weights = tmp_path / "test_resnet.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("test_resnet").state_dict().items()}, str(weights))
    suite = json.loads(suite_file.read_text())
    suite["metrics"] = [
        "psnr",
        "ssim",
        "codebook",
        {"name": "rfid", "extractor": f"timm:test_resnet,weights={weights},size=32"},
    ]
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(json.dumps(suite))
    args = ["eval", str(suite_file), "-t", *checkpoints, "--no-progress", "--batch-size", "4"]
    one = run_suite(suite_file, checkpoints, batch_size=4, progress=False)  # the single-process reference
    launcher = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    fresh_cache = {"ACCELERATE_USE_CPU": "true", "ZOO_CACHE": str(tmp_path / "cache")}  # rFID references summed anew
    double = _zoo(*args, "--out", str(tmp_path / "two"), env=fresh_cache, launcher=launcher)
    assert double.returncode == 0, double.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert one["run"]["world_size"] == 1 and two["run"]["world_size"] == 2  # really two processes
    assert two["data"]["items"] == one["data"]["items"] == 20
    # The first tokenizer sums the reference over both processes; the second reuses what that wrote.
    assert not any("from cache" in note for note in two["notes"].get("palette-16", []))
    assert any("from cache" in note for note in two["notes"]["pixels-6"])
    for label in one["results"]:
        for metric in ("psnr", "ssim", "rfid"):
            assert two["results"][label][metric] == pytest.approx(one["results"][label][metric], rel=1e-6, abs=1e-9)
        assert two["results"][label]["codebook"] == one["results"][label]["codebook"]


def test_checkpoint_folders_are_labelled_by_their_run(tmp_path):
    from zoo.evaluate import resolve_candidate

    for run in ("ssl1", "ssl2"):
        PixelQuantizer(factor=4, levels=6).save_pretrained(tmp_path / run / "final")
    PixelQuantizer(factor=4, levels=6).save_pretrained(tmp_path / "pixels-6")
    labels = [resolve_candidate(tmp_path / name).label for name in ("ssl1/final", "ssl2/final", "pixels-6")]
    assert labels == ["ssl1/final", "ssl2/final", "pixels-6"]


def test_demo_grows_with_the_registry(tmp_path, monkeypatch, capsys):
    catalog = tmp_path / "extra.yaml"
    catalog.write_text(
        "tokenizers:\n"
        "  test-pixels-8:\n"
        "    target: tests.reference_tokenizers:PixelQuantizer\n"
        "    modality: image\n"
        "    summary: test entry\n"
        "    config: {factor: 4, levels: 8}\n"
        "    needs_training: false\n"
    )
    registry = zoo.registry.default_registry()
    names = zoo.registry.add(catalog)
    try:
        from argparse import Namespace

        from zoo.evaluate.demo import run_demo

        assert run_demo(Namespace(out=str(tmp_path / "demo"), limit=8)) == 0
    finally:
        for name in names:
            registry.remove(name)
    slow = [n for n in zoo.list_tokenizers(modality="text", pretrained=True) if "slow" in zoo.registry.get(n).tags]
    printed = capsys.readouterr().out
    for name in slow:  # named in one line, never run
        assert f"skipped {name}" in printed and "tagged slow" in printed
    text = json.loads((tmp_path / "demo" / "text" / "results.json").read_text())
    assert not set(slow) & set(text["results"])
    image = json.loads((tmp_path / "demo" / "image" / "results.json").read_text())
    # The added entry joins every shipped image tokenizer that is ready to use.
    # (entries whose weights download and are not cached are skipped offline, with one line)
    from zoo.evaluate.demo import uncached_downloads

    ready = zoo.list_tokenizers(modality="image", pretrained=True)
    expected = [n for n in ready if n not in uncached_downloads(ready)] + ["test-pixels-8"]
    assert sorted(image["results"]) == sorted(expected) and image["data"]["items"] == 8
    # photo crops at each entry's own inputs.size; an entry naming none gets the photos dataset's default (64)
    assert image["data"]["sizes"]["vq-fmnist"] == 32 and image["data"]["sizes"]["vq-f8"] == 64
    assert image["data"]["sizes"]["test-pixels-8"] == 64
    assert any("the dataset's default size" in note for note in image["notes"]["test-pixels-8"])
    page = (tmp_path / "demo" / "report.html").read_text()
    assert "demo-image" in page and "data:image/png;base64," in page


def test_objects_are_fingerprinted_by_their_state():
    from zoo.evaluate import resolve_candidate

    same = [resolve_candidate(PaletteVQ(codes=8, seed=s)).record["weights_sha256"] for s in (0, 0, 1)]
    assert re.fullmatch(r"[0-9a-f]{64}", same[0]) and same[0] == same[1] != same[2]
    assert resolve_candidate(PixelQuantizer()).record["weights_sha256"] is None  # nothing to fingerprint
    with pytest.raises(ZooError, match="expected a registry name, a checkpoint folder, .file:PATH."):
        resolve_candidate(42)
    with pytest.raises(ZooError, match="no such checkpoint folder"):
        resolve_candidate("runs/does-not-exist")
