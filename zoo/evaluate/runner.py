"""The run: every batch encoded once per tokenizer, fed to every metric, state summed across processes.

``run_suite(suite, tokenizers)`` returns the results dict; with ``out_dir`` it also writes
``results.json``, ``results.md`` and ``report.html`` (``zoo.evaluate.report``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from zoo._version import __version__
from zoo.errors import ZooError
from zoo.evaluate.candidates import Candidate, resolve_candidate, unique_labels
from zoo.evaluate.suite import Suite, load_suite, positive_int
from zoo.provenance import run_record

# -- the run ---------------------------------------------------------------------------------------------


def data_modality(item: dict) -> str:
    for key in ("image", "audio", "text"):
        if key in item:
            return key
    raise ZooError(f"suite data yields items with keys {sorted(item)}; expected 'image', 'audio' or 'text'")


def _to_device(batch: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _build_metrics(suite: Suite, candidate: Candidate, notes: list[str]) -> dict:
    from zoo.metrics import build_metric

    metrics = {}
    tokenizer = candidate.tokenizer
    for spec in suite.metrics:
        options = {k: v for k, v in spec.items() if k != "name"}
        metric = build_metric(spec["name"], **options)
        if tokenizer.modality not in metric.modalities:
            notes.append(
                f"{spec['name']}: skipped, it applies to {'/'.join(metric.modalities)}, not {tokenizer.modality}"
            )
        elif metric.needs_decoder and not getattr(tokenizer, "has_decoder", True):
            notes.append(f"{spec['name']}: skipped, {type(tokenizer).__name__} has no decoder")
        else:
            metrics[spec["name"]] = metric
    return metrics


def _update_all(metrics: dict, ctx, notes: list[str]) -> None:
    """Feed one batch to every metric; a metric that raises ``ZooError`` does not apply: note it, drop it."""
    for metric_name in list(metrics):
        try:
            metrics[metric_name].update(ctx)
        except ZooError as err:
            notes.append(f"{metric_name}: skipped, {err}")
            del metrics[metric_name]


def _compute_all(metrics: dict, accelerator, notes: list[str], with_figures: bool) -> tuple[dict, dict[str, bytes]]:
    """Sum state over processes, compute every value, and render figures (PNG bytes) on the main process."""
    from zoo.evaluate.report import figure_to_png

    values: dict[str, Any] = {}
    pictures: dict[str, bytes] = {}
    for metric_name, metric in metrics.items():
        metric.sync(accelerator)
        try:
            values[metric_name] = metric.compute()
        except ZooError as err:
            notes.append(f"{metric_name}: no value, {err}")
            continue
        notes.extend(f"{metric_name}: {note}" for note in getattr(metric, "notes", []))
        if with_figures:
            for title, figure in metric.figures().items():
                pictures[f"{metric_name}: {title}"] = figure_to_png(figure)
    return values, pictures


def run_suite(
    suite: str | Path | dict,
    tokenizers: list,
    limit: int | None = None,
    out_dir: str | Path | None = None,
    accelerator=None,
    batch_size: int | None = None,
    progress: bool = True,
) -> dict:
    """Run a suite over tokenizers (registry names, checkpoint folders or objects); see the module docstring.

    Args:
        limit: items to evaluate, overriding the suite's ``limit``.
        out_dir: when given, ``results.json``, ``results.md`` and ``report.html`` are written there
            (by the main process only).
        accelerator: an ``accelerate.Accelerator``; items are sharded over its processes without
            padding and metric state is summed, so results equal a single-process run.
        batch_size: overrides the suite's ``batch_size``.
    """
    from zoo.evaluate.report import write_report

    run = evaluate_suite(suite, tokenizers, limit, accelerator, batch_size, progress)
    if out_dir is not None and run.is_main:
        write_report(out_dir, run.results, figures=run.figures, examples=run.examples)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return run.results


@dataclass
class SuiteRun:
    """A finished run: the JSON results plus what only the report shows (PNG figures, examples)."""

    results: dict
    figures: dict[str, dict[str, bytes]]
    examples: dict
    is_main: bool = True


def evaluate_suite(
    suite: str | Path | dict,
    tokenizers: list,
    limit: int | None = None,
    accelerator=None,
    batch_size: int | None = None,
    progress: bool = True,
) -> SuiteRun:
    """``run_suite`` without writing files: results, figures and examples for the caller to combine."""
    from torch.utils.data import DataLoader, Subset
    from tqdm.auto import tqdm

    from zoo.data import collate, load_dataset, parse_spec
    from zoo.evaluate.report import collect_examples
    from zoo.metrics.base import EvalContext

    started = time.perf_counter()
    spec = replace(load_suite(suite))  # a copy: overrides never change the caller's Suite
    if limit is not None:
        positive_int("run_suite", "limit", limit)
        spec.limit = limit
    if batch_size is not None:
        positive_int("run_suite", "batch_size", batch_size)
        spec.batch_size = batch_size
    if not tokenizers:
        raise ZooError("run_suite: name at least one tokenizer")
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator is not None else (0, 1)
    is_main = rank == 0
    device = accelerator.device if accelerator is not None else torch.device("cpu")

    dataset = load_dataset(spec.data)
    if spec.limit is not None and len(dataset) > spec.limit:
        dataset = Subset(dataset, range(spec.limit))
    if len(dataset) < world:
        raise ZooError(
            f"suite {spec.name!r}: data {spec.data!r} holds {len(dataset)} items, fewer than {world} processes"
        )
    modality = data_modality(dataset[0])
    name, options = parse_spec(spec.data)
    data_key = json.dumps(
        {"name": name, "options": options, "items": len(dataset), "zoo_version": __version__},
        sort_keys=True,
        default=str,
    )
    shard = Subset(dataset, range(rank, len(dataset), world))  # disjoint, unpadded: sums equal a 1-process run

    candidates = [resolve_candidate(t) for t in tokenizers]
    unique_labels(candidates)
    results: dict[str, Any] = {
        "suite": spec.as_dict(),
        "data": {"spec": spec.data, "modality": modality, "items": len(dataset)},
        "run": run_record(world, device),
        "metrics": {},
        "tokenizers": {c.label: c.record for c in candidates},
        "results": {},
        "notes": {},
    }
    figures: dict[str, dict[str, bytes]] = {}
    examples = {"modality": modality, "items": [], "tokenizers": {}}
    if is_main and spec.examples:
        examples["items"] = [dataset[i] for i in range(min(spec.examples, len(dataset)))]

    for candidate in candidates:
        notes: list[str] = results["notes"].setdefault(candidate.label, [])
        tokenizer = candidate.tokenizer
        if candidate.record.get("pretrained") is False:
            notes.append("untrained: the entry ships no weights, so this is its seeded initialisation")
        if tokenizer.modality != modality:
            notes.append(f"skipped: a {tokenizer.modality} tokenizer cannot run on {modality} data")
            continue
        if isinstance(tokenizer, torch.nn.Module):
            tokenizer.to(device)
        metrics = _build_metrics(spec, candidate, notes)
        for metric_name, metric in metrics.items():
            metric.setup(tokenizer, data_key)
            results["metrics"].setdefault(metric_name, describe_metric(metric))
        loader = DataLoader(shard, batch_size=spec.batch_size, shuffle=False, collate_fn=collate)
        bar = tqdm(loader, desc=f"{spec.name} | {candidate.label}", unit="batch", disable=not (progress and is_main))
        for index, batch in enumerate(bar):
            generator = torch.Generator().manual_seed(spec.seed * 1_000_003 + index * world + rank)
            _update_all(metrics, EvalContext(tokenizer, _to_device(batch, device), generator=generator), notes)
        values, pictures = _compute_all(metrics, accelerator, notes, with_figures=is_main)
        results["results"][candidate.label] = values
        if pictures:
            figures[candidate.label] = pictures
        if is_main and examples["items"]:
            examples["tokenizers"][candidate.label] = collect_examples(tokenizer, examples["items"], modality, device)
        if not notes:
            results["notes"].pop(candidate.label)
    results["run"]["seconds"] = round(time.perf_counter() - started, 3)
    return SuiteRun(results, figures, examples, is_main)


def describe_metric(metric) -> dict:
    doc = (type(metric).__doc__ or "").strip().splitlines()
    described = {
        "higher_is_better": metric.higher_is_better,
        "directions": dict(metric.directions),
        "description": doc[0].replace("``", "") if doc else "",
        "class": f"{type(metric).__module__}:{type(metric).__qualname__}",
    }
    extractor = getattr(metric, "extractor", None)
    if extractor is not None and isinstance(getattr(extractor, "policy", None), dict):
        described["extractor"] = dict(extractor.policy)  # FIDs are only comparable within one feature space
    return described
