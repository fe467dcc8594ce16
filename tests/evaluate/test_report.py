"""The outputs: strict JSON, the Markdown leaderboard, and an HTML page that is self-contained and renders."""

import base64
import io
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.reference_tokenizers import PaletteVQ, PixelQuantizer
from zoo.evaluate import run_suite
from zoo.evaluate.report import json_safe, leaderboard_columns, markdown_table

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SUITE = {
    "name": "report-test",
    "description": "colourful photo crops",
    "data": "photos:split=test,size=32",
    "limit": 16,
    "batch_size": 8,
    "examples": 6,
    "metrics": ["psnr", "ssim", "codebook"],
}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("report")
    tokenizers = [PixelQuantizer(factor=4, levels=8), PixelQuantizer(factor=2, levels=4, split_channels=True),
                  PaletteVQ(codes=8)]  # fmt: skip
    return run_suite(SUITE, tokenizers, out_dir=out, progress=False), out


def fake_results() -> dict:
    return {
        "suite": {"name": "s", "description": ""},
        "data": {"spec": "digits", "modality": "image", "items": 3},
        "run": {"zoo_version": "0", "git": {}, "date": "d", "world_size": 1, "device": "cpu", "versions": {}},
        "metrics": {
            "psnr": {"higher_is_better": True, "directions": {}, "description": ""},
            "rfid": {"higher_is_better": False, "directions": {}, "description": ""},
            "codebook": {"higher_is_better": True, "directions": {}, "description": ""},
        },
        "tokenizers": {},
        "results": {
            "a": {"psnr": 30.0, "rfid": 2.5, "codebook": {"usage": 0.5, "usage.level0": 0.5}},
            "b": {"psnr": 25.0, "rfid": 1.5, "codebook": {"usage": 0.25, "usage.level0": 0.25}},
            "c": {"psnr": float("nan"), "codebook": {"usage": 0.5, "usage.level0": 0.5}},
        },
        "notes": {},
    }


def test_markdown_leaderboard_has_directions_and_bold_best():
    table = markdown_table(fake_results())
    lines = table.splitlines()
    assert lines[0] == "| tokenizer | psnr ↑ | rfid ↓ | codebook.usage ↑ |"  # per-level details stay out
    assert lines[2] == "| `a` | **30** | 2.5 | **0.5** |"
    assert lines[3] == "| `b` | 25 | **1.5** | 0.25 |"
    assert lines[4] == "| `c` | – | – | **0.5** |"
    assert ("codebook.usage.level0", "codebook", "usage.level0", True) in leaderboard_columns(fake_results(), True)


def test_json_is_strict():
    assert json_safe({"x": [float("nan"), float("inf"), 1.5], "y": np.float64(2.0)}) == {
        "x": [None, None, 1.5],
        "y": 2.0,
    }


def test_written_files(report):
    results, out = report
    on_disk = json.loads((out / "results.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert on_disk["results"].keys() == results["results"].keys() == {"PixelQuantizer", "PixelQuantizer#2", "PaletteVQ"}
    for label, values in results["results"].items():
        assert on_disk["results"][label]["psnr"] == pytest.approx(values["psnr"])
        assert math.isfinite(values["ssim"])
    markdown = (out / "results.md").read_text()
    assert markdown.startswith("# report-test\n\ncolourful photo crops\n") and "| `PaletteVQ` |" in markdown


def test_html_is_self_contained(report):
    _, out = report
    page = (out / "report.html").read_text()
    references = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert references and all(ref.startswith("data:") for ref in references), references
    assert "http://" not in page and "https://" not in page and "<link" not in page and "<script" not in page
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(pngs) == 4  # the reconstruction grid + a codebook plot per tokenizer
    sizes = [Image.open(io.BytesIO(base64.b64decode(png))).size for png in pngs]
    assert all(w > 200 and h > 100 for w, h in sizes)
    assert "<h2>Reconstructions</h2>" in page and page.count("<h3>codebook: usage per code</h3>") == 3


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}"]  # fmt: skip
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


def _coloured_pixels(png: Path) -> int:
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    spread = rgb.max(-1) - rgb.min(-1)  # 0 for grey: text, borders and the page are all grey
    return int((spread > 40).sum())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_html_renders_its_images_in_headless_chromium(report, tmp_path):
    _, out = report
    page = (out / "report.html").read_text()
    # 1. The browser decodes every image: a probe script reports how many loaded with a real size.
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", "<script>addEventListener('load', () => { const i = [...document.images];"
                     " document.body.setAttribute('data-loaded', i.filter(x => x.complete && x.naturalWidth > 0)"
                     ".length + '/' + i.length); });</script></body>"))  # fmt: skip
    dumped = _chromium(["--virtual-time-budget=5000", "--dump-dom", probe.as_uri()], tmp_path / "profile")
    assert 'data-loaded="4/4"' in dumped.stdout, dumped.stderr[-2000:]
    # 2. The screenshot shows them: the report has coloured pixels, the same page without images has none.
    stripped = tmp_path / "stripped.html"
    stripped.write_text(re.sub(r"<img [^>]*>", "", page))
    shots = {}
    for name, html_file in (("report", out / "report.html"), ("stripped", stripped)):
        shots[name] = tmp_path / f"{name}.png"
        done = _chromium(
            ["--window-size=1280,2000", f"--screenshot={shots[name]}", html_file.as_uri()], tmp_path / name
        )
        assert shots[name].is_file(), done.stderr[-2000:]
    assert _coloured_pixels(shots["stripped"]) < 50
    assert _coloured_pixels(shots["report"]) > 20_000


def test_audio_and_text_reports(monkeypatch, tmp_path):
    from tests.reference_tokenizers import FrameQuantizer
    from zoo.data import DATASETS

    monkeypatch.setitem(DATASETS, "test-tones", "tests.reference_tokenizers:tones")
    monkeypatch.setitem(DATASETS, "test-sentences", "tests.reference_tokenizers:sentences")
    suite = {"data": "test-tones", "batch_size": 4, "examples": 2, "metrics": ["codebook", "throughput", "psnr"]}
    results = run_suite(suite, [FrameQuantizer(hop=100)], out_dir=tmp_path / "audio", progress=False)
    assert results["notes"]["FrameQuantizer"] == ["psnr: skipped, it applies to image, not audio"]
    assert results["results"]["FrameQuantizer"]["throughput"]["encode_x_realtime"] > 0
    page = (tmp_path / "audio" / "report.html").read_text()
    assert page.count('src="data:audio/wav;base64,') == 4  # 2 items x (original + reconstruction)

    results = run_suite({**suite, "data": "test-sentences"}, ["byte"], out_dir=tmp_path / "text", progress=False)
    assert results["results"]["byte"]["codebook"]["usage"] > 0
    page = (tmp_path / "text" / "report.html").read_text()
    assert "<h2>Tokenization examples</h2>" in page and '<span class="tok">q</span>' in page
