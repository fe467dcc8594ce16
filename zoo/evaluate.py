"""Evaluation suites: YAML files naming data and metrics, run over any number of tokenizers.

A suite (``eval/*.yaml``)::

    name: image-recon
    description: reconstruction quality on held-out photo crops
    data: photos:split=test,size=64     # a dataset spec (zoo.data), string or mapping
    limit: 256                          # items to evaluate (``--limit`` overrides); omit for all
    batch_size: 32
    seed: 0                             # seeds the per-batch generator metrics may sample from
    examples: 8                         # items shown in the report (reconstruction grids, token splits)
    metrics:                            # names from zoo.metrics.METRICS, bare or with options
      - psnr
      - ssim
      - {name: rfid, extractor: inception}

``run_suite(suite, tokenizers)`` encodes each batch once per tokenizer (``EvalContext``), feeds every
metric, sums metric state across processes when an accelerator is given, and returns the results
dict; with ``out_dir`` it also writes ``results.json``, ``results.md`` and ``report.html``.
"""

from __future__ import annotations

import difflib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from zoo import __version__
from zoo.errors import ZooError
from zoo.provenance import run_record

SUITE_KEYS = ("name", "description", "data", "limit", "batch_size", "seed", "examples", "metrics")


@dataclass
class Suite:
    name: str
    data: str | dict
    metrics: list[dict]  # [{"name": ..., **options}]
    description: str = ""
    limit: int | None = None
    batch_size: int = 16
    seed: int = 0
    examples: int = 8
    path: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _positive_int(where: str, key: str, value: Any, allow_none: bool = False, allow_zero: bool = False) -> None:
    if value is None and allow_none:
        return
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ZooError(f"{where}: key {key!r} must be an integer >= {low}, got {value!r}")


def parse_suite(raw: Any, where: str = "suite") -> Suite:
    """Validate a suite mapping; errors name the suite, the key and what was expected."""
    if not isinstance(raw, dict):
        raise ZooError(f"{where}: expected a mapping of suite keys ({', '.join(SUITE_KEYS)}), got {type(raw).__name__}")
    for key in raw:
        if key not in SUITE_KEYS:
            close = difflib.get_close_matches(str(key), SUITE_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(SUITE_KEYS)})"
            raise ZooError(f"{where}: unknown key {key!r}{hint}")
    if "data" not in raw or not isinstance(raw["data"], (str, dict)) or not raw["data"]:
        raise ZooError(
            f"{where}: key 'data' must be a dataset spec (e.g. 'photos:split=test'), got {raw.get('data')!r}"
        )
    metrics = raw.get("metrics")
    if not isinstance(metrics, list) or not metrics:
        raise ZooError(f"{where}: key 'metrics' must be a non-empty list of metric names or mappings")
    parsed = []
    for item in metrics:
        entry = {"name": item} if isinstance(item, str) else dict(item) if isinstance(item, dict) else None
        if entry is None or not isinstance(entry.get("name"), str):
            raise ZooError(f"{where}: each metric is a name or a mapping with a 'name', got {item!r}")
        parsed.append(entry)
    names = [m["name"] for m in parsed]
    for name in names:
        if names.count(name) > 1:
            raise ZooError(f"{where}: metric {name!r} is listed twice")
    _positive_int(where, "limit", raw.get("limit"), allow_none=True)
    _positive_int(where, "batch_size", raw.get("batch_size", 16))
    _positive_int(where, "examples", raw.get("examples", 8), allow_zero=True)
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ZooError(f"{where}: key 'seed' must be an integer, got {seed!r}")
    return Suite(
        name=str(raw.get("name") or Path(where).stem),
        data=raw["data"],
        metrics=parsed,
        description=str(raw.get("description") or ""),
        limit=raw.get("limit"),
        batch_size=raw.get("batch_size", 16),
        seed=seed,
        examples=raw.get("examples", 8),
    )


def load_suite(suite: str | Path | dict | Suite) -> Suite:
    """A suite from a mapping, a YAML path, or a shipped suite's name (``image-recon``: eval/image-recon.yaml)."""
    from zoo.resources import resolve_resource

    if isinstance(suite, Suite):
        return suite
    if isinstance(suite, dict):
        return parse_suite(suite)
    text = str(suite)
    candidates = [Path(text).expanduser(), resolve_resource(text), resolve_resource(f"eval/{text}.yaml")]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        from zoo.resources import data_root

        shipped = sorted(p.stem for p in (data_root() / "eval").glob("*.yaml"))
        raise ZooError(f"suite {text!r}: no such file; shipped suites: {', '.join(shipped) or 'none'}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ZooError(f"{path}: not valid YAML ({err})") from None
    parsed = parse_suite(raw, where=str(path))
    parsed.path = str(path.resolve())
    return parsed


# -- tokenizers ----------------------------------------------------------------------------------------------


@dataclass
class Candidate:
    label: str
    tokenizer: Any
    record: dict = field(default_factory=dict)


def _weights_sha256(tokenizer, folder: Path | None = None) -> str | None:
    """sha256 of a folder's weights file; for an in-memory network, of its state (names, dtypes, shapes, bytes)."""
    import hashlib

    from zoo.hub import sha256_of

    if folder is not None:
        weights = folder / type(tokenizer).weights_name
        return sha256_of(weights) if weights.is_file() else None
    if not isinstance(tokenizer, torch.nn.Module):
        return None
    state = tokenizer.state_dict()
    if not state:
        return None
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def resolve_tokenizer(item) -> Candidate:
    """A tokenizer from a registry name (pretrained when the entry ships weights), a folder, or an object."""
    import zoo
    from zoo.pretrained import target_of

    if isinstance(item, (str, Path)):
        text = str(item)
        path = Path(text).expanduser()
        if path.is_dir() or text.startswith("file:") or "/" in text:
            tokenizer = zoo.load(text)
            folder = path if path.is_dir() else None
            record = {"source": text, "weights_sha256": _weights_sha256(tokenizer, folder)}
            label = folder_label(path) if path.is_dir() else text
        else:
            entry = zoo.registry.get(text)
            tokenizer = zoo.load(text, pretrained=entry.pretrained)
            sha = (entry.weights or {}).get("sha256") or (_weights_sha256(tokenizer) if entry.weights else None)
            record = {"source": f"registry:{text}", "pretrained": entry.pretrained, "weights_sha256": sha}
            label = text
    elif hasattr(item, "encode") and hasattr(item, "modality"):
        tokenizer, label = item, type(item).__name__
        record = {"source": "object", "weights_sha256": _weights_sha256(item)}
    else:
        raise ZooError(f"tokenizer {item!r}: expected a registry name, a checkpoint folder or a Tokenizer object")
    record.update(
        target=target_of(type(tokenizer)),
        modality=tokenizer.modality,
        vocab_size=int(tokenizer.vocab_size),
        config=getattr(tokenizer, "config", {}),
    )
    if hasattr(tokenizer, "eval"):
        tokenizer.eval()
    return Candidate(label, tokenizer, record)


def folder_label(path: Path) -> str:
    """A checkpoint folder's label: its name, with its run's name when the name alone says nothing
    (``runs/beats-tiny/ssl2/final`` -> ``ssl2/final``)."""
    from zoo.train.trainer import FINAL

    if path.name == FINAL or path.name.startswith("step"):
        return f"{path.resolve().parent.name}/{path.name}"
    return path.name


def _unique_labels(candidates: list[Candidate]) -> None:
    seen: dict[str, int] = {}
    for candidate in candidates:
        seen[candidate.label] = seen.get(candidate.label, 0) + 1
        if seen[candidate.label] > 1:
            candidate.label = f"{candidate.label}#{seen[candidate.label]}"


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
    from zoo.report import figure_to_png

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
    from zoo.report import write_report

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
    from zoo.metrics.base import EvalContext
    from zoo.report import collect_examples

    started = time.perf_counter()
    spec = replace(load_suite(suite))  # a copy: overrides never change the caller's Suite
    if limit is not None:
        _positive_int("run_suite", "limit", limit)
        spec.limit = limit
    if batch_size is not None:
        _positive_int("run_suite", "batch_size", batch_size)
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

    candidates = [resolve_tokenizer(t) for t in tokenizers]
    _unique_labels(candidates)
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
