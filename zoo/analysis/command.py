"""``zoo analyze``: analyses of tokenizers. Subcommands:

    zoo analyze mixture TOKENIZER --category en=PATH --category code=PATH [--merges N] [--json]

prints the inferred share of training bytes per category (data mixture inference, ``zoo.analysis.mixture``).
"""

from __future__ import annotations

import argparse
import json

from zoo.errors import ZooError


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="analysis", metavar="ANALYSIS")
    sub.required = True
    p = sub.add_parser(
        "mixture",
        help="infer the training-data mixture of a BPE tokenizer from its merge order",
        description="Infer which share of a BPE tokenizer's training bytes came from each category "
        "(Hayase, Liu et al. 2024), from sample text of every category.",
    )
    p.add_argument("tokenizer", help="tokenizer.json, a folder holding one, a zoo BPE name, or a .tiktoken file")
    p.add_argument(
        "--category",
        "-c",
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="a category and its sample text (a file or a folder of files); give two or more",
    )
    p.add_argument(
        "--merges",
        type=int,
        default=1000,
        metavar="N",
        help="use the first N merges (default 1000, as the reference CLI; more merges cost more LP time)",
    )
    p.add_argument("--pattern", default=None, help="tiktoken files only: encoding name (cl100k_base...) or split regex")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(analysis_func=run_mixture)


def _parse_categories(items: list[str]) -> dict[str, str]:
    categories: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ZooError(f"--category {item!r}: expected NAME=PATH, e.g. --category en=samples/en.txt")
        if name in categories:
            raise ZooError(f"--category {name!r} is given twice")
        categories[name] = path
    if len(categories) < 2:
        raise ZooError(f"give at least two --category NAME=PATH options, got {len(categories)}")
    return categories


def run_mixture(args: argparse.Namespace) -> int:
    from zoo.analysis.mixture import infer_mixture

    categories = _parse_categories(args.category)
    if args.merges is not None and args.merges < 1:
        raise ZooError(f"--merges must be >= 1, got {args.merges}")
    result = infer_mixture(args.tokenizer, categories, num_merges=args.merges, pattern=args.pattern)
    if args.json:
        record = {
            "byte_shares": result.byte_shares,
            "pair_shares": result.pair_shares,
            "merges_used": result.merges_used,
            "missing_merges": result.missing_merges,
            "constraints": result.constraints,
            "rounds": result.rounds,
            "converged": result.converged,
        }
        print(json.dumps(record, ensure_ascii=False))
        return 0
    print(result.table())
    note = "" if result.converged else " (did not converge: raise max_rounds)"
    print(f"# {result.merges_used} merges, {result.constraints} constraints, {result.rounds} LP rounds{note}")
    return 0


def run(args: argparse.Namespace) -> int:
    return args.analysis_func(args)
