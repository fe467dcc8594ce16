"""Encode + decode throughput of the published image tokenizers at each entry's own resolution, side by side.

Random weights at the real size (``zoo.load(name)`` builds the published network from its seed; nothing is
downloaded), one run, every entry in the same process on the same device:

    python benchmarks/image_published_speed.py                      # CPU, 2 threads, 1 image per entry
    python benchmarks/image_published_speed.py --device cuda --batch 8 --repeats 3
    python benchmarks/image_published_speed.py --skip emu3-vq       # leave out entries too slow for the machine

Per entry: one warm-up encode + decode (not timed), then ``repeats`` timed rounds of ``encode`` followed by
``decode`` of a ``[batch, 3, size, size]`` batch of uniform noise in [0, 1]; images/s = batch * repeats / time.
Prints a markdown table (and ``--json PATH`` writes the rows).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from zoo.loading import load_tokenizer
from zoo.registry import default_registry

PUBLISHED_TAG = "published"


def get(name: str):
    return default_registry().get(name)


def published_names() -> list[str]:
    registry = default_registry()
    return [name for name in registry.names(modality="image") if PUBLISHED_TAG in registry.get(name).tags]


def measure(name: str, device: str, batch: int, repeats: int) -> dict:
    entry = get(name)
    start = time.perf_counter()
    tok = load_tokenizer(name, pretrained=False).to(device)
    built = time.perf_counter() - start
    size = int(entry.inputs["size"])
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    has_decoder = getattr(tok, "has_decoder", True)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def round_trip():
        ids = tok.encode(x)
        if has_decoder:
            tok.decode(ids)
        sync()
        return ids

    ids = round_trip()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        round_trip()
    elapsed = time.perf_counter() - start
    return {"entry": name, "size": size, "tokens": int(ids[0].numel()), "vocab": int(tok.vocab_size),
            "parameters": sum(p.numel() for p in tok.parameters()), "build_s": round(built, 2),
            "decoder": has_decoder, "images_per_s": batch * repeats / elapsed, "seconds": round(elapsed, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU intra-op threads")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=None, help="entries to measure (default: every published one)")
    parser.add_argument("--skip", nargs="*", default=[], help="entries to leave out")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    chosen = [n for n in (args.only or published_names()) if n not in set(args.skip)]
    rows = []
    for name in chosen:
        row = measure(name, args.device, args.batch, args.repeats)
        rows.append(row)
        print(f"# {name}: {row['images_per_s']:.3f} images/s", file=sys.stderr, flush=True)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu, {args.threads} threads"
    print(f"\n{device}; batch {args.batch}, {args.repeats} timed round(s), random weights at real size\n")
    print("| entry | input | tokens | codebook | parameters | encode+decode images/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        rate = f"{r['images_per_s']:.3f}" + ("" if r["decoder"] else " (encode only)")
        print(f"| `{r['entry']}` | {r['size']}px | {r['tokens']} | {r['vocab']} | {r['parameters']:,} | {rate} |")
    if args.json:
        from zoo.pretrained import atomic_write_text

        atomic_write_text(args.json, json.dumps({"device": device, "batch": args.batch, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
