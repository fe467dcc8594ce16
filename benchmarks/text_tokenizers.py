"""Two comparisons on the built-in multilingual corpus: LiB vs BPE at the same vocabulary size, and
dynamic (batch-level) merging over the shipped BPE in several languages.

- LiB vs BPE: the shipped ``lib`` vocabulary and a byte-level BPE trained here to exactly the same
  size on the same training texts (the ``text-mix`` of ``recipes/text/_multilingual.yaml``, train
  split); both read the held-out test split. Reported: tokens per byte and token types used (LiB's
  paper claims fewer of both).
- Dynamic merging: batches of 32 held-out fortunes per language, encoded with ``bpe-32k`` and merged
  until no pair occurs twice (and with at most 32 merges); reported: the mean sequence-length
  reduction per language.

    python -m benchmarks.text_tokenizers

Writes ``benchmarks/results/text_tokenizers.json`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import zoo
from zoo.data import load_dataset
from zoo.text.dynamic import DynamicMerger
from zoo.text.hf import BPETokenizer

MIX = {"name": "text-mix", "sources": ["fortunes:lang=all", "stdlib-code"]}


def usage(tok, texts: list[str]) -> dict:
    ids = tok.encode(texts)
    total_bytes = sum(len(t.encode("utf-8")) for t in texts)
    tokens = sum(map(len, ids))
    return {
        "vocab_size": tok.vocab_size,
        "tokens": tokens,
        "tokens_per_byte": round(tokens / total_bytes, 4),
        "types_used": len({i for row in ids for i in row}),
    }


def lib_vs_bpe(lib_name: str) -> dict:
    lib = zoo.load(lib_name, pretrained=True)
    train = load_dataset(MIX, split="train").texts
    test = load_dataset(MIX, split="test").texts
    started = time.perf_counter()
    bpe = BPETokenizer(vocab_size=lib.vocab_size, special_tokens=[])
    bpe.fit(train)
    fit_s = time.perf_counter() - started
    quotes = [t for t, item in zip(test, load_dataset(MIX, split="test")) if item["lang"] != "python"]
    return {
        "corpus": {"train": "text-mix(fortunes:lang=all, stdlib-code) split=train", "test_items": len(test)},
        "lib": usage(lib, test),
        "bpe_same_size": {**usage(bpe, test), "fit_seconds": round(fit_s, 1)},
        "quotes_only": {"lib": usage(lib, quotes), "bpe_same_size": usage(bpe, quotes)},
    }


def dynamic(base_name: str, languages: list[str], batches: int, batch_size: int = 32) -> dict:
    base = zoo.load(base_name, pretrained=True)
    out = {}
    for lang in languages:
        texts = load_dataset("fortunes", lang=lang, split="test").texts
        full, capped, merges = [], [], []
        for k in range(min(batches, len(texts) // batch_size)):
            batch = texts[k * batch_size : (k + 1) * batch_size]
            merged = DynamicMerger(base).merge(batch)
            full.append(merged.reduction)
            merges.append(len(merged.merges))
            capped.append(DynamicMerger(base, max_merges=32).merge(batch).reduction)
        out[lang] = {
            "batches": len(full),
            "reduction": round(float(np.mean(full)), 4),
            "reduction_32_merges": round(float(np.mean(capped)), 4),
            "merges_per_batch": round(float(np.mean(merges)), 1),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", default="lib")
    parser.add_argument("--base", default="bpe-32k")
    parser.add_argument("--languages", default="en,de,ru,zh,es,it,pl,cs")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/results/text_tokenizers.json")
    args = parser.parse_args()
    result = {
        "lib_vs_bpe": lib_vs_bpe(args.lib),
        "dynamic": {
            "base": args.base,
            "batch_size": 32,
            "languages": dynamic(args.base, args.languages.split(","), args.batches),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
