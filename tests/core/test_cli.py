"""The zoo command: listing, info, encode | decode round trips, exit code 2 with one line on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def zoo_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "zoo", *args], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def test_version_and_list():
    assert zoo_cli("--version").stdout.startswith("zoo ")
    listing = zoo_cli("list")
    assert listing.returncode == 0 and "byte" in listing.stdout
    rows = json.loads(zoo_cli("list", "byt*", "--json").stdout)
    assert [row["name"] for row in rows] == ["byte"]
    assert zoo_cli("list", "--modality", "image").returncode == 0


def test_list_says_where_weights_come_from(tmp_path, monkeypatch):
    def marks() -> dict[str, str]:
        rows = [line.split() for line in zoo_cli("list").stdout.splitlines()]
        return {row[0]: row[2] for row in rows if row[0] in ("byte", "vq-f8", "llamagen-vq16", "bpe-32k")}

    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    assert marks() == {"byte": "built-in", "vq-f8": "shipped", "bpe-32k": "shipped", "llamagen-vq16": "download"}
    import zoo
    from zoo.hub import remote_cache_path

    local = remote_cache_path(zoo.registry.get("llamagen-vq16").weights)
    local.parent.mkdir(parents=True)
    local.write_bytes(b"a file in the cache")
    assert marks()["llamagen-vq16"] == "cached"


def test_info():
    out = zoo_cli("info", "byte", "--json")
    assert json.loads(out.stdout)["modality"] == "text"


def test_info_shows_inputs_and_card():
    record = json.loads(zoo_cli("info", "vq-f8", "--json").stdout)
    assert record["inputs"]["size"] == 64 and record["inputs"]["multiple_of"] == 8
    assert record["card"]["license"] == "MIT" and "psnr" in record["card"]["metrics"]
    out = zoo_cli("info", "vq-f8")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert "inputs: images [B, 3, H, W] in [0, 1]: 64x64 native, H and W multiples of 8" in out.stdout
    assert any(line.split() == ["parameters:", f"{record['card']['parameters']:,}"] for line in lines)
    metrics = next(line for line in lines if line.strip().startswith("metrics:"))
    assert f"psnr {record['card']['metrics']['psnr']}" in metrics
    assert metrics.endswith(f"(from {record['card']['metrics_source']})")
    assert "metrics_source" not in out.stdout  # folded into the metrics line
    assert "inputs: str" in zoo_cli("info", "byte").stdout


def test_encode_pipes_into_decode():
    text = "héllo 🌍 ١٢٣"
    encoded = zoo_cli("encode", "byte", text)
    assert encoded.returncode == 0
    decoded = zoo_cli("decode", "byte", "-", stdin=encoded.stdout)
    assert decoded.stdout == text


def test_encode_stdin_and_json(tmp_path):
    encoded = zoo_cli("encode", "byte", "-", "--json", stdin="ab\n")
    assert json.loads(encoded.stdout) == [97, 98, 10]
    out = tmp_path / "out.txt"
    assert zoo_cli("decode", "byte", "[104, 105]", "-o", str(out)).returncode == 0
    assert out.read_text() == "hi"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("encode", "bytee", "x"), "did you mean 'byte'"),
        (("decode", "byte", "1 2 x"), "expected integers"),
        (("decode", "byte", "[1, 2"), "not valid JSON"),
        (("decode", "byte", "[999]"), r"ints in \[0, 259\)"),
        (("info", "nope"), "unknown tokenizer 'nope'"),
        (("encode", "./missing-folder", "x"), "no such checkpoint folder"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message):
    result = zoo_cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo ")
    assert __import__("re").search(message, lines[0])


def test_no_command_prints_help():
    result = zoo_cli()
    assert result.returncode == 2 and "usage" in result.stdout.lower()
