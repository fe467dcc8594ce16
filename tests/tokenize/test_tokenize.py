"""zoo tokenize: shards that read back as the tokenizer's ids, whatever the workers, after a crash, on a rerun."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import zoo
from zoo.cli import main
from zoo.data import load_dataset
from zoo.errors import ZooError
from zoo.tokenize import tokenize

ROOT = Path(__file__).resolve().parents[2]


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("shard-*.parquet"))}


def test_text_shards_read_back_as_the_tokenizers_ids(tmp_path):
    manifest = tokenize("byte", "fortunes:en,limit=50", tmp_path / "out", items_per_shard=16, engine="local",
                        progress=False)
    assert [s["rows"] for s in manifest["shards"]] == [16, 16, 16, 2]
    assert manifest["tokenizer"]["name"] == "byte" and manifest["items"] == 50
    texts = load_dataset("fortunes:en,limit=50")
    shards = load_dataset(f"token-shards:{tmp_path / 'out'}")
    tok = zoo.load("byte")
    assert len(shards) == 50
    for index in (0, 17, 49):
        assert shards[index]["tokens"].tolist() == tok.encode(texts[index]["text"])
        assert shards[index]["key"] == str(index)


def test_image_shards_keep_each_items_grid_and_label(tmp_path):
    source = "synthetic-images:size=16,limit=10"
    tokenize("vq-fmnist", source, tmp_path / "out", items_per_shard=4, engine="local", progress=False)
    images, shards = load_dataset(source), load_dataset(f"token-shards:{tmp_path / 'out'}")
    tok = zoo.load("vq-fmnist", pretrained=True)
    with torch.no_grad():
        expected = tok.encode(torch.stack([images[i]["image"] for i in range(10)]))
    assert torch.equal(torch.stack([shards[i]["tokens"] for i in range(10)]), expected)
    assert [shards[i]["label"] for i in range(10)] == [int(images[i]["label"]) for i in range(10)]


def test_a_rerun_redoes_only_missing_or_damaged_shards(tmp_path, capsys):
    out = tmp_path / "out"
    tokenize("byte", "fortunes:en,limit=40", out, items_per_shard=10, engine="local", progress=False)
    before = _digests(out)
    (out / "shard-00001.parquet").unlink()
    (out / "shard-00002.parquet").write_bytes(b"PAR1 truncated")
    stamp = (out / "shard-00000.parquet").stat().st_mtime_ns
    capsys.readouterr()
    tokenize("byte", "fortunes:en,limit=40", out, items_per_shard=10, engine="local", progress=False)
    assert "(2 already complete)" in capsys.readouterr().err
    assert _digests(out) == before and (out / "shard-00000.parquet").stat().st_mtime_ns == stamp


def test_a_folder_of_another_run_is_refused(tmp_path):
    out = tmp_path / "out"
    tokenize("byte", "fortunes:en,limit=20", out, items_per_shard=10, engine="local", progress=False)
    with pytest.raises(ZooError, match="holds tokens of another run \\(differs in source\\)"):
        tokenize("byte", "fortunes:de,limit=20", out, items_per_shard=10, engine="local", progress=False)
    tokenize("byte", "fortunes:de,limit=20", out, items_per_shard=10, engine="local", progress=False, overwrite=True)
    assert json.loads((out / "manifest.json").read_text())["source"] == "fortunes:de,limit=20"


@pytest.mark.parametrize("kwargs, message", [
    ({"workers": 0}, "workers must be an integer >= 1"),
    ({"items_per_shard": -3}, "items_per_shard must be an integer >= 1"),
    ({"engine": "spark"}, "engine must be 'auto', 'ray' or 'local'"),
])
def test_bad_settings_are_named(tmp_path, kwargs, message):
    with pytest.raises(ZooError, match=message):
        tokenize("byte", "fortunes:en,limit=5", tmp_path / "out", **kwargs)


def test_a_shard_changed_after_the_run_is_refused_by_the_reader(tmp_path):
    out = tmp_path / "out"
    tokenize("byte", "fortunes:en,limit=5", out, items_per_shard=5, engine="local", progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"][0]["sha256"] = "0" * 64
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ZooError, match="sha256 differs from the manifest"):
        load_dataset(f"token-shards:{out}")[0]


def test_kill_9_then_rerun_gives_the_bytes_of_an_uninterrupted_run(tmp_path):
    source, args = "fortunes:all,limit=3000", ["--items-per-shard", "100", "--engine", "local", "--no-progress"]
    straight = tmp_path / "straight"
    assert main(["tokenize", "bpe-32k", source, "--out", str(straight), *args]) == 0
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "zoo", "tokenize", "bpe-32k", source, "--out", str(killed), *args]
    process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(killed.glob("shard-*.parquet"))) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = len(list(killed.glob("shard-*.parquet")))
    assert 0 < written < 30 and not (killed / "manifest.json").exists()
    assert main(["tokenize", "bpe-32k", source, "--out", str(killed), *args]) == 0
    assert _digests(killed) == _digests(straight) and len(_digests(straight)) == 30


def test_ray_workers_write_the_same_bytes_as_one_process(tmp_path):
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'zoo[tokenize]')")
    source = "fortunes:en,limit=400"
    tokenize("byte", source, tmp_path / "local", items_per_shard=50, engine="local", progress=False)
    tokenize("byte", source, tmp_path / "ray", items_per_shard=50, engine="ray", workers=2, progress=False)
    assert _digests(tmp_path / "ray") == _digests(tmp_path / "local") and len(_digests(tmp_path / "local")) == 8
