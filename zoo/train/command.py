"""``zoo train RECIPE [KEY=VALUE ...] [--resume] [--overwrite]``; ``accelerate launch -m zoo train ...`` too."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe YAML (e.g. recipes/test/toy-image.yaml)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="recipe overrides, values read as YAML: optimizer.lr=3e-4 steps=100",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest complete checkpoint; finished stages are skipped",
    )
    parser.add_argument("--overwrite", action="store_true", help="start again in an output folder holding a run")
    parser.add_argument(
        "--print-recipe",
        action="store_true",
        help="print the resolved recipe (includes and overrides applied) and exit",
    )

    # argparse fills positionals once, before the first flag, so `zoo train R --resume steps=10` would leave
    # `steps=10` unrecognised. Overrides may come anywhere: the leftovers that look like KEY=VALUE join them.
    parse_known_args = parser.parse_known_args

    def parse_known_args_with_late_overrides(args=None, namespace=None):
        namespace, extras = parse_known_args(args, namespace)
        late = [e for e in extras if "=" in e and not e.startswith("-")]
        namespace.overrides = [*namespace.overrides, *late]
        return namespace, [e for e in extras if e not in late]

    parser.parse_known_args = parse_known_args_with_late_overrides


def run(args: argparse.Namespace) -> int:
    from zoo.train import load_recipe

    plan = load_recipe(args.recipe, args.overrides)
    if args.print_recipe:
        import yaml

        print(yaml.safe_dump(plan.resolved, sort_keys=False), end="")
        return 0
    from zoo.train.stages import run_plan

    final = run_plan(plan, resume=args.resume, overwrite=args.overwrite)
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(final)
    return 0
