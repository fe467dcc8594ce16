"""Throughput of ``zoo tokenize`` with 1 and 2 Ray workers against a plain loop over the same tokenizer and data,
and the peak resident memory of a run at two corpus sizes (it must not grow with the corpus).

    python -m benchmarks.tokenize_throughput [--items 20000] [--tokenizer bpe-32k]

Each measurement runs in a fresh process (peak RSS is per process; Ray's workers are separate processes, so
the driver's RSS is reported, with the workers' peak from Ray's own accounting left out).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

_CHILD = r"""
import json, resource, sys, time
spec, name, mode, workers, out = json.loads(sys.argv[1])
import torch
from zoo.data import load_dataset
from zoo.loading import load_tokenizer
started = time.perf_counter()
if mode == "loop":
    torch.set_num_threads(1)
    tok = load_tokenizer(name, frozen=True)
    data = load_dataset(spec)
    count = 0
    for i in range(len(data)):
        tok.encode(data[i]["text"])
        count += 1
else:
    from zoo.tokenize import tokenize
    count = tokenize(name, spec, out, workers=workers, items_per_shard=1000, engine=mode, progress=False)["items"]
elapsed = time.perf_counter() - started
print(json.dumps({"items": count, "seconds": round(elapsed, 2), "items_per_s": round(count / elapsed, 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def measure(spec: str, name: str, mode: str, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps([spec, name, mode, workers, out])],
                              capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--tokenizer", default="bpe-32k")
    args = parser.parse_args()
    spec = f"fortunes:all,limit={args.items}"
    rows = [("plain loop, 1 process", measure(spec, args.tokenizer, "loop", 1)),
            ("zoo tokenize, local (no Ray)", measure(spec, args.tokenizer, "local", 1)),
            ("zoo tokenize, Ray, 1 worker", measure(spec, args.tokenizer, "ray", 1)),
            ("zoo tokenize, Ray, 2 workers", measure(spec, args.tokenizer, "ray", 2))]
    small = f"fortunes:all,limit={args.items // 4}"
    rows.append((f"zoo tokenize, local, {args.items // 4} items", measure(small, args.tokenizer, "local", 1)))
    print(f"| run ({args.tokenizer}) | items | seconds | items/s | driver peak RSS (MB) |")
    print("|---|---|---|---|---|")
    for label, row in rows:
        print(f"| {label} | {row['items']} | {row['seconds']} | {row['items_per_s']} | {row['peak_rss_mb']} |")


if __name__ == "__main__":
    main()
