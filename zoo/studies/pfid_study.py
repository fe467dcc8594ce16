"""The pFID study: does pFID predict generation quality better than rFID? (RobusTok, https://arxiv.org/abs/2503.08354)

    OMP_NUM_THREADS=1 python -m zoo.studies.pfid_study --threads 1

One multi-stage recipe (``recipes/image/pfid-study.yaml``) trains several image tokenizers, each
followed by a ``TokenGenerator`` stage on its cached tokens, all of a kind under one budget. For every
(tokenizer, generator) pair, in recipe order, this driver

1. trains the two stages (``zoo.train.stages.run_plan`` with resume: finished stages are skipped,
   interrupted ones continue from their last checkpoint);
2. runs the study suite (``eval/pfid-study.yaml``: rFID, pFID, gFID, ... on held-out images) on the
   generator, whose ``encode`` / ``decode`` are its tokenizer's, and keeps the standard suite outputs
   in ``OUT/tokenizers/<tokenizer>/`` (reused on a re-run while the weights and the suite are unchanged);
3. rewrites ``OUT/study.json``, ``OUT/results.md`` and ``OUT/report.html`` (table, Spearman and Pearson
   correlations of rFID and pFID with gFID, scatter plot), so partial results are there as it goes.

``--tokenizers KEY=VALUE`` / ``--generators KEY=VALUE`` change a setting of every tokenizer / generator
stage (the fixed budget: ``steps=3000``); plain ``KEY=VALUE`` arguments are recipe overrides as in
``zoo train``; ``--suite-set KEY=VALUE`` changes the suite (``metrics.pfid.alphas=[0.2]``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from zoo.errors import ZooError

DEFAULT_RECIPE = "recipes/image/pfid-study.yaml"
DEFAULT_SUITE = "eval/pfid-study.yaml"
GENERATOR_TARGET = "zoo.generators.token_generator:TokenGenerator"
TITLE = "pFID study: does a tokenizer metric predict the gFID of a generator trained on its tokens?"


@dataclass
class Pair:
    """A generator stage and the stage that trained its tokenizer (None for a registry tokenizer)."""

    label: str
    tokenizer: object | None  # zoo.train.schema.Recipe
    generator: object


# -- the recipe: which stages pair up -----------------------------------------------------------------


def _generator_tokenizer(recipe) -> str | None:
    """The ``tokenizer`` a stage's model is built on, when the stage trains a token generator."""
    from zoo.generators.token_generator import TokenGenerator
    from zoo.pretrained import Pretrained
    from zoo.targets import resolve_class

    spec = recipe.model
    if spec.target is None:
        return None
    cls = resolve_class(spec.target, base=Pretrained, where="recipe model")
    if not issubclass(cls, TokenGenerator):
        return None
    return str({**spec.config, **spec.overrides}.get("tokenizer", ""))


def _builds_tokenizer(recipe) -> bool:
    """Whether a stage trains a tokenizer (registry-named models are tokenizers)."""
    from zoo.pretrained import Pretrained
    from zoo.targets import resolve_class
    from zoo.tokenizer import Tokenizer

    if recipe.model.target is None:
        return True
    return issubclass(resolve_class(recipe.model.target, base=Pretrained, where="recipe model"), Tokenizer)


def _paired(pairs: list[Pair]) -> set[int]:
    """Identities of the stages the pairs train."""
    return {id(p.generator) for p in pairs} | {id(p.tokenizer) for p in pairs if p.tokenizer is not None}


def support_stages(plan, pairs: list[Pair] | None = None) -> list:
    """Stages that train neither a tokenizer nor a generator (the feature extractor the suite's FIDs use, named
    there as ``zoo:stage:NAME``); they are trained before the pairs. ``pairs``: all of ``pair_stages(plan)``."""
    used = _paired(pair_stages(plan) if pairs is None else pairs)
    return [r for r in plan.stages if id(r) not in used]


def pair_stages(plan) -> list[Pair]:
    """Every generator stage with its tokenizer's stage; labels are the tokenizer stages' names."""
    from zoo.train.trainer import FINAL

    finals = {str((plan.stage_dir(r) / FINAL).resolve()): r for r in plan.stages}
    pairs: list[Pair] = []
    for recipe in plan.stages:
        tokenizer = _generator_tokenizer(recipe)
        if tokenizer is None:
            continue
        if not tokenizer:
            raise ZooError(f"{plan.source}: stage {recipe.name!r} trains a TokenGenerator without a 'tokenizer'")
        stage = finals.get(str(Path(tokenizer).resolve())) if ("/" in tokenizer or Path(tokenizer).exists()) else None
        pairs.append(Pair(stage.name if stage is not None else Path(tokenizer).name, stage, recipe))
    if not pairs:
        raise ZooError(f"{plan.source}: no stage trains a TokenGenerator ({GENERATOR_TARGET}); nothing to study")
    used = _paired(pairs)
    unused = [r.name for r in plan.stages if id(r) not in used and _builds_tokenizer(r)]
    if unused:
        raise ZooError(f"{plan.source}: stage(s) {unused} are neither a generator nor the tokenizer of one")
    labels = [p.label for p in pairs]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ZooError(f"{plan.source}: several generators study the same tokenizer {repeated}; one per tokenizer")
    return pairs


def load_study_plan(recipe: str, overrides=(), tokenizer_settings=(), generator_settings=()):
    """The recipe with its overrides, then each ``--tokenizers`` / ``--generators`` setting applied to every stage
    of that kind (``stages.<name>.KEY=VALUE``)."""
    from zoo.train import load_recipe

    plan = load_recipe(recipe, list(overrides))
    if not tokenizer_settings and not generator_settings:
        return plan
    extra = []
    for pair in pair_stages(plan):
        if pair.tokenizer is not None:
            extra += [f"stages.{pair.tokenizer.name}.{setting}" for setting in tokenizer_settings]
        elif tokenizer_settings:
            raise ZooError(f"--tokenizers: generator {pair.generator.name!r} uses a tokenizer that is not a stage")
        extra += [f"stages.{pair.generator.name}.{setting}" for setting in generator_settings]
    return load_recipe(recipe, [*overrides, *extra])


def load_study_suite(suite: str, settings=()):
    """The suite with ``KEY=VALUE`` settings applied (metrics addressed by name: ``metrics.gfid.temperature=0.9``)."""
    from zoo.evaluate import load_suite, parse_suite
    from zoo.train.recipe import apply_override

    spec = load_suite(suite)
    if not settings:
        return spec
    raw = spec.as_dict()
    path = raw.pop("path")
    raw["metrics"] = [dict(m) for m in raw["metrics"]]
    for setting in settings:
        apply_override(raw, setting)
    changed = parse_suite(raw, where=f"{path or suite} (with {' '.join(settings)})")
    changed.path = path
    return changed


# -- one pair: train, evaluate ------------------------------------------------------------------------------


def resolve_stage_references(spec, plan):
    """The suite with every ``stage:NAME`` inside a metric option (``extractor: zoo:stage:fid-features``)
    replaced by that stage's exported folder, and the names of the stages it references."""
    import re

    from zoo.train.trainer import FINAL

    names = {stage.name: stage for stage in plan.stages}
    referenced: list[str] = []

    def folder(match) -> str:
        name = match.group(1)
        if name not in names:
            raise ZooError(f"suite {spec.path or spec.name!r}: 'stage:{name}' names no stage of {plan.source}; "
                           f"its stages are {sorted(names)}")
        referenced.append(name)
        return str(plan.stage_dir(names[name]) / FINAL)

    metrics = [{key: re.sub(r"stage:([\w.-]+)", folder, value) if isinstance(value, str) else value
                for key, value in metric.items()} for metric in spec.metrics]
    return replace(spec, metrics=metrics), referenced


def train_pair(plan, pair: Pair) -> Path:
    """Train the pair's stages (resuming; finished stages are kept only if trained with the same settings)."""
    from zoo.train.trainer import FINAL

    train_stages(plan, [s for s in (pair.tokenizer, pair.generator) if s is not None])
    return plan.stage_dir(pair.generator) / FINAL


def train_stages(plan, stages: list) -> None:
    """Train ``stages`` of ``plan`` in order, resuming; a finished stage is reused only if trained with the same
    settings."""
    from zoo.pretrained import read_config
    from zoo.train.recipe import Plan
    from zoo.train.schema import recipe_to_dict
    from zoo.train.stages import finished, run_plan
    from zoo.train.trainer import FINAL, changed_settings

    for stage in stages:
        stage_dir = plan.stage_dir(stage)
        if finished(stage_dir):
            trained = read_config(stage_dir / FINAL).get("metadata", {}).get("recipe", {})
            changed = changed_settings(trained, recipe_to_dict(stage))
            if changed:
                raise ZooError(f"{stage_dir / FINAL} was trained with other {', '.join(changed)} than the recipe now "
                               f"asks; choose another output_dir=... or remove that stage folder")
    run_plan(Plan(plan.source, plan.output_dir, stages, plan.resolved), resume=True)


def evaluation_key(generator_folder: Path, suite, depends_on=()) -> str:
    """What a stored evaluation depends on: the generator's weights (its tokenizer's among them) and the suite."""
    from zoo.hub import sha256_of

    record = {k: v for k, v in suite.as_dict().items() if k != "path"}
    record["weights"] = sha256_of(generator_folder / "model.safetensors")
    # exported stages the suite reads (the FIDs' feature classifier) decide the results too
    record["depends_on"] = {str(folder): sha256_of(Path(folder) / "model.safetensors") for folder in depends_on}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def evaluate_pair(label: str, generator_folder: Path, suite, out_dir: Path, progress: bool = True,
                  depends_on=()) -> dict:
    """The suite on one generator, written to ``out_dir`` as ``zoo eval`` writes it; reused when up to date."""
    from zoo.evaluate import evaluate_suite
    from zoo.evaluate.report import write_report

    key = evaluation_key(generator_folder, suite, depends_on)
    stored = out_dir / "results.json"
    if stored.is_file():
        results = json.loads(stored.read_text(encoding="utf-8"))
        if results.get("study_key") == key and label in results.get("results", {}):
            print(f"pfid-study: {label}: evaluation up to date ({stored})", file=sys.stderr)
            return results
    print(f"pfid-study: {label}: evaluating {generator_folder}", file=sys.stderr)
    run = evaluate_suite(suite, [str(generator_folder)], progress=progress)
    relabel(run, label)
    run.results["study_key"] = key
    write_report(out_dir, run.results, figures=run.figures, examples=run.examples)
    return json.loads(stored.read_text(encoding="utf-8"))  # the JSON form, as a re-run reads it


def relabel(run, label: str) -> None:
    """Name the single candidate of a suite run ``label`` (a folder is labelled ``final`` by default)."""
    results = run.results
    (old,) = list(results["tokenizers"])
    for table in (results["tokenizers"], results["results"], results["notes"], run.figures,
                  run.examples.get("tokenizers", {})):
        if old in table:
            table[label] = table.pop(old)


# -- the study ---------------------------------------------------------------------------------------------


def tokenizer_description(generator_results: dict, label: str) -> dict:
    """The studied tokenizer's quantiser, codebook size and perturbation, from its folder or registry entry."""
    from zoo.pretrained import read_config
    from zoo.studies.study_report import describe_tokenizer

    record = generator_results["tokenizers"][label]
    source = str(record["config"].get("tokenizer", ""))
    if Path(source).is_dir():
        config = read_config(source)["config"]
    else:
        from zoo import registry

        config = registry.get(source).config
    return describe_tokenizer(config, record["vocab_size"])


def merge_results(per_label: dict[str, dict]) -> dict | None:
    """One suite-results dict holding every finished tokenizer (for the full leaderboard)."""
    merged = None
    for label, results in per_label.items():
        if merged is None:
            merged = {**results, "results": {}, "tokenizers": {}, "notes": {}, "metrics": {}}
        merged["metrics"].update(results["metrics"])
        merged["results"][label] = results["results"][label]
        merged["tokenizers"][label] = results["tokenizers"][label]
        if label in results.get("notes", {}):
            merged["notes"][label] = results["notes"][label]
    return merged


def study_summary(recipe: str, plan, pairs: list[Pair], suite, per_label: dict[str, dict], command: str,
                  note: str | None) -> dict:
    import datetime

    from zoo.provenance import git_state
    from zoo.studies.study_report import correlations, study_row

    rows = [study_row(p.label, per_label[p.label], tokenizer_description(per_label[p.label], p.label))
            for p in pairs if p.label in per_label]
    git = git_state()
    first = next(iter(per_label.values()), None)
    return {
        "title": TITLE,
        "note": note,
        "command": command,
        "recipe": str(recipe),
        "output_dir": str(plan.output_dir),
        "suite": {k: v for k, v in suite.as_dict().items() if k != "path"},
        "items": first["data"]["items"] if first else None,
        "git": (git["hash"] or "unknown")[:12] + (" (dirty)" if git.get("dirty") else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rows": rows,
        "correlations": correlations(rows),
        "pending": [p.label for p in pairs if p.label not in per_label],
        "stages": {p.label: {"tokenizer": p.tokenizer.name if p.tokenizer else None, "generator": p.generator.name}
                   for p in pairs},
    }


def run_study(recipe: str = DEFAULT_RECIPE, suite: str = DEFAULT_SUITE, out_dir: str | Path | None = None,
              limit: int | None = None, overrides=(), tokenizer_settings=(), generator_settings=(),
              suite_settings=(), note: str | None = None, command: str | None = None, progress: bool = True,
              only=()) -> dict:
    """Train and evaluate every pair (or those labelled in ``only``), writing the study report after each one;
    returns the study summary."""
    from zoo.studies.study_report import write_study_report
    from zoo.train.trainer import FINAL

    plan = load_study_plan(recipe, overrides, tokenizer_settings, generator_settings)
    pairs = pair_stages(plan)
    support = support_stages(plan, pairs)
    if only:
        unknown = sorted(set(only) - {p.label for p in pairs})
        if unknown:
            raise ZooError(f"--only: no tokenizer {unknown} in {plan.source}; it studies {[p.label for p in pairs]}")
        pairs = [p for p in pairs if p.label in set(only)]
    spec, referenced = resolve_stage_references(load_study_suite(suite, suite_settings), plan)
    if limit is not None:
        spec = replace(spec, limit=limit)
    unreferenced = [stage.name for stage in support if stage.name not in referenced]
    if unreferenced:
        raise ZooError(f"{plan.source}: stage(s) {unreferenced} train neither a tokenizer nor a generator, and the "
                       f"suite does not name them (as zoo:stage:NAME); nothing would use them")
    if support:
        print(f"pfid-study: training {[stage.name for stage in support]} (used by the suite)", file=sys.stderr)
        train_stages(plan, support)
    out = Path(out_dir) if out_dir is not None else plan.output_dir / "study"
    command = command or f"run_study({recipe!r}, ...)"
    per_label: dict[str, dict] = {}
    summary: dict = {}
    for index, pair in enumerate(pairs, 1):
        print(f"pfid-study: [{index}/{len(pairs)}] {pair.label}: training", file=sys.stderr)
        folder = train_pair(plan, pair)
        per_label[pair.label] = evaluate_pair(pair.label, folder, spec, out / "tokenizers" / pair.label, progress,
                                              depends_on=[plan.stage_dir(stage) / FINAL for stage in support])
        summary = study_summary(recipe, plan, pairs, spec, per_label, command, note)
        write_study_report(out, summary, merge_results(per_label))
    print(f"pfid-study: wrote {out / 'results.md'}, {out / 'report.html'}, {out / 'study.json'}", file=sys.stderr)
    return summary


# -- command line ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m zoo.studies.pfid_study", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides, as for zoo train")
    parser.add_argument("--recipe", default=DEFAULT_RECIPE, help=f"multi-stage recipe (default {DEFAULT_RECIPE})")
    parser.add_argument("--suite", default=DEFAULT_SUITE, help=f"evaluation suite (default {DEFAULT_SUITE})")
    parser.add_argument("--out", help="report folder (default: the recipe's output_dir/study)")
    parser.add_argument("--limit", type=int, help="held-out images to evaluate (overrides the suite's limit)")
    parser.add_argument("--tokenizers", nargs="+", default=[], metavar="KEY=VALUE",
                        help="a setting for every tokenizer stage, e.g. steps=3000")
    parser.add_argument("--generators", nargs="+", default=[], metavar="KEY=VALUE",
                        help="a setting for every generator stage, e.g. steps=4000 data.train.limit=10000")
    parser.add_argument("--suite-set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="suite settings, e.g. metrics.pfid.alphas=[0.2]")
    parser.add_argument("--only", nargs="+", default=[], metavar="TOKENIZER",
                        help="study only these tokenizers (names of the recipe's tokenizer stages)")
    parser.add_argument("--note", help="a line shown at the top of the report (e.g. 'smoke run')")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    command = "python -m zoo.studies.pfid_study " + shlex.join(argv)
    try:
        summary = run_study(args.recipe, args.suite, args.out, args.limit, args.overrides, args.tokenizers,
                            args.generators, args.suite_set, args.note, command.strip(), not args.no_progress,
                            args.only)
    except ZooError as err:
        print(f"pfid-study: error: {err}", file=sys.stderr)
        return 2
    from zoo.studies.study_report import markdown

    print(markdown(summary), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
