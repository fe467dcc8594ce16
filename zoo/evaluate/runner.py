"""The run: every batch encoded once per tokenizer, fed to every metric, state summed across processes.

``run_suite(suite, tokenizers)`` returns the results dict; with ``out_dir`` it also writes
``results.json``, ``results.md`` and ``report.html`` (``zoo.evaluate.report``).

Resolution: a dataset spec whose ``size`` is ``auto`` (the default of ``imagefolder:PATH``) is built once per
distinct size, each candidate getting its registry entry's ``inputs.size``; ``results["data"]["sizes"]`` records
them. Precision: ``bf16`` / ``fp16`` run the tokenizer's ``encode`` / ``decode`` under ``torch.autocast`` and
hand metrics float32 reconstructions; every metric computes in float32 / float64 whatever the precision.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
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

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# -- device, precision, resolution -------------------------------------------------------------------------


def resolve_device(device, accelerator=None) -> torch.device:
    """``None``: the accelerator's device, else CPU; ``"auto"``: CUDA when available, else CPU; else as named."""
    if accelerator is not None:
        if device not in (None, "auto") and torch.device(device).type != accelerator.device.type:
            raise ZooError(f"--device {device}: under accelerate launch each process uses its own device "
                           f"({accelerator.device}); leave --device out")
        return accelerator.device
    if device is None:
        return torch.device("cpu")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ZooError(f"--device {device!r}: not a torch device; expected cpu, cuda, cuda:N, mps or auto") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ZooError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    return resolved


def check_precision(precision: str) -> torch.dtype:
    if precision not in PRECISIONS:
        raise ZooError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


@contextlib.contextmanager
def codec_precision(tokenizer, device: torch.device, precision: str):
    """Run ``tokenizer.encode`` / ``decode`` under ``torch.autocast`` (bf16 / fp16) for the block; decoded images
    and audio come back as float32, so every metric computes in full precision. fp32 changes nothing.

    The two methods are shadowed on the instance and restored afterwards, so metrics that call ``decode``
    themselves (pFID's perturbed decodes) run at the same precision as the shared calls."""
    dtype = check_precision(precision)
    if dtype is torch.float32:
        yield
        return
    if isinstance(tokenizer, torch.nn.Module) and any(
        p.dtype not in (torch.float32, torch.float64) for p in tokenizer.parameters() if p.is_floating_point()
    ):
        raise ZooError(f"--precision {precision}: {type(tokenizer).__name__} holds weights that are not float32; "
                       "autocast expects float32 weights")  # fmt: skip

    def autocast(method):
        @functools.wraps(method)
        def run(*args, **kwargs):
            with torch.autocast(device_type=device.type, dtype=dtype):
                out = method(*args, **kwargs)
            return out.float() if isinstance(out, torch.Tensor) and out.is_floating_point() else out

        return run

    names = [name for name in ("encode", "decode") if hasattr(tokenizer, name)]
    own = getattr(tokenizer, "__dict__", {})
    shadowed = {name: own[name] for name in names if name in own}  # instance attributes to put back as they were
    wrapped = {name: autocast(getattr(tokenizer, name)) for name in names}
    try:
        for name, method in wrapped.items():
            object.__setattr__(tokenizer, name, method)
    except (AttributeError, TypeError):
        raise ZooError(f"--precision {precision}: cannot wrap {type(tokenizer).__name__}.encode / decode in autocast; "
                       "use --precision fp32") from None  # fmt: skip
    try:
        yield
    finally:
        for name in names:
            if name in shadowed:
                object.__setattr__(tokenizer, name, shadowed[name])
            else:
                with contextlib.suppress(AttributeError):
                    object.__delattr__(tokenizer, name)


def data_wants_candidate_size(data_spec) -> bool:
    """True when the spec's ``size`` is ``auto``: given so, or left out where the builder's default is ``auto``."""
    from zoo.data import DATASETS, parse_spec
    from zoo.data.images import AUTO_SIZE

    name, options = parse_spec(data_spec)
    if "size" in options:
        return options["size"] == AUTO_SIZE
    parameter = inspect.signature(DATASETS.load(name)).parameters.get("size")
    return parameter is not None and parameter.default == AUTO_SIZE


def data_default_size(data_spec) -> int | None:
    """The dataset builder's own default ``size`` when it is a number (``photos``: 64), else None (``imagefolder``'s
    default is ``auto`` itself): what ``size=auto`` gives a candidate whose entry names no ``inputs.size``."""
    from zoo.data import DATASETS, parse_spec

    parameter = inspect.signature(DATASETS.load(parse_spec(data_spec)[0])).parameters.get("size")
    default = getattr(parameter, "default", None)
    return default if isinstance(default, int) and not isinstance(default, bool) else None


def candidate_input_size(candidate: Candidate) -> int | None:
    """The registry entry's ``inputs.size`` (pixels), or None when the candidate is not an entry or says none."""
    from zoo import registry

    source = str(candidate.record.get("source", ""))
    if not source.startswith("registry:"):
        return None
    inputs = registry.get(source[len("registry:"):]).inputs or {}
    size = inputs.get("size")
    return size if isinstance(size, int) else None


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
    device: str | None = None,
    precision: str = "fp32",
) -> dict:
    """Run a suite over tokenizers (registry names, checkpoint folders or objects); see the module docstring.

    Args:
        limit: items to evaluate, overriding the suite's ``limit``.
        out_dir: when given, ``results.json``, ``results.md`` and ``report.html`` are written there
            (by the main process only).
        accelerator: an ``accelerate.Accelerator``; items are sharded over its processes without
            padding and metric state is summed, so results equal a single-process run.
        batch_size: overrides the suite's ``batch_size``.
        device: ``cpu``, ``cuda``, ``cuda:1``, ... or ``auto`` (CUDA when available); None: the accelerator's
            device, else CPU.
        precision: ``fp32`` (default), ``bf16`` or ``fp16``: autocast for the tokenizer's encode / decode only.
    """
    from zoo.evaluate.report import write_report

    run = evaluate_suite(suite, tokenizers, limit, accelerator, batch_size, progress, device, precision)
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
    device: str | None = None,
    precision: str = "fp32",
) -> SuiteRun:
    """``run_suite`` without writing files: results, figures and examples for the caller to combine."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from zoo.data import collate
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
    device = resolve_device(device, accelerator)
    check_precision(precision)

    auto_size = data_wants_candidate_size(spec.data)
    loaded: dict[int | None, SuiteData] = {}

    def data_at(size: int | None) -> SuiteData:
        if size not in loaded:
            loaded[size] = load_suite_data(spec, rank, world, size if auto_size else None)
        return loaded[size]

    if not auto_size:
        data_at(None)  # bad data fails before any tokenizer loads
    candidates = [resolve_candidate(t) for t in tokenizers]
    unique_labels(candidates)
    fallback = data_default_size(spec.data) if auto_size else None
    entry_sizes = {c.label: candidate_input_size(c) for c in candidates}
    sizes = {label: (size if size is not None else fallback) if auto_size else None
             for label, size in entry_sizes.items()}
    first = data_at(next((s for s in sizes.values() if s is not None), None) if auto_size else None)
    modality = first.modality
    run_info = run_record(world, device)
    run_info["precision"] = precision
    results: dict[str, Any] = {
        "suite": spec.as_dict(),
        "data": {"spec": spec.data, "modality": modality, "items": len(first.dataset)},
        "run": run_info,
        "metrics": {},
        "tokenizers": {c.label: c.record for c in candidates},
        "results": {},
        "notes": {},
        "fid_images": {},
    }
    if auto_size:
        results["data"]["sizes"] = sizes
    figures: dict[str, dict[str, bytes]] = {}
    examples = {"modality": modality, "items": [], "tokenizers": {}}
    if is_main and spec.examples:
        examples["items"] = first.examples(spec.examples)

    for candidate in candidates:
        notes: list[str] = results["notes"].setdefault(candidate.label, [])
        tokenizer = candidate.tokenizer
        if candidate.record.get("pretrained") is False:
            notes.append("untrained: the entry ships no weights, so this is its seeded initialisation")
        if tokenizer.modality != modality:
            notes.append(f"skipped: a {tokenizer.modality} tokenizer cannot run on {modality} data")
            continue
        if auto_size and sizes[candidate.label] is None:
            notes.append("skipped: the data's size=auto takes the registry entry's inputs.size, and this tokenizer "
                         "has none; give the spec size=N")  # fmt: skip
            continue
        data = data_at(sizes[candidate.label])
        if auto_size:
            side = sizes[candidate.label]
            origin = "the entry's inputs.size" if entry_sizes[candidate.label] is not None else (
                "the dataset's default size; the tokenizer names no inputs.size")
            notes.append(f"evaluated at {side}x{side} ({origin})")
        if isinstance(tokenizer, torch.nn.Module):
            tokenizer.to(device)
        metrics = _build_metrics(spec, candidate, notes)
        for metric_name, metric in metrics.items():
            metric.setup(tokenizer, data.key)
            results["metrics"].setdefault(metric_name, describe_metric(metric))
        loader = DataLoader(data.shard, batch_size=spec.batch_size, shuffle=False, collate_fn=collate)
        bar = tqdm(loader, desc=f"{spec.name} | {candidate.label}", unit="batch", disable=not (progress and is_main))
        with codec_precision(tokenizer, device, precision):
            for index, batch in enumerate(bar):
                generator = torch.Generator().manual_seed(spec.seed * 1_000_003 + index * world + rank)
                ctx = EvalContext(tokenizer, _to_device(batch, device), generator=generator)
                try:
                    _update_all(metrics, ctx, notes)
                except torch.OutOfMemoryError:
                    raise ZooError(f"{candidate.label}: out of memory on {device} at batch size {spec.batch_size}; "
                                   f"pass --batch-size {max(1, spec.batch_size // 2)}") from None  # fmt: skip
            values, pictures = _compute_all(metrics, accelerator, notes, with_figures=is_main)
            if is_main and examples["items"]:
                items = examples["items"] if data is first else data.examples(spec.examples)
                examples["tokenizers"][candidate.label] = collect_examples(tokenizer, items, modality, device)
        results["results"][candidate.label] = values
        counts = {name: fid_image_count(m) for name, m in metrics.items() if name in values}
        counts = {name: n for name, n in counts.items() if n is not None}
        if counts:
            results["fid_images"][candidate.label] = counts
        if pictures:
            figures[candidate.label] = pictures
        if not notes:
            results["notes"].pop(candidate.label)
    results["run"]["seconds"] = round(time.perf_counter() - started, 3)
    return SuiteRun(results, figures, examples, is_main)


@dataclass
class SuiteData:
    """The suite's dataset at one size: all of it, this process's shard, and the key its statistics cache under."""

    dataset: Any
    shard: Any
    key: str
    modality: str

    def examples(self, count: int) -> list[dict]:
        return [self.dataset[i] for i in range(min(count, len(self.dataset)))]


def load_suite_data(spec: Suite, rank: int = 0, world: int = 1, size: int | None = None) -> SuiteData:
    """Build the suite's data (at ``size`` when given), cut to its limit, sharded by process.

    The cache key of reference statistics holds the spec, the item count and, for datasets that can say it
    (image folders: ``fingerprint``), a hash of the files' contents, so a changed folder never reuses old stats."""
    from torch.utils.data import Subset

    from zoo.data import load_dataset, parse_spec

    dataset = load_dataset(spec.data, **({"size": size} if size is not None else {}))
    full = dataset
    if spec.limit is not None and len(dataset) > spec.limit:
        dataset = Subset(dataset, range(spec.limit))
    if len(dataset) < world:
        raise ZooError(
            f"suite {spec.name!r}: data {spec.data!r} holds {len(dataset)} items, fewer than {world} processes"
        )
    modality = data_modality(dataset[0])
    name, options = parse_spec(spec.data)
    if size is not None:
        options["size"] = size
    record = {"name": name, "options": options, "items": len(dataset), "zoo_version": __version__}
    if callable(getattr(full, "fingerprint", None)):
        # The files' bytes (in order, at this size) decide the statistics, not where the folder lies.
        record["content_sha256"] = full.fingerprint(len(dataset))
        record["options"] = {k: v for k, v in options.items() if k not in ("path", "_positional")}
    data_key = json.dumps(record, sort_keys=True, default=str)
    shard = Subset(dataset, range(rank, len(dataset), world))  # disjoint, unpadded: sums equal a 1-process run
    return SuiteData(dataset, shard, data_key, modality)


def fid_image_count(metric) -> int | None:
    """How many images the smaller side of a FID-family value rests on (None for other metrics)."""
    from zoo.metrics.fid import FrechetMetric

    if not isinstance(metric, FrechetMetric):
        return None
    counts = [float(v) for k, v in metric.state_dict().items() if k.endswith("_count") and float(v) > 0]
    if metric.cached_reference is not None:
        counts.append(float(metric.cached_reference.count))
    return int(min(counts)) if counts else 0


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
