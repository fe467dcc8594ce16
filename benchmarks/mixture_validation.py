"""Controlled validation of data mixture inference (Hayase, Liu et al. 2024) on built-in corpora.

For each of ``--mixtures`` random mixtures (uniform on the simplex, i.e. Dirichlet(1), as the paper
samples them) of n categories, train a byte-level BPE with HF ``tokenizers`` on ``--train-bytes`` of
text drawn in those proportions, then infer the mixture from held-out samples of each category
(disjoint records) and score it by log10 MSE, for several sample sizes and numbers of merges used.
Baselines are scored the same way: a random point of the simplex, and the uniform mixture.

    python benchmarks/mixture_validation.py --out eval/results/mixture-inference.md
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import corpora  # noqa: E402

from zoo.analysis import SymbolTable, count_category, log10_mse, solve_mixture_path  # noqa: E402
from zoo.analysis.merges import bpe_from_tokenizer_json, train_byte_level_bpe  # noqa: E402
from zoo.pretrained import atomic_write_text  # noqa: E402

CATEGORY_SETS = {5: ["en", "de", "ru", "it", "code"], 8: ["en", "de", "ru", "it", "es", "pl", "cs", "code"]}


def run_mixture(categories, pools, index: int, args) -> dict:
    rng = np.random.default_rng(1000 * len(categories) + index)
    weights = rng.dirichlet(np.ones(len(categories)))
    training = {
        c: corpora.take_bytes(pools[c][0], int(w * args.train_bytes), seed=index) if w * args.train_bytes >= 1 else ""
        for c, w in zip(categories, weights)
    }
    sizes = {c: len(t.encode()) for c, t in training.items()}
    truth = {c: sizes[c] / sum(sizes.values()) for c in categories}
    long_run = index < args.long_mixtures
    num_merges = args.long_merges if long_run else max(args.merges)
    trained = train_byte_level_bpe([t for t in training.values() if t], num_merges)
    bpe = bpe_from_tokenizer_json(json.loads(trained.to_str()))
    record = {"n": len(categories), "mixture": index, "truth": truth, "results": []}
    for sample_bytes in args.sample_bytes:
        started = time.perf_counter()
        symbols = SymbolTable()
        histories = {
            c: count_category([corpora.take_bytes(pools[c][1], sample_bytes, seed=index)], bpe, symbols, num_merges)
            for c in categories
        }
        counted = time.perf_counter() - started
        stages = (
            sorted({*args.merges, num_merges}) if long_run and sample_bytes == max(args.sample_bytes) else args.merges
        )
        for result in solve_mixture_path(histories, stages):
            record["results"].append(
                {
                    "sample_bytes": sample_bytes,
                    "merges": result.merges_used,
                    "log10_mse": log10_mse(truth, result.byte_shares),
                    "predicted": result.byte_shares,
                    "constraints": result.constraints,
                    "converged": result.converged,
                }
            )
        record.setdefault("seconds", {})[sample_bytes] = {
            "count": round(counted, 2),
            "solve": round(time.perf_counter() - started - counted, 2),
        }
    guess = rng.dirichlet(np.ones(len(categories)))
    record["random_guess"] = log10_mse(truth, dict(zip(categories, guess.tolist())))
    record["uniform_guess"] = log10_mse(truth, {c: 1 / len(categories) for c in categories})
    return record


def summarise(records: list[dict], args, command: str, seconds: float) -> str:
    def mean_std(values):
        values = list(values)
        return f"{statistics.mean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0:.2f}"

    lines = [
        "# Data mixture inference: controlled validation",
        "",
        "Mean log10 MSE (± std over mixtures) between the true and the inferred byte shares of each category;",
        "lower is better. Each mixture is a uniform draw from the simplex; a byte-level BPE (HF `tokenizers`,",
        f"GPT-2 pre-tokenizer) is trained on {args.train_bytes / 1e6:g} MB of text in those proportions, and the",
        "mixture is inferred from held-out records of every category (`zoo.analysis.infer_mixture`, lazy LP on",
        "HiGHS). Categories: Debian fortunes in each language and Python stdlib code; records are split",
        "60/40 into training and sample pools by a fixed seed.",
        "",
        "The paper (Hayase, Liu et al. 2024) reports -7.30 for n = 5 natural languages with 1 GB samples and",
        "~30k merges; here samples are 10^4-10^5 times smaller and the tokenizers have few merges.",
        "",
    ]
    for n in sorted({r["n"] for r in records}):
        group = [r for r in records if r["n"] == n]
        lines += [f"## n = {n} categories ({', '.join(CATEGORY_SETS[n])}), {len(group)} mixtures", ""]
        merges = sorted({x["merges"] for r in group for x in r["results"] if x["merges"] in args.merges})
        lines.append("| sample per category | " + " | ".join(f"{t} merges" for t in merges) + " |")
        lines.append("|---|" + "---|" * len(merges))
        for size in args.sample_bytes:
            cells = []
            for t in merges:
                values = [
                    x["log10_mse"]
                    for r in group
                    for x in r["results"]
                    if x["sample_bytes"] == size and x["merges"] == t
                ]
                cells.append(mean_std(values))
            lines.append(f"| {size // 1000} KB | " + " | ".join(cells) + " |")
        lines += [
            "",
            f"Baselines: random guess {mean_std(r['random_guess'] for r in group)}, "
            f"uniform guess {mean_std(r['uniform_guess'] for r in group)}.",
            "",
        ]
        long_values = [
            x["log10_mse"]
            for r in group
            for x in r["results"]
            if x["merges"] == args.long_merges and x["merges"] not in args.merges
        ]
        if long_values:
            short_values = [
                x["log10_mse"]
                for r in group
                if any(y["merges"] == args.long_merges for y in r["results"])
                for x in r["results"]
                if x["sample_bytes"] == max(args.sample_bytes) and x["merges"] == max(args.merges)
            ]
            lines += [
                f"Longer merge lists, on the first {len(long_values)} mixtures only "
                f"({max(args.sample_bytes) // 1000} KB samples): {args.long_merges} merges {mean_std(long_values)} "
                f"vs {max(args.merges)} merges {mean_std(short_values)} on the same mixtures.",
                "",
            ]
        unconverged = sum(not x["converged"] for r in group for x in r["results"])
        if unconverged:
            lines += [f"{unconverged} solves stopped at the round limit before convergence.", ""]
    lines += [
        "Produced by:",
        "",
        "```",
        command,
        "```",
        "",
        f"Wall time: {seconds / 60:.1f} min on 2 shared CPU cores.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mixtures", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 8], choices=sorted(CATEGORY_SETS))
    parser.add_argument("--train-bytes", type=int, default=1_000_000)
    parser.add_argument("--sample-bytes", type=int, nargs="+", default=[30_000, 100_000])
    parser.add_argument("--merges", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--long-merges", type=int, default=1000, help="merges for the long-list subset")
    parser.add_argument("--long-mixtures", type=int, default=3, help="mixtures also solved with --long-merges")
    parser.add_argument("--out", type=Path, default=Path("eval/results/mixture-inference.md"))
    args = parser.parse_args()
    args.sample_bytes = sorted(args.sample_bytes)
    args.merges = sorted(args.merges)
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    started = time.perf_counter()
    records = []
    for n in args.sizes:
        categories = CATEGORY_SETS[n]
        pools = {c: corpora.split_pools(corpora.category_records(c), (0.6, 0.4), seed=0) for c in categories}
        for index in range(args.mixtures):
            record = run_mixture(categories, pools, index, args)
            records.append(record)
            best = [x["log10_mse"] for x in record["results"] if x["sample_bytes"] == max(args.sample_bytes)]
            print(
                f"n={n} mixture {index}: log10 MSE {best[-1]:.2f} (uniform {record['uniform_guess']:.2f}) "
                f"{record['seconds']}",
                flush=True,
            )
    seconds = time.perf_counter() - started
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(records, indent=1) + "\n")
    atomic_write_text(args.out, summarise(records, args, command, seconds))
    print(args.out.read_text())
    return 0 if all(math.isfinite(x["log10_mse"]) for r in records for x in r["results"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
