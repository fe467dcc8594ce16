"""``zoo eval SUITE -t NAME... [--limit N] [--out DIR]``: run a suite and print the leaderboard.

Under ``accelerate launch -m zoo eval ...`` the items are sharded over the processes and metric
state is summed; the main process writes the outputs.
"""

from __future__ import annotations

import argparse
import os


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", help="a suite YAML file, or a shipped suite's name (e.g. image-recon)")
    parser.add_argument(
        "-t",
        "--tokenizers",
        nargs="+",
        required=True,
        metavar="NAME",
        help="registry names (pretrained when the entry ships weights) or checkpoint folders",
    )
    parser.add_argument("--limit", type=int, help="evaluate at most N items (overrides the suite)")
    parser.add_argument("--batch-size", type=int, help="items per batch (overrides the suite)")
    parser.add_argument("--out", help="folder for results.json, results.md and report.html (default: runs/eval/SUITE)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")


def _accelerator():
    """An Accelerator when launched with several processes (``accelerate launch``), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import Accelerator

    return Accelerator()


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from zoo.evaluate import load_suite, run_suite
    from zoo.evaluate.report import json_safe, markdown_table

    suite = load_suite(args.suite)
    out = Path(args.out) if args.out else Path("runs") / "eval" / suite.name
    accelerator = _accelerator()
    results = run_suite(
        suite,
        args.tokenizers,
        limit=args.limit,
        out_dir=out,
        accelerator=accelerator,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    if accelerator is not None and not accelerator.is_main_process:
        return 0
    if args.json:
        print(json.dumps(json_safe(results), ensure_ascii=False))
        return 0
    print(markdown_table(results), end="")
    for label, notes in results.get("notes", {}).items():
        for note in notes:
            print(f"  {label}: {note}")
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'report.html'}")
    return 0
