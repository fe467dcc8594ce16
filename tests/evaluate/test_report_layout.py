"""The leaderboard at a dozen columns (wrapping headers, sticky first column, horizontal scroll) and the flag on
FID-family values computed on fewer than 1,000 images, in results.md and report.html alike."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from zoo.evaluate.report import FEW_FID_IMAGES, STYLE, markdown_report, render_page, render_section

KEYS = ("encode_items_per_s", "decode_items_per_s", "encode_items_per_s_total", "encode_peak_mb", "decode_peak_mb")


def wide_results() -> dict:
    """Three tokenizers, twelve leaderboard columns: psnr, ssim, lpips, rfid, pfid.mean, codebook x2, throughput x5
    (pfid's per-alpha values are details, in the "All values" table)."""
    metrics = {
        "psnr": (True, {}), "ssim": (True, {}), "lpips": (False, {}), "rfid": (False, {}),
        "pfid": (False, {}), "codebook": (True, {}), "throughput": (None, {k: None for k in KEYS}),
    }  # fmt: skip
    values = {}
    for i, label in enumerate(("llamagen-vq16-imagenet-256", "chameleon-vqgan", "amused-vqgan-256")):
        values[label] = {
            "psnr": 20.0 + i, "ssim": 0.6 + i / 10, "lpips": 0.2 - i / 100, "rfid": 2.5 - i / 10,
            "pfid": {"alpha=0.1": 3.0 + i, "alpha=0.2": 4.0 + i, "alpha=0.3": 5.0 + i, "mean": 4.0 + i},
            "codebook": {"usage": 0.9, "perplexity": 800.0}, "throughput": {k: 100.0 * (i + 1) for k in KEYS},
        }  # fmt: skip
    return {
        "suite": {"name": "image-recon-256", "description": "wide"},
        "data": {"spec": "imagefolder:/data/val", "modality": "image", "items": 500},
        "run": {"zoo_version": "0", "git": {}, "date": "d", "world_size": 1, "device": "cuda", "versions": {}},
        "metrics": {name: {"higher_is_better": hib, "directions": d, "description": name}
                    for name, (hib, d) in metrics.items()},  # fmt: skip
        "tokenizers": {},
        "results": values,
        "notes": {},
        # 500 images for the first two; the third rests on 50,000 (no flag).
        "fid_images": {
            "llamagen-vq16-imagenet-256": {"rfid": 500, "pfid": 500},
            "chameleon-vqgan": {"rfid": 500, "pfid": 500},
            "amused-vqgan-256": {"rfid": 50000, "pfid": 50000},
        },
    }


def test_markdown_flags_few_image_fid_with_the_count():
    text = markdown_report(wide_results())
    header = next(line for line in text.splitlines() if line.startswith("| tokenizer"))
    assert header.count("|") - 2 == 12  # a dozen metric columns
    row = next(line for line in text.splitlines() if line.startswith("| `chameleon-vqgan`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == "2.4 ⚠ n=500" and cells[5] == "5 ⚠ n=500"  # rfid, pfid.mean
    assert "⚠" not in cells[1] and "⚠" not in cells[3]  # psnr, lpips are not FID-family
    unflagged = next(line for line in text.splitlines() if line.startswith("| `amused-vqgan-256`"))
    assert "⚠" not in unflagged
    assert f"fewer than {FEW_FID_IMAGES:,}" in text and "only N images (500 here" in text


def test_html_leaderboard_stays_readable_at_1400_px():
    section = render_section(wide_results())
    page = render_page("t", [section])
    board = re.search(r'<div class="board"><table>.*?</table></div>', page, re.S)
    assert board, "the leaderboard sits in a scrolling box"
    headers = re.findall(r'<th class="col"', board.group(0))
    assert len(headers) == 12
    # Long keys get break chances, so headers wrap instead of widening the table.
    assert "encode_<wbr>items_<wbr>per_<wbr>s" in board.group(0) and "alpha=<wbr>0.<wbr>1" in page
    assert board.group(0).count('<th class="row" scope="row"') == 3
    # The CSS: horizontal scroll, a sticky tokenizer column with an opaque background, wrapping capped headers.
    css = {m.group(1).strip(): m.group(2) for m in re.finditer(r"([^{}]+)\{([^}]*)\}", STYLE)}
    assert "overflow-x:auto" in css[".board"]
    assert "position:sticky" in css[".board th.row"] and "left:0" in css[".board th.row"]
    assert "background:#f4f4f4" in css["th"]  # what the sticky column shows over scrolled cells
    assert "white-space:normal" in css[".board th.col"] and "max-width:7em" in css[".board th.col"]
    # The few-images flag, with its count, in the cell and a legend below the table.
    flag = '<span class="few" title="computed on 500 images, fewer than 1,000">⚠ n=500</span>'
    assert board.group(0).count(flag) == 4  # rfid and pfid.mean of two tokenizers
    assert page.count(flag) == 4 + 10  # and in "All values": rfid and the four pfid values
    assert "few-note" in page and "papers&#x27; 50k-image FIDs" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MEASURE = """<script>
window.addEventListener("load", () => {
  const box = document.querySelector(".board"), table = box.querySelector("table");
  const out = document.createElement("pre"); out.id = "measured";
  out.textContent = JSON.stringify({box: box.clientWidth, table: table.scrollWidth, page: innerWidth});
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_a_dozen_columns_fit_a_1400_px_window_without_scrolling(tmp_path):
    import json

    page = render_page("t", [render_section(wide_results())]).replace("</body>", MEASURE + "</body>")
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    run = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
                          "--virtual-time-budget=3000", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=90)  # fmt: skip
    found = re.search(r'<pre id="measured">(.*?)</pre>', run.stdout)
    assert found, run.stderr[-2000:]
    measured = json.loads(found.group(1).replace("&quot;", '"'))
    assert measured["page"] == 1400
    assert measured["table"] <= measured["box"], measured  # the whole leaderboard shows; no scrolling needed
