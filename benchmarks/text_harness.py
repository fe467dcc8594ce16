"""The harness's text throughput next to ``benchmarks/text_throughput`` for the same tokenizer, one run.

The harness runs the ``throughput`` metric of ``eval/text-compression.yaml`` (2,000 held-out fortunes
in 12 languages, ~170 bytes each, batches of 100, threads pinned to 1): batch call, per-document
calls and one call on each joined batch, with their per-call overhead. The benchmark side encodes the
text of ``benchmarks/text_throughput`` (every fortune record joined into ~64 KB blocks), one
``encode`` call per block. Also timed on the harness's batches: tiktoken's ``encode_ordinary_batch``
(what ``encode(list)`` called before: a new 8-thread pool per call) and a plain loop, which together
account for the old gap (1.3 MB/s in the harness vs 11 MB/s in the benchmark). Last, one
``encode(list)`` of ~4 MB of blocks under 1, 2 and all threads (``zoo.text.engines.threads``).

    python -m benchmarks.text_harness [--tokenizer bpe-32k] [--processes 2]

``--processes N`` also runs the suite under ``accelerate launch`` on N CPU processes and reports the
per-process and total rates. Writes ``benchmarks/results/text_harness.json`` and prints it.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import zoo  # noqa: E402
from benchmarks.text_throughput import blocks  # noqa: E402

SUITE = {
    "name": "text-throughput",
    "description": "the throughput metric of eval/text-compression.yaml",
    "data": "fortunes:lang=all,split=test",
    "limit": 2000,
    "batch_size": 100,
    "seed": 0,
    "examples": 0,
    "metrics": ["throughput"],
}


def best_of(fn, repeats: int = 3) -> float:
    fn()
    return min(_once(fn) for _ in range(repeats))


def interleaved(calls: dict, rounds: int = 15) -> dict[str, float]:
    """Fastest seconds of each call over ``rounds`` rounds that run every call once, in turn."""
    for fn in calls.values():
        fn()  # warm-up
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, fn in calls.items():
            best[name] = min(best[name], _once(fn))
    return best


def _once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rounded(values: dict) -> dict:
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in values.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", default="bpe-32k")
    parser.add_argument("--processes", type=int, default=0, help="also run under accelerate on N CPU processes")
    parser.add_argument("--out", default="benchmarks/results/text_harness.json")
    args = parser.parse_args()

    from zoo.evaluate import run_suite

    harness = run_suite(SUITE, [args.tokenizer], progress=False)["results"][args.tokenizer]["throughput"]

    tok = zoo.load(args.tokenizer, pretrained=True)
    big = blocks()
    big_mb = sum(len(t.encode("utf-8")) for t in big) / 1e6
    bench_s = best_of(lambda: [tok.encode(t) for t in big], repeats=1)

    from zoo.data import load_dataset

    docs = load_dataset(SUITE["data"]).texts[: SUITE["limit"]]
    batches = [docs[i : i + SUITE["batch_size"]] for i in range(0, len(docs), SUITE["batch_size"])]
    docs_mb = sum(len(t.encode("utf-8")) for t in docs) / 1e6
    calls = {
        "zoo encode(list)": lambda: [tok.encode(b) for b in batches],
        "zoo encode(str) loop": lambda: [tok.encode(t) for t in docs],
    }
    encoding = getattr(tok, "tiktoken_encoding", None)
    if encoding is not None:
        calls["tiktoken encode_ordinary_batch (the old encode(list))"] = lambda: [
            encoding.encode_ordinary_batch(b) for b in batches
        ]
        calls["tiktoken encode_ordinary loop"] = lambda: [encoding.encode_ordinary(t) for t in docs]
    same_docs = {name: round(docs_mb / seconds, 2) for name, seconds in interleaved(calls).items()}

    from zoo.text import engines

    def under(n: int):
        def call():
            with engines.threads(n):
                tok.encode(part)

        return call

    part = big[:64]  # ~4 MB of 64 KB blocks in one encode(list) call
    part_mb = sum(len(t.encode("utf-8")) for t in part) / 1e6
    cpus = len(os.sched_getaffinity(0))
    by_threads = {"loop over encode(str)": lambda: [tok.encode(t) for t in part]}
    by_threads.update({f"encode(list), {n} thread(s)": under(n) for n in sorted({1, 2, cpus})})
    threads_table = {name: round(part_mb / seconds, 2) for name, seconds in interleaved(by_threads, 4).items()}

    result = {
        "tokenizer": args.tokenizer,
        "engine": getattr(tok, "engine", type(tok).__name__),
        "cpus": len(os.sched_getaffinity(0)),
        "harness (eval/text-compression throughput, batches of 100 docs)": rounded(harness),
        "benchmark (text_throughput: 64 KB blocks, one call each)": {
            "megabytes": round(big_mb, 3),
            "mb_per_s": round(big_mb / bench_s, 2),
        },
        "harness documents, MB/s (fastest of 15 interleaved rounds)": same_docs,
        f"64 KB blocks ({part_mb:.1f} MB) in one batch, MB/s by threads (fastest of 4 rounds)": threads_table,
    }
    if args.processes > 1:
        result[f"accelerate, {args.processes} CPU processes"] = rounded(run_processes(args.tokenizer, args.processes))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def run_processes(tokenizer: str, processes: int) -> dict:
    if shutil.which("accelerate") is None:
        return {"skipped": "the accelerate launcher is not on PATH"}
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "suite.yaml"
        suite.write_text(json.dumps(SUITE))
        launcher = ["accelerate", "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
                    "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "zoo"]  # fmt: skip
        env = {**os.environ, "ACCELERATE_USE_CPU": "true", "HF_HUB_OFFLINE": "1"}
        done = subprocess.run(
            [*launcher, "eval", str(suite), "-t", tokenizer, "--no-progress", "--out", str(Path(tmp) / "out")],
            capture_output=True, text=True, env=env, timeout=1200,
        )  # fmt: skip
        if done.returncode != 0:
            sys.stderr.write(done.stderr[-3000:])
            return {"failed": done.returncode}
        results = json.loads((Path(tmp) / "out" / "results.json").read_text())
    return results["results"][tokenizer]["throughput"]


if __name__ == "__main__":
    main()
