"""What the pFID study reports: a row per tokenizer, the correlations with gFID, a scatter plot, Markdown and HTML.

Correlations follow the question RobusTok asks (https://arxiv.org/abs/2503.08354, section 4): across
tokenizers, does a tokenizer-only metric rank them as the generators trained on their tokens rank?
Spearman's rho (ranks) answers that; Pearson's r (linear) is given beside it. Both come from
``scipy.stats`` with their two-sided p-values, and need at least three tokenizers with finite values.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

from zoo.pretrained import atomic_write_bytes, atomic_write_text

# (row key, metric, key inside a dict value): what the table takes from each tokenizer's suite results.
COLUMNS = (
    ("psnr", "psnr", None),
    ("rfid", "rfid", None),
    ("pfid", "pfid", "mean"),
    ("gfid", "gfid", None),
    ("usage", "codebook", "usage"),
)
PREDICTORS = ("rfid", "pfid")


def describe_tokenizer(config: dict, vocab_size: int) -> dict:
    """Quantiser kind, codebook size and perturbation settings of a ``VQTokenizer``-style config, for the table."""
    from zoo.quantize.perturb import PerturbationSchedule

    quantizer = config.get("quantizer") or {}
    schedule = PerturbationSchedule.from_config(config.get("perturbation"))  # defaults filled in
    shown = f"alpha {schedule.alpha:g}, beta {schedule.beta:g}, delta {schedule.delta}" if schedule else "off"
    return {"quantizer": quantizer.get("kind", "?"), "codebook": int(vocab_size), "perturbation": shown}


def study_row(label: str, results: dict, description: dict) -> dict:
    """One tokenizer's line: its description and the numbers of its suite run (None where a metric gave none)."""
    values = results["results"].get(label, {})
    row = {"tokenizer": label, **description}
    for name, metric, key in COLUMNS:
        value = values.get(metric)
        value = value.get(key) if isinstance(value, dict) else (value if key is None else None)
        row[name] = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
    return row


def correlation(xs: list[float], ys: list[float]) -> dict:
    """Spearman's rho and Pearson's r with p-values; ``None`` values with a reason when they are undefined."""
    from scipy import stats

    pairs = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
    result = {"n": len(pairs), "spearman": None, "spearman_p": None, "pearson": None, "pearson_p": None}
    if len(pairs) < 3:
        result["note"] = f"needs at least 3 tokenizers with both values, has {len(pairs)}"
        return result
    x, y = zip(*pairs)
    if len(set(x)) < 2 or len(set(y)) < 2:
        result["note"] = "undefined: one of the two metrics is constant across tokenizers"
        return result
    spearman, pearson = stats.spearmanr(x, y), stats.pearsonr(x, y)
    result.update(spearman=float(spearman.statistic), spearman_p=float(spearman.pvalue),
                  pearson=float(pearson.statistic), pearson_p=float(pearson.pvalue))
    return result


def correlations(rows: list[dict]) -> dict:
    """``{"rfid_vs_gfid": {...}, "pfid_vs_gfid": {...}}`` over the finished rows."""
    gfid = [row["gfid"] for row in rows]
    return {f"{name}_vs_gfid": correlation([row[name] for row in rows], gfid) for name in PREDICTORS}


def scatter_png(rows: list[dict], found: dict) -> bytes | None:
    """rFID vs gFID and pFID vs gFID side by side, each point labelled with its tokenizer."""
    points = [row for row in rows if row["gfid"] is not None]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, name in zip(axes, PREDICTORS):
        shown = [row for row in points if row[name] is not None]
        ax.scatter([row[name] for row in shown], [row["gfid"] for row in shown], color="tab:blue")
        for row in shown:
            ax.annotate(row["tokenizer"], (row[name], row["gfid"]), textcoords="offset points", xytext=(4, 3),
                        fontsize=8)
        stats = found[f"{name}_vs_gfid"]
        if stats["spearman"] is not None:
            title = f"Spearman {stats['spearman']:.2f}, Pearson {stats['pearson']:.2f} (n={stats['n']})"
        else:
            title = stats.get("note", "")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("pFID (mean over alphas)" if name == "pfid" else "rFID")
        ax.set_ylabel("gFID")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _number(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def markdown(study: dict) -> str:
    """The study as Markdown: what was run, the table, the correlations, what is still pending."""
    lines = [f"# {study['title']}", ""]
    if study.get("note"):
        lines += [f"> {study['note']}", ""]
    lines += [
        f"Command: `{study['command']}`", "",
        f"Recipe `{study['recipe']}`; suite `{study['suite']['name']}` on {json.dumps(study['suite']['data'])}, "
        f"{study['items']} held-out images; zoo git {study['git']}; {study['date']}.", "",
        "| tokenizer | quantizer | codebook | perturbation | PSNR | rFID | pFID | gFID | usage |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for row in study["rows"]:
        lines.append(
            f"| `{row['tokenizer']}` | {row['quantizer']} | {row['codebook']} | {row['perturbation']} | "
            f"{_number(row['psnr'])} | {_number(row['rfid'])} | {_number(row['pfid'])} | {_number(row['gfid'])} | "
            f"{_number(row['usage'], 3)} |"
        )
    lines += ["", "| predictor of gFID | n | Spearman rho (p) | Pearson r (p) |", "|---|---:|---:|---:|"]
    for name, stats in study["correlations"].items():
        if stats["spearman"] is None:
            lines.append(f"| {name} | {stats['n']} | – ({stats.get('note', '')}) | – |")
        else:
            lines.append(f"| {name} | {stats['n']} | {stats['spearman']:.3f} ({stats['spearman_p']:.3g}) | "
                         f"{stats['pearson']:.3f} ({stats['pearson_p']:.3g}) |")
    if study.get("pending"):
        lines += ["", f"Not finished yet: {', '.join(f'`{p}`' for p in study['pending'])}."]
    lines += ["", "pFID is the mean over its alphas; gFID compares as many class-conditional samples as held-out "
                  "images, with the same feature extractor and reference statistics as rFID and pFID."]
    return "\n".join(lines) + "\n"


def _study_html(study: dict, scatter: bytes | None) -> str:
    def esc(value) -> str:
        return html.escape(str(value), quote=True)

    head = "".join(f"<th>{name}</th>" for name in
                   ("tokenizer", "quantizer", "codebook", "perturbation", "PSNR", "rFID", "pFID", "gFID", "usage"))
    rows = []
    for row in study["rows"]:
        link = f"<a href='tokenizers/{esc(row['tokenizer'])}/report.html'>{esc(row['tokenizer'])}</a>"
        cells = [row["quantizer"], row["codebook"], row["perturbation"],
                 *(_number(row[k]) for k in ("psnr", "rfid", "pfid", "gfid")), _number(row["usage"], 3)]
        rows.append(f"<tr><th>{link}</th>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    corr = []
    for name, stats in study["correlations"].items():
        if stats["spearman"] is None:
            cells = f"<td colspan=2>{esc(stats.get('note'))}</td>"
        else:
            cells = (f"<td>{stats['spearman']:.3f} (p {stats['spearman_p']:.3g})</td>"
                     f"<td>{stats['pearson']:.3f} (p {stats['pearson_p']:.3g})</td>")
        corr.append(f"<tr><th>{esc(name)}</th><td>{stats['n']}</td>{cells}</tr>")
    picture = ""
    if scatter:
        encoded = base64.b64encode(scatter).decode()
        picture = f"<img alt='rFID and pFID against gFID' src='data:image/png;base64,{encoded}'>"
    note = f"<p><b>{esc(study['note'])}</b></p>" if study.get("note") else ""
    pending = f"<p>Not finished yet: {esc(', '.join(study['pending']))}.</p>" if study.get("pending") else ""
    return (f"<section><h1>{esc(study['title'])}</h1>{note}<p class='meta'>Command: <code>{esc(study['command'])}"
            f"</code>; zoo git {esc(study['git'])}; {esc(study['date'])}</p>"
            f"<h2>Tokenizers</h2><table><tr>{head}</tr>{''.join(rows)}</table>{pending}"
            f"<h2>Does the metric predict gFID?</h2><table><tr><th>predictor</th><th>n</th><th>Spearman rho</th>"
            f"<th>Pearson r</th></tr>{''.join(corr)}</table>{picture}</section>")


def write_study_report(out_dir: Path, study: dict, merged: dict | None) -> dict[str, Path]:
    """``study.json``, ``results.md`` and ``report.html`` (the study, then the suite's full leaderboard)."""
    from zoo.evaluate.report import json_safe, render_page, render_section

    out_dir.mkdir(parents=True, exist_ok=True)
    scatter = scatter_png(study["rows"], study["correlations"])
    paths = {"json": out_dir / "study.json", "markdown": out_dir / "results.md", "html": out_dir / "report.html"}
    atomic_write_text(paths["json"], json.dumps(json_safe(study), indent=2, allow_nan=False) + "\n")
    atomic_write_text(paths["markdown"], markdown(study))
    sections = [_study_html(study, scatter)]
    if merged is not None and merged["results"]:
        sections.append(render_section(merged))
    atomic_write_text(paths["html"], render_page(study["title"], sections))
    if scatter:
        atomic_write_bytes(out_dir / "scatter.png", scatter)
    return paths
