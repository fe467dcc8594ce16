"""What a suite run writes: ``results.json``, a ``results.md`` leaderboard and a self-contained ``report.html``.

The HTML page needs nothing but itself: figures are inline base64 PNGs (reconstruction grids,
codebook usage, any ``Metric.figures()``), audio examples inline WAVs, styles inline. It opens
offline in any browser.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.pretrained import atomic_write_text

ARROWS = {True: "↑", False: "↓", None: ""}
TEXT_EXAMPLE_CHARS = 300
# FID on fewer images than this is biased upward and noisy (papers report 50k): its cells carry "⚠ n=N".
FEW_FID_IMAGES = 1000
FEW_MARK = "⚠"


# -- values ----------------------------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """Results as strict JSON: non-finite floats become null, tensors and numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def leaderboard_columns(results: dict, details: bool = False) -> list[tuple[str, str, str | None, bool | None]]:
    """``(column, metric, key, higher_is_better)`` for every value, in suite order.

    Keys holding a dot (``usage.level0``) are details: left out unless ``details``.
    """
    columns = []
    for metric_name, info in results["metrics"].items():
        keys: list[str | None] = []
        for values in results["results"].values():
            value = values.get(metric_name)
            if isinstance(value, dict):
                keys += [k for k in value if k not in keys and (details or "." not in k)]
            elif value is not None and None not in keys:
                keys.append(None)
        for key in keys:
            direction = (
                info["higher_is_better"] if key is None else info["directions"].get(key, info["higher_is_better"])
            )
            columns.append((metric_name if key is None else f"{metric_name}.{key}", metric_name, key, direction))
    return columns


def lookup(results: dict, label: str, metric: str, key: str | None):
    value = results["results"].get(label, {}).get(metric)
    return value.get(key) if isinstance(value, dict) and key is not None else (None if key else value)


def format_value(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


# Measurements of the machine rather than the tokenizer: they move with load, threads and hardware, so the
# leaderboard shows their direction but bolds no "best" (a metric may also say so itself: ``system: true``).
SYSTEM_METRICS = {"throughput", "memory"}
_SYSTEM_KEYS = ("peak_mb", "memory")  # memory columns inside other metrics


def is_system_metric(results: dict, metric: str, key: str | None = None) -> bool:
    """True for throughput and memory values (noisy, machine-dependent), which are never ranked as best."""
    info = results.get("metrics", {}).get(metric, {})
    if info.get("system") or metric in SYSTEM_METRICS:
        return True
    if str(info.get("class", "")).startswith("zoo.metrics.throughput:"):
        return True
    return key is not None and any(part in key for part in _SYSTEM_KEYS)


def best_labels(results: dict, metric: str, key: str | None, direction: bool | None) -> set[str]:
    if direction is None or is_system_metric(results, metric, key):
        return set()
    scored = {label: lookup(results, label, metric, key) for label in results["results"]}
    scored = {k: v for k, v in scored.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    if len(scored) < 2:
        return set()
    best = max(scored.values()) if direction else min(scored.values())
    return {label for label, value in scored.items() if value == best}


def few_fid_images(results: dict, label: str, metric: str) -> int | None:
    """The image count behind a FID-family value when it is below ``FEW_FID_IMAGES``, else None.

    The runner records, per tokenizer and FID-like metric, the smaller of its two image sets (``fid_images``)."""
    count = results.get("fid_images", {}).get(label, {}).get(metric)
    return int(count) if isinstance(count, (int, float)) and count < FEW_FID_IMAGES else None


def few_images_note(results: dict) -> str | None:
    """The legend under a leaderboard that flags FID values, or None when none is flagged."""
    counts = sorted({n for label in results["results"] for metric in results["metrics"]
                     if (n := few_fid_images(results, label, metric)) is not None})  # fmt: skip
    if not counts:
        return None
    shown = ", ".join(f"{n:,}" for n in counts)
    return (f"{FEW_MARK} n=N: a FID-family value computed on only N images ({shown} here, fewer than "
            f"{FEW_FID_IMAGES:,}); FID on few images is biased upward and noisy, so compare such values only with "
            "runs on the same images, never with papers' 50k-image FIDs.")  # fmt: skip


def markdown_table(results: dict) -> str:
    """The leaderboard: a row per tokenizer, a column per value, ↑ / ↓ for the better direction, best in bold
    (never for system metrics: throughput and memory, ``is_system_metric``); FID-family values on fewer than
    ``FEW_FID_IMAGES`` images carry ``⚠ n=N`` and a legend below the table."""
    columns = leaderboard_columns(results)
    header = ["tokenizer"] + [f"{column} {ARROWS[direction]}".strip() for column, _, _, direction in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(columns)) + "|"]
    bests = {column: best_labels(results, m, k, d) for column, m, k, d in columns}
    for label in results["results"]:
        cells = [f"`{label}`"]
        for column, metric, key, _ in columns:
            value = lookup(results, label, metric, key)
            text = format_value(value)
            text = f"**{text}**" if label in bests[column] else text
            few = few_fid_images(results, label, metric)
            cells.append(f"{text} {FEW_MARK} n={few:,}" if few is not None and value is not None else text)
        lines.append("| " + " | ".join(cells) + " |")
    note = few_images_note(results)
    return "\n".join(lines) + "\n" + (f"\n{note}\n" if note else "")


def provenance_line(results: dict) -> str:
    """Data, versions, date and processes in one line."""
    run, data = results["run"], results["data"]
    git = run.get("git") or {}
    commit = (git.get("hash") or "unknown")[:12] + (" (dirty)" if git.get("dirty") else "")
    return (
        f"data {json.dumps(data['spec'])}, {data['items']} {data['modality']} items; zoo {run['zoo_version']}, "
        f"git {commit}; {run['date']}; {run['world_size']} process(es) on {run['device']}"
    )


def markdown_report(results: dict) -> str:
    suite = results["suite"]
    lines = [f"# {suite['name']}", ""]
    if suite.get("description"):
        lines += [suite["description"], ""]
    line = provenance_line(results)
    lines += [line[0].upper() + line[1:] + ".", "", markdown_table(results)]
    for label, notes in results.get("notes", {}).items():
        lines += [f"- `{label}`: {note}" for note in notes]
    return "\n".join(lines).rstrip() + "\n"


# -- token splits ----------------------------------------------------------------------------------------


_CONTROL_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _utf8_length(lead: int) -> int:
    """Bytes in the UTF-8 sequence a lead byte starts (0: not a lead byte)."""
    if lead < 0x80:
        return 1
    return 2 if 0xC2 <= lead <= 0xDF else 3 if 0xE0 <= lead <= 0xEF else 4 if 0xF0 <= lead <= 0xF4 else 0


def token_parts(raw: bytes) -> list[tuple[str, bool]]:
    """A token's bytes as ``(text, is_escape)`` runs: whole UTF-8 characters as themselves, bytes that are part of
    a character (byte-level BPE splits "ü" into ``\\xc3`` + ``\\xbc``) as ``\\xNN``, control characters as
    ``\\n``, ``\\t``, ``\\r`` or ``\\xNN``, so no token shows as mojibake or U+FFFD."""
    import unicodedata

    parts: list[tuple[str, bool]] = []
    i = 0
    while i < len(raw):
        n = _utf8_length(raw[i])
        try:
            char = raw[i : i + n].decode("utf-8") if n and i + n <= len(raw) else None
        except UnicodeDecodeError:  # a truncated or invalid sequence (lone surrogates' 3-byte form included)
            char = None
        if char is None:
            text, escape, i = f"\\x{raw[i]:02x}", True, i + 1
        elif unicodedata.category(char) == "Cc":
            text, escape, i = _CONTROL_ESCAPES.get(char) or f"\\x{ord(char):02x}", True, i + n
        else:
            text, escape, i = char, False, i + n
        if parts and parts[-1][1] == escape:
            parts[-1] = (parts[-1][0] + text, escape)
        else:
            parts.append((text, escape))
    return parts


def readable_token(raw: bytes) -> str:
    """``token_parts`` joined: the text a token's bytes decode to, partial characters as ``\\xNN``."""
    return "".join(text for text, _ in token_parts(raw))


def readable_tokens(tokenizer, ids: list[int]) -> list[str]:
    """Each id as readable text (``readable_token`` of its bytes); specials, which have no bytes, by name."""
    if hasattr(tokenizer, "token_bytes"):
        raws = tokenizer.token_bytes(ids)
    else:
        raws = [str(tokenizer.decode([i])).encode("utf-8", "surrogatepass") for i in ids]
    names = tokenizer.token_strings if hasattr(tokenizer, "token_strings") else None
    return [readable_token(raw) if raw or names is None else names([i])[0] for raw, i in zip(raws, ids)]


# -- pictures --------------------------------------------------------------------------------------------


def figure_to_png(figure) -> bytes:
    """A matplotlib Figure or a uint8 array ``[H, W, 3]`` as PNG bytes (the figure is closed)."""
    buffer = io.BytesIO()
    if isinstance(figure, (bytes, bytearray)):
        return bytes(figure)
    if isinstance(figure, np.ndarray):
        from PIL import Image

        Image.fromarray(np.asarray(figure, dtype=np.uint8)).save(buffer, format="PNG")
        return buffer.getvalue()
    import matplotlib.pyplot as plt

    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def _tile_row(images: torch.Tensor, min_side: int = 64) -> np.ndarray:
    """``[n, 3, H, W]`` in [0, 1] -> one uint8 strip ``[H', n·W', 3]``, small images enlarged (nearest)."""
    from torchvision.utils import make_grid

    images = images.detach().float().cpu().clamp(0, 1)
    scale = max(1, math.ceil(min_side / images.shape[-1]))
    if scale > 1:
        images = images.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
    grid = make_grid(images, nrow=len(images), padding=2, pad_value=1.0)
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def reconstruction_grid(originals: torch.Tensor, rows: dict[str, torch.Tensor]) -> bytes:
    """One PNG: the originals on top, then a row per tokenizer's reconstructions, each row labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strips = {"original": _tile_row(originals), **{label: _tile_row(images) for label, images in rows.items()}}
    height, width = next(iter(strips.values())).shape[:2]
    fig_width = min(14.0, max(4.0, width / 80))
    fig, axes = plt.subplots(len(strips), 1, figsize=(fig_width, fig_width * height / width * len(strips) + 0.3))
    for ax, (label, strip) in zip(np.atleast_1d(axes), strips.items()):
        ax.imshow(strip, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return figure_to_png(fig)


def _wav_bytes(wave: torch.Tensor, sample_rate: int) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, wave.detach().float().cpu().clamp(-1, 1).numpy(), sample_rate, format="WAV")
    return buffer.getvalue()


def collect_examples(tokenizer, items: list[dict], modality: str, device) -> dict:
    """What the report shows of one tokenizer on the first items: reconstructions, or text split into tokens."""
    from zoo.data import collate
    from zoo.errors import ZooError

    batch = collate(items)
    has_decoder = getattr(tokenizer, "has_decoder", True)
    try:
        with torch.no_grad():
            if modality == "text":
                segments = [readable_tokens(tokenizer, tokenizer.encode(text[:TEXT_EXAMPLE_CHARS]))
                            for text in batch["text"][:3]]
                return {"segments": segments}
            if modality == "image":
                ids = tokenizer.encode(batch["image"].to(device))
                out = {"ids_shape": list(ids.shape)}
                if has_decoder:
                    out["reconstruction"] = tokenizer.decode(ids).float().cpu()
                return out
            encoded = tokenizer.encode(batch["audio"].to(device), lengths=batch["audio_lengths"].to(device))
            out = {"ids_shape": list(encoded.ids.shape), "sample_rate": int(tokenizer.sample_rate)}
            if has_decoder:
                out["reconstruction"] = tokenizer.decode(encoded).float().cpu()
            return out
    except ZooError as err:
        return {"note": str(err)}


# -- HTML ------------------------------------------------------------------------------------------------

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1360px;padding:0 1em}
body{color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ddd;padding:.3em .6em}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums} td.best{font-weight:bold}
.board{overflow-x:auto;max-width:100%;margin:.6em 0} .board table{margin:0;font-size:13px}
.board td,.board th{padding:.3em .45em}
.board th.col{white-space:normal;overflow-wrap:break-word;min-width:4em;max-width:7em;vertical-align:bottom;
font-weight:600;line-height:1.25}
.board th.row{position:sticky;left:0;z-index:1;text-align:left;white-space:nowrap;max-width:18em;
overflow:hidden;text-overflow:ellipsis;box-shadow:1px 0 0 #ccc}
.board td.num{white-space:nowrap} .few{color:#a15c00;font-size:85%;font-weight:normal;white-space:nowrap}
.board td .few{display:block}
.meta{color:#555} .note{color:#555;font-size:90%} img{max-width:100%;border:1px solid #eee}
code,pre{background:#f6f6f6} pre{padding:.5em;overflow:auto;max-height:20em}
.tok{border:1px solid #bbb;border-radius:3px;padding:0 1px;margin:0 1px;white-space:pre-wrap;background:#f3f3f3}
.tok:nth-child(even){background:#e3e3e3} .esc{color:#a33;font-family:monospace;font-size:85%}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


_BREAKS = re.compile(r"([._/=])")


def _header_html(text: str) -> str:
    """A column name with line-break chances after ``_ . / =`` (``encode_<wbr>items…``), so headers wrap."""
    return _BREAKS.sub(r"\1<wbr>", _esc(text))


def _leaderboard_html(results: dict, details: bool = False) -> str:
    """The leaderboard as a table in a horizontally scrolling box: wrapping headers, the tokenizer column
    sticky on the left (``.board``), so a dozen metric columns stay readable on a 1,400 px screen."""
    columns = leaderboard_columns(results, details)
    head = "".join(
        f'<th class="col" scope="col" title="{_esc(column)}">{_header_html(metric)}'
        f"{'<br>' + _header_html(key) if key else ''} {ARROWS[direction]}</th>"
        for column, metric, key, direction in columns
    )
    rows = []
    for label in results["results"]:
        cells = []
        for _column, metric, key, direction in columns:
            best = label in best_labels(results, metric, key, direction)
            value = lookup(results, label, metric, key)
            few = few_fid_images(results, label, metric)
            flag = (f' <span class="few" title="computed on {few:,} images, fewer than {FEW_FID_IMAGES:,}">'
                    f"{FEW_MARK} n={few:,}</span>") if few is not None and value is not None else ""  # fmt: skip
            cells.append(f'<td class="num{" best" if best else ""}">{_esc(format_value(value))}{flag}</td>')
        rows.append(f'<tr><th class="row" scope="row" title="{_esc(label)}">{_esc(label)}</th>{"".join(cells)}</tr>')
    note = None if details else few_images_note(results)  # the "All values" table sits under the same legend
    legend = f"<p class='note few-note'>{_esc(note)}</p>" if note else ""
    return (f'<div class="board"><table><tr><th class="row" scope="col">tokenizer</th>{head}</tr>'
            f"{''.join(rows)}</table></div>{legend}")  # fmt: skip


def _examples_html(examples: dict) -> str:
    modality, items, per_tokenizer = (
        examples.get("modality"),
        examples.get("items") or [],
        examples.get("tokenizers") or {},
    )
    if not items or not per_tokenizer:
        return ""
    parts = []
    notes = [
        f"<li><b>{_esc(label)}</b>: {_esc(ex['note'])}</li>" for label, ex in per_tokenizer.items() if "note" in ex
    ]
    if modality == "image":
        rows = {label: ex["reconstruction"] for label, ex in per_tokenizer.items() if "reconstruction" in ex}
        originals = torch.stack([item["image"] for item in items])
        grid = _img(reconstruction_grid(originals, rows), "reconstruction grid")
        parts.append(f"<h2>Reconstructions</h2><p class='note'>Top row: originals; below, each tokenizer's "
                     f"decode(encode(x)).</p>{grid}")  # fmt: skip
    elif modality == "text":
        parts.append("<h2>Tokenization examples</h2>")
        for label, ex in per_tokenizer.items():
            for pieces in ex.get("segments", []):
                spans = "".join(f'<span class="tok">{_token_html(piece)}</span>' for piece in pieces)
                parts.append(f"<p><b>{_esc(label)}</b> ({len(pieces)} tokens): {spans}</p>")
    elif modality == "audio":
        parts.append("<h2>Audio examples</h2><table><tr><th>item</th><th>original</th>"
                     + "".join(f"<th>{_esc(label)}</th>" for label in per_tokenizer) + "</tr>")  # fmt: skip
        rate = next((ex["sample_rate"] for ex in per_tokenizer.values() if "sample_rate" in ex), 16000)
        for index, item in enumerate(items[:4]):
            cells = [_audio_tag(item["audio"], rate)]
            for ex in per_tokenizer.values():
                recon = ex.get("reconstruction")
                length = item["audio"].shape[-1]  # decoders may pad to whole frames
                cells.append(_audio_tag(recon[index][:length], ex["sample_rate"]) if recon is not None else "–")
            parts.append(f"<tr><td>{index}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    if notes:
        parts.append(f"<ul class='note'>{''.join(notes)}</ul>")
    return "".join(parts)


_ESCAPE = re.compile(r"(\\x[0-9a-f]{2}|\\[ntr])")


def _token_html(piece: str) -> str:
    """A readable token, its byte and control escapes set apart (``.esc``) from text that happens to hold them."""
    return "".join(f'<span class="esc">{_esc(part)}</span>' if i % 2 else _esc(part)
                   for i, part in enumerate(_ESCAPE.split(piece)))


def _audio_tag(wave: torch.Tensor, sample_rate: int) -> str:
    data = base64.b64encode(_wav_bytes(wave, sample_rate)).decode()
    return f'<audio controls preload="none" src="data:audio/wav;base64,{data}"></audio>'


def render_section(results: dict, figures: dict | None = None, examples: dict | None = None) -> str:
    """One suite's part of the page: leaderboard, examples, per-tokenizer figures, definitions, provenance."""
    suite, run = results["suite"], results["run"]
    parts = [
        f"<section><h1>{_esc(suite['name'])}</h1>",
        f"<p>{_esc(suite.get('description') or '')}</p>",
        f"<p class='meta'>{_esc(provenance_line(results))}</p>",
        "<h2>Leaderboard</h2>",
        _leaderboard_html(results) if results["results"] else "<p>No tokenizer ran on this data.</p>",
        _examples_html(examples or {}),
    ]
    if any(key and "." in key for _, _, key, _ in leaderboard_columns(results, details=True)):
        parts.append(f"<details><summary>All values</summary>{_leaderboard_html(results, details=True)}</details>")
    for label, record in results["tokenizers"].items():
        parts.append(f"<h2>{_esc(label)}</h2><p class='meta'><code>{_esc(record.get('target'))}</code>, "
                     f"vocab {record.get('vocab_size')}, weights sha256 "
                     f"{_esc(record.get('weights_sha256') or '–')}</p>")  # fmt: skip
        for note in results.get("notes", {}).get(label, []):
            parts.append(f"<p class='note'>{_esc(note)}</p>")
        for title, png in (figures or {}).get(label, {}).items():
            parts.append(f"<h3>{_esc(title)}</h3>{_img(png, f'{label} {title}')}")
        parts.append(
            f"<details><summary>config</summary><pre>{_esc(json.dumps(record.get('config'), indent=2))}</pre></details>"
        )
    definitions = "".join(
        f"<tr><th>{_esc(name)}</th><td>{ARROWS[info['higher_is_better']]}</td><td>{_esc(info['description'])}</td></tr>"
        for name, info in results["metrics"].items()
    )
    versions = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in run["versions"].items())
    parts += [
        f"<h2>Metrics</h2><table>{definitions}</table>",
        f"<details><summary>Library versions</summary><table>{versions}</table></details></section>",
    ]
    return "\n".join(parts)


def render_page(title: str, sections: list[str]) -> str:
    body = "\n<hr>\n".join(sections)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")  # fmt: skip


def write_report(out_dir: str | Path, results: dict, figures: dict | None = None, examples: dict | None = None) -> dict:
    """Write ``results.json``, ``results.md`` and ``report.html`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md", "html": out / "report.html"}
    atomic_write_text(
        paths["json"], json.dumps(json_safe(results), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    )
    atomic_write_text(paths["markdown"], markdown_report(results))
    page = render_page(f"zoo eval: {results['suite']['name']}", [render_section(results, figures, examples)])
    atomic_write_text(paths["html"], page)
    return paths
