"""Encode + decode speed of the audio codecs, x real time, on 1 and 2 CPU threads, one run side by side.

    python benchmarks/codec_speed.py --seconds 2 --threads 1 2 [--names codec-16k dac-16khz ...]

x real time = seconds of audio / wall seconds for ``decode(encode(x))`` of one clip (higher is faster; > 1 is
faster than real time). The trained codec-16k loads its shipped weights; the published codecs are built at their
real size with random weights (speed does not depend on the values; nothing is downloaded). Each (codec,
threads) is timed ``--repeats`` times after one warm-up call, and the best time is kept.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

DEFAULT = ["codec-16k", "encodec-24khz", "encodec-48khz", "dac-16khz", "dac-24khz", "dac-44khz", "mimi", "snac-24khz",
           "snac-32khz", "snac-44khz", "xcodec-hubert-librispeech", "wavtokenizer-large-40token",
           "wavtokenizer-large-75token"]


def time_codec(tok, seconds: float, repeats: int) -> float:
    """Best wall time of ``decode(encode(x))`` for ``seconds`` of seeded noise at the codec's rate."""
    samples = int(seconds * tok.sample_rate)
    x = (torch.rand(1, samples, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 0.3
    tok.decode(tok.encode(x[:, : tok.sample_rate // 4]))  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        tok.decode(tok.encode(x))
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    from zoo.loading import load_tokenizer
    from zoo.registry import get

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--names", nargs="+", default=DEFAULT)
    args = parser.parse_args(argv)
    before = os.getloadavg()  # the box may be shared: the load beside the run says how noisy its numbers are
    header = " | ".join(f"x real time, {n} thread{'s' if n > 1 else ''}" for n in args.threads)
    print(f"| codec | weights | parameters | sample rate | frame rate | ids/frame | kbps | {header} |")
    print("|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(args.threads))
    for name in args.names:
        shipped = not (get(name).weights or {}).get("path", "").startswith("hf://")
        tok = load_tokenizer(name, pretrained=shipped, frozen=True)
        speeds = []
        for threads in args.threads:
            torch.set_num_threads(threads)
            speeds.append(args.seconds / time_codec(tok, args.seconds, args.repeats))
        parameters = sum(p.numel() for p in tok.parameters())
        cells = " | ".join(f"{s:.2f}" for s in speeds)
        print(f"| {name} | {'trained (shipped)' if shipped else 'random (real size)'} | {parameters:,} | "
              f"{tok.sample_rate} | {tok.frame_rate:.2f} | {tok.num_codebooks} | {tok.bitrate_kbps():.2f} | {cells} |",
              flush=True)
    after = os.getloadavg()
    print(f"\nload average (1 / 5 / 15 min): {' / '.join(f'{v:.1f}' for v in before)} before, "
          f"{' / '.join(f'{v:.1f}' for v in after)} after; {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
