"""Several runs of the pFID study with other seeds, read together: is the ranking signal or noise?

    python -m zoo.studies.seed_sweep runs/pfid-study/study runs/pfid-study-seed1/study --out eval/results/x

Each argument is a study folder (or its ``study.json``) written by ``zoo.studies.pfid_study``; the runs
must study the same tokenizers on the same held-out set. The sweep reports

- each tokenizer's metrics as mean and sample standard deviation over the runs;
- the correlations with gFID within each run, over the per-tokenizer means, and pooled over every
  (tokenizer, run) point (pooled points are not independent: read its p-values as optimistic);
- how well a metric reproduces itself: Spearman's rho between two runs' values across tokenizers, for
  every pair of runs. A metric whose ranking does not survive a change of seed cannot rank tokenizers,
  and a predictor cannot correlate with a gFID ranking that is mostly noise.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

from zoo.errors import ZooError
from zoo.pretrained import atomic_write_text
from zoo.studies.study_report import COLUMNS, PREDICTORS, correlation, correlations

METRICS = tuple(name for name, _, _ in COLUMNS)


def load_study(path: str | Path) -> dict:
    """A study's ``study.json`` (the file, or the folder that holds it), with where it came from."""
    path = Path(path)
    file = path / "study.json" if path.is_dir() else path
    if not file.is_file():
        raise ZooError(f"{path}: no study.json (expected a folder written by zoo.studies.pfid_study or its file)")
    study = json.loads(file.read_text())
    missing = [key for key in ("rows", "suite", "items") if key not in study]
    if missing:
        raise ZooError(f"{file}: not a pFID study result (missing {', '.join(missing)})")
    return {**study, "source": str(file)}


def check_comparable(studies: list[dict]) -> list[str]:
    """The tokenizers every run studied, in the first run's order; an error when runs differ in what they measured."""
    if len(studies) < 2:
        raise ZooError(f"a seed sweep needs at least 2 study runs, got {len(studies)}")
    sources = [str(Path(study["source"]).resolve()) for study in studies]
    if len(set(sources)) < len(sources):
        raise ZooError(f"the same study was given twice ({sorted(s for s in sources if sources.count(s) > 1)[0]}): "
                       "a sweep needs one run per seed")
    first = studies[0]
    labels = [row["tokenizer"] for row in first["rows"]]
    for study in studies[1:]:
        others = [row["tokenizer"] for row in study["rows"]]
        if sorted(others) != sorted(labels):
            raise ZooError(f"{study['source']} studies tokenizers {sorted(others)}, but {first['source']} studies "
                           f"{sorted(labels)}: runs of a sweep must study the same tokenizers")
        if study["items"] != first["items"]:
            raise ZooError(f"{study['source']} evaluates {study['items']} held-out images, {first['source']} "
                           f"{first['items']}: runs of a sweep must share the held-out set")
        if study["suite"].get("data") != first["suite"].get("data"):
            raise ZooError(f"{study['source']} evaluates on {study['suite'].get('data')}, {first['source']} on "
                           f"{first['suite'].get('data')}: runs of a sweep must share the held-out set")
    return labels


def _values(study: dict, metric: str, labels: list[str]) -> list[float | None]:
    """One metric of one run, in ``labels`` order."""
    by_label = {row["tokenizer"]: row for row in study["rows"]}
    return [by_label[label].get(metric) for label in labels]


def _spread(values: list[float | None]) -> dict:
    present = [v for v in values if v is not None]
    return {
        "mean": statistics.fmean(present) if present else None,
        "std": statistics.stdev(present) if len(present) >= 2 else None,
        "runs": len(present),
    }


def sweep_summary(studies: list[dict]) -> dict:
    """Per-tokenizer spreads, correlations per run / over means / pooled, and each metric's seed-to-seed rho."""
    labels = check_comparable(studies)
    first_rows = {row["tokenizer"]: row for row in studies[0]["rows"]}
    per_run = {metric: [_values(study, metric, labels) for study in studies] for metric in METRICS}
    tokenizers = []
    for index, label in enumerate(labels):
        entry = {key: first_rows[label].get(key) for key in ("tokenizer", "quantizer", "codebook", "perturbation")}
        for metric in METRICS:
            entry[metric] = _spread([run[index] for run in per_run[metric]])
        tokenizers.append(entry)
    mean_rows = [{"tokenizer": t["tokenizer"], **{m: t[m]["mean"] for m in METRICS}} for t in tokenizers]
    pooled_rows = [row for study in studies for row in study["rows"]]
    reproducibility = {}
    for metric in METRICS:
        pairs = []
        for (i, a), (j, b) in itertools.combinations(enumerate(per_run[metric]), 2):
            found = correlation(a, b)
            pairs.append({"runs": [i, j], "spearman": found["spearman"], "pearson": found["pearson"],
                          **({"note": found["note"]} if "note" in found else {})})
        reproducibility[metric] = pairs
    return {
        "runs": [{"source": s["source"], "command": s.get("command"), "note": s.get("note"), "git": s.get("git")}
                 for s in studies],
        "items": studies[0]["items"],
        "suite": studies[0]["suite"].get("name"),
        "tokenizers": tokenizers,
        "correlations": {
            "per_run": [correlations(study["rows"]) for study in studies],
            "over_means": correlations(mean_rows),
            "pooled": correlations(pooled_rows),
        },
        "reproducibility": reproducibility,
    }


def _fmt(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def _correlation_cells(found: dict) -> str:
    if found["spearman"] is None:
        return f"{found['n']} | – ({found.get('note', '')}) | –"
    return (f"{found['n']} | {found['spearman']:.3f} ({found['spearman_p']:.3g}) | "
            f"{found['pearson']:.3f} ({found['pearson_p']:.3g})")


def markdown(summary: dict, command: str | None = None) -> str:
    runs = summary["runs"]
    lines = ["# pFID study over seeds", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [f"{len(runs)} runs of suite `{summary['suite']}` on {summary['items']} held-out images:", ""]
    lines += [f"- run {i}: `{run['source']}` (git {run['git']}): `{run['command']}`"
              + (f" — {run['note']}" if run.get("note") else "") for i, run in enumerate(runs)]
    lines += ["", "Mean ± sample standard deviation over the runs:", "",
              "| tokenizer | quantizer | codebook | perturbation | PSNR | rFID | pFID | gFID | usage |",
              "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for t in summary["tokenizers"]:
        cells = [f"{_fmt(t[m]['mean'])} ± {_fmt(t[m]['std'], 2)}" for m in METRICS]
        lines.append(f"| `{t['tokenizer']}` | {t['quantizer']} | {t['codebook']} | {t['perturbation']} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Correlation with gFID across tokenizers:", "",
              "| predictor | over | n | Spearman rho (p) | Pearson r (p) |", "|---|---|---:|---:|---:|"]
    found = summary["correlations"]
    for name in PREDICTORS:
        key = f"{name}_vs_gfid"
        for i, per_run in enumerate(found["per_run"]):
            lines.append(f"| {name} | run {i} | {_correlation_cells(per_run[key])} |")
        lines.append(f"| {name} | means over runs | {_correlation_cells(found['over_means'][key])} |")
        lines.append(f"| {name} | all points pooled | {_correlation_cells(found['pooled'][key])} |")
    lines += ["", "Seed-to-seed agreement of each metric (Spearman rho across tokenizers between two runs):", "",
              "| metric | " + " | ".join(f"runs {p['runs'][0]}–{p['runs'][1]}"
                                        for p in summary["reproducibility"]["gfid"]) + " |",
              "|---|" + "---:|" * len(summary["reproducibility"]["gfid"])]
    for metric, pairs in summary["reproducibility"].items():
        lines.append(f"| {metric} | " + " | ".join(_fmt(p["spearman"], 3) for p in pairs) + " |")
    return "\n".join(lines) + "\n"


def write_sweep(out_dir: Path, summary: dict, command: str | None = None) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "sweep.json", "markdown": out_dir / "sweep.md"}
    atomic_write_text(paths["json"], json.dumps(summary, indent=2, allow_nan=False) + "\n")
    atomic_write_text(paths["markdown"], markdown(summary, command))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.studies.seed_sweep", description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", help="study folders (or their study.json), one per seed")
    parser.add_argument("--out", required=True, help="folder for sweep.json and sweep.md")
    args = parser.parse_args(argv)
    try:
        summary = sweep_summary([load_study(path) for path in args.studies])
        command = "python -m zoo.studies.seed_sweep " + " ".join(sys.argv[1:] if argv is None else argv)
        paths = write_sweep(Path(args.out), summary, command)
    except ZooError as error:
        print(f"seed_sweep: error: {error}", file=sys.stderr)
        return 2
    print(paths["markdown"].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
