"""ADT-Auto transfer: questions built from one tokenizer's vocabulary (its traps), measured on every tokenizer.

    python benchmarks/adt_transfer.py --sources bpe-32k unigram-32k lib cl100k \\
        --targets byte bpe-32k unigram-32k lib cl100k o200k weights/adt-gpt-bpe32k --items 100

For each source, ``eval/text-adt.yaml`` runs with its data replaced by ``adt:...,tokenizer=SOURCE`` (ADT-Auto: pairs
whose junction a token of SOURCE's vocabulary covers, kept when SOURCE emits it). Prints one Markdown table of
``traps`` (the share of the questions each target cuts across the junction; 1 on the diagonal by construction)
and, for targets that are language models, their accuracy on the joined vs apart questions they are trapped by.
"""

from __future__ import annotations

import argparse
import math

from zoo.evaluate.runner import run_suite
from zoo.evaluate.suite import load_suite


def _fmt(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", nargs="+", required=True, help="tokenizers whose vocabularies build the items")
    parser.add_argument("--targets", nargs="+", required=True, help="tokenizers (and TextLM folders) measured")
    parser.add_argument("--lang", default="en+de+zh")
    parser.add_argument("--items", type=int, default=100, help="questions per language and source (at most)")
    args = parser.parse_args()
    suite = load_suite("text-adt")
    rows, accuracy = [], []
    for source in args.sources:
        suite.data = f"adt:lang={args.lang},items={args.items},tokenizer={source}"
        results = run_suite(suite, args.targets, progress=False)
        values = results["results"]
        rows.append([f"`{source}`", str(results["data"]["items"])]
                    + [_fmt(values.get(t, {}).get("adt-split-errors", {}).get("traps")) for t in values])
        for target, metrics in values.items():
            if "adt-accuracy" in metrics:
                a = metrics["adt-accuracy"]
                accuracy.append(f"| `{source}` | `{target}` | {int(a['trap_items'])} | {_fmt(a['adversarial'])} | "
                                f"{_fmt(a['clean'])} | {_fmt(a['drop'])} | {_fmt(a['chance'])} |")
        labels = list(values)
    print("| items from | questions | " + " | ".join(f"`{t}`" for t in labels) + " |")
    print("|---|---:|" + "---:|" * len(labels))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if accuracy:
        print("\n| items from | LM | trapped questions | adversarial | clean | drop | chance |")
        print("|---|---|---:|---:|---:|---:|---:|")
        print("\n".join(accuracy))


if __name__ == "__main__":
    main()
