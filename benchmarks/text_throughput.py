"""Encode throughput on the same multilingual text, one thread, one run: zoo's path vs HF ``tokenizers``
vs raw tiktoken on the same vocabulary (and LiB's automaton vs its ``tokenizers`` file), ids compared;
then every engine side by side (``benchmarks.text_engines``: tiktoken, rs-bpe, bpe-openai, kitoken,
SentencePiece) on the first ``--engines-mb`` MB of the same blocks, for the BPE, ``cl100k_base``
(the ranks bpe-openai ships) and the Unigram entry.

The text is every fortune record of the 12 languages (``fortunes:lang=all,split=all``, ~17 MB), in
blocks of about 64 KB, each block one ``encode`` call per engine. Threads are pinned to one before any
engine loads (``RAYON_NUM_THREADS=1``; tiktoken's single-text encode is single-threaded).

    python -m benchmarks.text_throughput [--tokenizer bpe-32k]

Writes ``benchmarks/results/text_throughput.json`` and prints it.
"""

from __future__ import annotations

import os

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["ZOO_TEXT_THREADS"] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import zoo  # noqa: E402
from zoo.data import load_dataset  # noqa: E402


def blocks(limit_mb: float | None = None, size: int = 1 << 16) -> list[str]:
    """Fortune records of every language joined into ~64 KB blocks (records stay whole), mixed by seed."""
    out, current, length = [], [], 0
    for text in load_dataset("fortunes", lang="all", split="all").texts:
        current.append(text)
        length += len(text.encode("utf-8"))
        if length >= size:
            out.append("\n".join(current))
            current, length = [], 0
            if limit_mb is not None and len(out) * size >= limit_mb * 1e6:
                break
    if current:
        out.append("\n".join(current))
    return out


def timed(encode, texts: list[str]) -> tuple[float, list[list[int]]]:
    started = time.perf_counter()
    ids = [encode(t) for t in texts]
    return time.perf_counter() - started, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", default="bpe-32k", help="a registry BPE with shipped weights")
    parser.add_argument("--lib", default="lib", help="a registry LiB vocabulary (automaton vs tokenizers file)")
    parser.add_argument("--lib-mb", type=float, default=2.0, help="MB for LiB's slow tokenizers-regex path")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the fastest round counts")
    parser.add_argument("--engines-mb", type=float, default=4.0, help="MB for the side-by-side engine table")
    parser.add_argument("--unigram", default="unigram-32k", help="a registry Unigram for the engine table")
    parser.add_argument("--out", default="benchmarks/results/text_throughput.json")
    args = parser.parse_args()

    texts = blocks()
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    bpe = zoo.load(args.tokenizer, pretrained=True)
    hf, encoding = bpe.hf_tokenizer, bpe.tiktoken_encoding
    if encoding is None:
        raise SystemExit(f"{args.tokenizer}: tiktoken cannot run this vocabulary")
    bpe.encode(texts[0]), hf.encode(texts[0]), encoding.encode_ordinary(texts[0])  # warm caches and lazy setup

    engines = {
        "zoo": bpe.encode,
        "tokenizers": lambda t: hf.encode(t, add_special_tokens=False).ids,
        "tiktoken": encoding.encode_ordinary,
    }
    seconds, ids = {}, {}
    for _ in range(args.repeats):  # rounds interleave the engines, so a burst of other load hits them alike
        for name, encode in engines.items():
            elapsed, ids[name] = timed(encode, texts)
            seconds[name] = min(seconds.get(name, elapsed), elapsed)
    tokens = sum(map(len, ids["zoo"]))
    result = {
        "text": {"source": "fortunes:lang=all,split=all", "megabytes": round(megabytes, 3), "blocks": len(texts)},
        "tokenizer": args.tokenizer,
        "vocab_size": bpe.vocab_size,
        "tokens": tokens,
        "threads": 1,
        "repeats": args.repeats,
        "mb_per_s": {name: round(megabytes / s, 2) for name, s in seconds.items()},
        "seconds": {name: round(s, 3) for name, s in seconds.items()},
        "zoo_vs_tokenizers": round(seconds["tokenizers"] / seconds["zoo"], 2),
        "tiktoken_vs_tokenizers": round(seconds["tokenizers"] / seconds["tiktoken"], 2),
        "zoo_vs_tiktoken": round(seconds["tiktoken"] / seconds["zoo"], 3),
        "identical_ids": ids["zoo"] == ids["tokenizers"] == ids["tiktoken"],
    }

    lib = zoo.load(args.lib, pretrained=True)
    part = blocks(args.lib_mb)
    lib_mb = sum(len(t.encode("utf-8")) for t in part) / 1e6
    lib_hf = lib.hf_tokenizer
    lib.encode(part[0]), lib_hf.encode(part[0])
    fast_s, fast_ids = timed(lib.encode, part)
    slow_s, slow_ids = timed(lambda t: lib_hf.encode(t, add_special_tokens=False).ids, part)
    result["lib"] = {
        "tokenizer": args.lib,
        "vocab_size": lib.vocab_size,
        "megabytes": round(lib_mb, 3),
        "mb_per_s": {
            "zoo (aho-corasick)": round(lib_mb / fast_s, 2),
            "tokenizers (trie regex)": round(lib_mb / slow_s, 2),
        },
        "identical_ids": fast_ids == slow_ids,
    }
    from benchmarks import text_engines

    part = {"fortunes, 12 languages": texts[: max(1, int(args.engines_mb * 1e6) >> 16)]}
    cl100k, source = text_engines.cl100k_candidates()
    result["engines"] = {
        "megabytes": round(sum(len(t.encode("utf-8")) for t in part["fortunes, 12 languages"]) / 1e6, 3),
        args.tokenizer: text_engines.compare(
            text_engines.bpe_candidates(args.tokenizer), "tokenizers", part, args.repeats
        ),
        "cl100k_base": {"source": source, **text_engines.compare(cl100k, "tiktoken", part, args.repeats)},
        args.unigram: text_engines.compare(
            text_engines.unigram_candidates(args.unigram), "tokenizers", part, args.repeats
        ),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
