"""``zoo.tokenize(name, source, out)``: a dataset through a tokenizer into token shards, on Ray Data.

Ray Data runs the work: the shards still to write become a dataset of shard numbers, and
``map_batches`` hands them to a pool of actors, each holding its own tokenizer and its own view of the
source (items are read where they are encoded; nothing large crosses the object store). By default a
local Ray starts on this machine with ``workers`` CPUs; ``address`` joins a running cluster
(``ray start --head`` on one machine, ``ray start --address HEAD:6379`` on the others, then
``zoo tokenize ... --address auto``); ``gpus_per_worker`` asks Ray for GPUs per actor. Without Ray
installed (``pip install 'zoo[tokenize]'``) the same shard writer runs in this process.

Resumable and deterministic: a shard is written whole or not at all (a temporary file, then a rename), a
rerun skips every shard that is complete and redoes the rest, and a shard's bytes depend only on its
items and the tokenizer, so 1, 2 or 20 workers, or a run killed and rerun, give the same files.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from zoo.data.token_shards import MANIFEST, shard_name
from zoo.errors import ZooError
from zoo.pretrained import atomic_write_bytes as write_atomically
from zoo.tokenize.shards import Plan, complete_shard, describe_run, encode_shard

RUN_RECORD = "run.json"  # what the shards of this folder depend on; a rerun must match it
# Settings a worker process needs to build the same tokenizer and source as the driver.
_FORWARDED_ENV = ("ZOO_CACHE", "ZOO_TRUSTED_MODULES", "ZOO_TRUST_REMOTE_CODE", "HF_HUB_OFFLINE", "ZOO_OFFLINE")


class ShardWriter:
    """Holds one tokenizer and the source; ``__call__`` writes the shards a batch names (a Ray actor or local)."""

    def __init__(self, name: str, source: Any, out: str, items_per_shard: int, threads: int | None = 1,
                 tokenizer=None, dataset=None):
        import torch

        from zoo.data import load_dataset
        from zoo.loading import load_tokenizer

        if threads is not None:  # one actor per core: intra-op threads would fight over the same cores
            torch.set_num_threads(threads)
        # In this process the driver's own tokenizer and dataset are reused: building a source twice would hold
        # two copies (and read a webdataset's tar headers twice).
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(name, frozen=True)
        self.dataset = dataset if dataset is not None else load_dataset(source)
        self.out = Path(out)
        self.plan = Plan(len(self.dataset), items_per_shard)

    def __call__(self, batch: dict) -> dict:
        shards, rows, seconds = [], [], []
        for shard in [int(s) for s in batch["shard"]]:
            started = time.perf_counter()
            write_atomically(self.out / shard_name(shard), encode_shard(self.tokenizer, self.dataset, self.plan, shard))
            shards.append(shard)
            rows.append(len(self.plan.items(shard)))
            seconds.append(time.perf_counter() - started)
        return {"shard": shards, "rows": rows, "seconds": seconds}


def _ray_available() -> bool:
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


def _check_run(out: Path, description: dict, overwrite: bool) -> None:
    """A folder holds the shards of one run: refuse to mix in shards of another tokenizer or source."""
    record = out / RUN_RECORD
    if record.is_file():
        before = json.loads(record.read_text(encoding="utf-8"))
        if before != description and not overwrite:
            changed = sorted(k for k in set(before) | set(description) if before.get(k) != description.get(k))
            raise ZooError(f"{out} holds tokens of another run (differs in {', '.join(changed)}); choose another "
                           "--out, or pass --overwrite to start over")
        if before != description:
            for path in out.glob("shard-*.parquet"):
                path.unlink()
            (out / MANIFEST).unlink(missing_ok=True)
    write_atomically(record, (json.dumps(description, indent=2, sort_keys=True, default=str) + "\n").encode())


def tokenize(name: str, source: Any, out: str | Path, workers: int = 1, items_per_shard: int = 1024,
             engine: str = "auto", address: str | None = None, gpus_per_worker: float = 0.0,
             overwrite: bool = False, progress: bool = True) -> dict:
    """Tokenize every item of ``source`` (a dataset spec) with ``name`` into ``out``; returns the manifest.

    Args:
        name: a registry name, checkpoint folder or ``file:PATH`` (``zoo.loading``).
        source: a dataset spec (``"fortunes:en"``, ``{"name": "image-folder", "path": ...}``).
        workers: actors (one process each) encoding shards in parallel.
        items_per_shard: rows per Parquet file; also the unit of resumption.
        engine: ``"ray"``, ``"local"`` (this process), or ``"auto"`` (Ray when installed).
        address: a Ray cluster to join (``"auto"``, ``"ray://HOST:10001"``); default a local Ray.
    """
    from zoo.data import load_dataset
    from zoo.loading import load_tokenizer

    for key, value, low in (("workers", workers, 1), ("items_per_shard", items_per_shard, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ZooError(f"tokenize: {key} must be an integer >= {low}, got {value!r}")
    if engine not in ("auto", "ray", "local"):
        raise ZooError(f"tokenize: engine must be 'auto', 'ray' or 'local', got {engine!r}")
    if engine == "ray" and not _ray_available():
        raise ZooError("tokenize: engine 'ray' needs Ray Data (pip install 'zoo[tokenize]')")
    use_ray = engine == "ray" or (engine == "auto" and _ray_available())
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ZooError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    tokenizer = load_tokenizer(name, frozen=True)
    dataset = load_dataset(source)
    plan = Plan(len(dataset), items_per_shard)
    if plan.count == 0:
        raise ZooError(f"tokenize: the source {source!r} holds no items")
    description = describe_run(tokenizer, name, source, plan)
    _check_run(out, description, overwrite)
    for leftover in out.glob(".shard-*.tmp"):  # a killed writer's temporary file: redone below
        leftover.unlink()
    todo = [s for s in range(plan.shards) if complete_shard(out / shard_name(s), len(plan.items(s))) is None]
    done_before = plan.shards - len(todo)
    print(f"zoo tokenize: {plan.count} items -> {plan.shards} shards of {items_per_shard} in {out} "
          f"({done_before} already complete); {workers} worker(s) on "
          f"{'Ray' if use_ray else 'this process (no Ray)'}", file=sys.stderr)
    arguments = {"name": str(name), "source": source, "out": str(out), "items_per_shard": items_per_shard}
    if todo:
        if use_ray:
            _run_with_ray(todo, arguments, workers, address, gpus_per_worker, progress)
        else:
            # In this process the caller's thread setting stands (OMP_NUM_THREADS, torch.set_num_threads): the old
            # forced os.cpu_count() threads ran vq-fmnist 12x slower (4.8 vs 60.6 images/s, runs minutes apart) on
            # two cores that other jobs were using.
            _run_here(todo, ShardWriter(**arguments, threads=None, tokenizer=tokenizer, dataset=dataset), progress)

    shards = []
    for shard in range(plan.shards):
        rows = len(plan.items(shard))
        digest = complete_shard(out / shard_name(shard), rows)
        if digest is None:
            raise ZooError(f"{out / shard_name(shard)}: missing or incomplete after the run; rerun to redo it")
        shards.append({"file": shard_name(shard), "rows": rows, "sha256": digest})
    manifest = {**description, "shards": shards}
    write_atomically(out / MANIFEST, (json.dumps(manifest, indent=2, default=str) + "\n").encode())
    elapsed = time.perf_counter() - started
    encoded = sum(len(plan.items(s)) for s in todo)
    rate = encoded / elapsed if elapsed > 0 else 0.0
    print(f"zoo tokenize: wrote {len(todo)} shard(s), {encoded} items in {elapsed:.1f} s ({rate:.1f} items/s); "
          f"manifest {out / MANIFEST}", file=sys.stderr)
    return manifest


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="shard", desc="zoo tokenize", disable=not enabled, file=sys.stderr)


def _run_here(todo: list[int], writer: ShardWriter, progress: bool) -> None:
    with _progress(len(todo), progress) as bar:
        for shard in todo:
            writer({"shard": [shard]})
            bar.update(1)


def _run_with_ray(todo: list[int], arguments: dict, workers: int, address, gpus_per_worker: float,
                  progress: bool) -> None:
    import logging

    import ray

    logging.getLogger("ray").setLevel(logging.WARNING)  # Ray Data's plan and timing lines would drown ours
    env = {key: os.environ[key] for key in _FORWARDED_ENV if key in os.environ}
    started_here = not ray.is_initialized()
    if started_here:
        options = {"address": address} if address else {"num_cpus": workers}
        ray.init(**options, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                 runtime_env={"env_vars": env} if env else None)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # one bar of our own, in shards
        shards = ray.data.from_items([{"shard": s} for s in todo], override_num_blocks=len(todo))
        results = shards.map_batches(
            ShardWriter,
            fn_constructor_kwargs=arguments,
            batch_size=1,
            concurrency=workers,
            num_cpus=1,
            num_gpus=gpus_per_worker or None,
        )
        with _progress(len(todo), progress) as bar:
            for _ in results.iter_rows():
                bar.update(1)
    finally:
        if started_here:
            ray.shutdown()
