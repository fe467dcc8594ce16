"""Bounded memory of ``zoo tokenize`` at the issue's scale: 1 GB of text and 100k images, as webdataset tars.

    python -m benchmarks.tokenize_memory [--text-mb 1024] [--images 100000] [--runs local,ray1,ray2]
                                         [--only text|images] [--fractions 10%,100%] [--out FILE [--append]]

Generates, under ``--workdir`` (default ``/tmp/zoo-tokenize-memory``, deleted afterwards unless ``--keep``):

* text: the Debian fortunes of every language, reshuffled (one seeded generator) on every pass and joined into
  documents of at least 4 KiB, written as ``--shards`` webdataset tars (``NNNNNNNN.txt``) until ``--text-mb``;
* images: ``--images`` synthetic 64x64 PNGs (smooth colour fields: a seeded 4x4 noise image upsampled, so they
  compress like photos rather than like noise) with a ``.cls`` label, in ``--shards`` tars.

Then tokenizes 10 % (the first shard; local engine) and 100 % (every shard; each of ``--runs``) of each corpus
with ``zoo tokenize``, a fresh process per run, while this process samples the run's process tree with psutil
every 0.2 s: the driver's peak RSS (also from its own ``getrusage``), overall and in each tenth of the run; the
peak RSS of each Ray worker (the processes running ``ShardWriter``); the peak of the whole tree's sum. Bounded
memory means the peaks do not grow with the corpus. Writes ``--out`` (default
``benchmarks/results/tokenize_memory.json``) after every run and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

_CHILD = r"""
import json, resource, sys, time
name, spec, out, engine, workers = json.loads(sys.argv[1])
from zoo.tokenize import tokenize
started = time.perf_counter()
manifest = tokenize(name, spec, out, workers=workers, items_per_shard=1024, engine=engine, progress=False)
print(json.dumps({"items": manifest["items"], "seconds": round(time.perf_counter() - started, 1),
                  "driver_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), 0
    tar.addfile(info, io.BytesIO(data))


def make_text(folder: Path, megabytes: int, shards: int, seed: int = 0) -> dict:
    """``shards`` tars of fortune documents (>= 4 KiB each) holding ``megabytes`` MiB of UTF-8 in all."""
    from zoo.data import load_dataset

    records = [item["text"].encode("utf-8") for item in load_dataset("fortunes:all,split=all")]
    target, per_shard = megabytes << 20, (megabytes << 20) // shards
    folder.mkdir(parents=True, exist_ok=True)
    written = documents = 0
    rng = np.random.default_rng(seed)
    order, position = rng.permutation(len(records)), 0
    for shard in range(shards):
        with tarfile.open(folder / f"text-{shard:06d}.tar", "w") as tar:
            in_shard = 0
            while in_shard < per_shard and written < target:
                parts, length = [], 0
                while length < 4096:
                    if position == len(order):  # one pass over the fortunes done: reshuffle for the next
                        order, position = rng.permutation(len(records)), 0
                    parts.append(records[order[position]])
                    length += len(parts[-1]) + 3
                    position += 1
                document = b"\n%\n".join(parts)
                _add(tar, f"{documents:08d}.txt", document)
                documents += 1
                in_shard += len(document)
                written += len(document)
    return {"documents": documents, "megabytes": round(written / 2**20, 1), "shards": shards}


def make_images(folder: Path, count: int, shards: int, seed: int = 0) -> dict:
    """``count`` synthetic 64x64 PNGs with labels 0-9 in ``shards`` tars."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per_shard, made, stored = -(-count // shards), 0, 0
    for shard in range(shards):
        with tarfile.open(folder / f"images-{shard:06d}.tar", "w") as tar:
            for _ in range(min(per_shard, count - made)):
                small = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
                buffer = io.BytesIO()
                small.resize((64, 64), Image.BICUBIC).save(buffer, format="PNG")
                _add(tar, f"{made:08d}.png", buffer.getvalue())
                _add(tar, f"{made:08d}.cls", str(made % 10).encode())
                stored += len(buffer.getvalue())
                made += 1
    return {"images": made, "png_megabytes": round(stored / 2**20, 1), "shards": shards}


class TreeSampler(threading.Thread):
    """Samples a process and its descendants every ``interval`` s: peak RSS of the root, of each Ray worker, and
    of the tree's sum."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        import psutil

        self.root, self.interval, self.done = psutil.Process(pid), interval, threading.Event()
        self.driver = self.tree = 0
        self.timeline: list[tuple[float, int]] = []  # (seconds since start, the root's RSS)
        self.workers: dict[int, int] = {}  # pid -> peak RSS of the processes running the shard writers
        self.others: dict[str, int] = {}  # Ray's own processes (raylet, GCS, idle workers, agents): name -> peak

    def run(self) -> None:
        import psutil

        started = time.perf_counter()
        while not self.done.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for process in processes:
                try:
                    rss = process.memory_info().rss
                    name = " ".join(process.cmdline()[:1]) or process.name()
                except psutil.Error:
                    continue
                total += rss
                if process.pid == self.root.pid:
                    self.driver = max(self.driver, rss)
                    self.timeline.append((time.perf_counter() - started, rss))
                elif "ShardWriter" in name:  # Ray retitles an actor's process after the class it runs
                    self.workers[process.pid] = max(self.workers.get(process.pid, 0), rss)
                else:
                    label = f"{name[:60]} [{process.pid}]"
                    self.others[label] = max(self.others.get(label, 0), rss)
            self.tree = max(self.tree, total)
            self.done.wait(self.interval)


def measure(name: str, spec: str, engine: str, workers: int) -> dict:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory(prefix="zoo-tokenize-out-") as out:
        child = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps([name, spec, out, engine, workers])],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
        sampler = TreeSampler(child.pid)
        sampler.start()
        stdout, stderr = child.communicate()
        sampler.done.set()
        sampler.join()
        if child.returncode != 0:
            raise RuntimeError(f"{name} on {spec} ({engine}) failed:\n{stderr[-3000:]}")
        shards_mb = sum(p.stat().st_size for p in Path(out).glob("shard-*.parquet")) / 2**20
    result = json.loads(stdout.strip().splitlines()[-1])
    mb = 2**20
    result.update({"engine": engine, "workers": workers, "driver_peak_rss_mb": round(sampler.driver / mb, 1),
                   "worker_peak_rss_mb": [round(v / mb, 1) for v in sampler.workers.values()],
                   "tree_peak_rss_mb": round(sampler.tree / mb, 1), "shards_mb": round(shards_mb, 1),
                   "other_processes_peak_rss_mb": {k: round(v / mb, 1) for k, v in sampler.others.items()}})
    result["items_per_s"] = round(result["items"] / result["seconds"], 1)
    # The driver's peak in each tenth of the run: flat from the second tenth on when nothing accumulates.
    end, tenths = max((t for t, _ in sampler.timeline), default=0.0) or 1.0, [0] * 10
    for t, rss in sampler.timeline:
        tenth = min(9, int(10 * t / end))
        tenths[tenth] = max(tenths[tenth], rss)
    result["driver_peak_rss_mb_by_tenth"] = [round(v / mb, 1) for v in tenths]
    return result


RUNS = {"local": ("local", 1), "ray1": ("ray", 1), "ray2": ("ray", 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/zoo-tokenize-memory")
    parser.add_argument("--text-mb", type=int, default=1024)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=10, help="tars per corpus; 10 %% of a corpus is its first one")
    parser.add_argument("--text-tokenizer", default="bpe-32k")
    parser.add_argument("--image-tokenizer", default="vq-fmnist")
    parser.add_argument("--runs", default="local,ray1,ray2", help="engines at 100 %% (10 %% runs locally only)")
    parser.add_argument("--only", choices=["text", "images"], help="measure one corpus")
    parser.add_argument("--fractions", default="10%,100%", help="parts of each corpus to tokenize")
    parser.add_argument("--append", action="store_true", help="add these runs to those already in --out")
    parser.add_argument("--out", default="benchmarks/results/tokenize_memory.json")
    parser.add_argument("--keep", action="store_true", help="keep the generated corpora")
    args = parser.parse_args()

    workdir = Path(args.workdir)
    results: dict = {"machine": f"{os.cpu_count()} CPUs, shared with other jobs", "corpora": {}, "runs": []}
    if args.append and Path(args.out).is_file():
        results = json.loads(Path(args.out).read_text(encoding="utf-8"))
    try:
        corpora = []
        if args.only in (None, "text"):
            started = time.perf_counter()
            results["corpora"]["text"] = make_text(workdir / "text", args.text_mb, args.shards)
            results["corpora"]["text"]["generate_seconds"] = round(time.perf_counter() - started, 1)
            corpora.append(("text", args.text_tokenizer, workdir / "text" / "text"))
        if args.only in (None, "images"):
            started = time.perf_counter()
            results["corpora"]["images"] = make_images(workdir / "images", args.images, args.shards)
            results["corpora"]["images"]["generate_seconds"] = round(time.perf_counter() - started, 1)
            corpora.append(("images", args.image_tokenizer, workdir / "images" / "images"))
        print(json.dumps(results["corpora"]), file=sys.stderr)
        last = f"{args.shards - 1:06d}"
        for corpus, tokenizer, stem in corpora:
            fractions = {"10%": f"webdataset:{stem}-000000.tar", "100%": f"webdataset:{stem}-{{000000..{last}}}.tar"}
            for fraction in args.fractions.split(","):
                spec = fractions[fraction]
                for run in (["local"] if fraction == "10%" else args.runs.split(",")):
                    engine, workers = RUNS[run]
                    row = {"corpus": corpus, "fraction": fraction, "tokenizer": tokenizer, "spec": spec,
                           **measure(tokenizer, spec, engine, workers)}
                    results["runs"].append(row)
                    print(json.dumps(row), file=sys.stderr)
                    Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")  # each run
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print("| corpus | part | run | items | seconds | items/s | driver peak RSS (MB) | worker peak RSS (MB) | "
          "process tree peak (MB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in results["runs"]:
        run = "local" if row["engine"] == "local" else f"Ray, {row['workers']} worker(s)"
        workers = ", ".join(str(v) for v in row["worker_peak_rss_mb"]) or "-"
        print(f"| {row['corpus']} ({row['tokenizer']}) | {row['fraction']} | {run} | {row['items']} | "
              f"{row['seconds']} | {row['items_per_s']} | {row['driver_peak_rss_mb']} | {workers} | "
              f"{row['tree_peak_rss_mb']} |")


if __name__ == "__main__":
    main()
