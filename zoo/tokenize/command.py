"""``zoo tokenize NAME SOURCE --out DIR [--workers N] [--items-per-shard N] [--address ADDR]``."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="registry name, checkpoint folder or file:PATH")
    parser.add_argument("source", help="a dataset spec: fortunes:en, photos:size=64, image-folder:/data, "
                                       "audio-folder:/data, text-files:/data/*.txt, "
                                       "webdataset:/data/shards-{000000..000009}.tar, hf-dataset:/data/saved, ...")
    parser.add_argument("--out", required=True, help="folder for the shards and manifest.json")
    parser.add_argument("--workers", type=int, default=1, help="actors encoding in parallel (default 1)")
    parser.add_argument("--items-per-shard", type=int, default=1024, help="rows per Parquet shard (default 1024)")
    parser.add_argument("--engine", choices=["auto", "ray", "local"], default="auto",
                        help="Ray Data (default when installed) or this process")
    parser.add_argument("--address", help="join a Ray cluster ('auto' or ray://HOST:PORT); default: a local Ray")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs Ray gives each actor")
    parser.add_argument("--overwrite", action="store_true", help="replace the shards of another run in --out")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from zoo.tokenize import tokenize

    tokenize(args.name, args.source, args.out, workers=args.workers, items_per_shard=args.items_per_shard,
             engine=args.engine, address=args.address, gpus_per_worker=args.gpus_per_worker,
             overwrite=args.overwrite, progress=not args.no_progress)
    return 0
