"""How well a learned byte-to-word pooling tokenizer (docs/pooling.md) reconstructs held-out text from its codes.

For each tokenizer, on the held-out texts (default: the test split of English fortunes, which the shipped weights
never saw):

* **exact segments**: the share of segments whose code alone spells them back (the decoder's greedy spelling of the
  code is the segment), i.e. the segments written as one id; and **byte accuracy**: the share of the segments' bytes
  that the code's spelling has right at the same position;
* a **bound** for reference: the share of held-out segments among the K most frequent segments of the training split
  (what a vocabulary of the K commonest training words would spell; a code spells one string);
* **codebook use**: distinct codes used on the held-out segments, and the perplexity of their distribution;
* the lossless encoding: **bytes per token**, ids per segment, and a round trip of every held-out text
  (``decode(encode(text)) == text``); plus encode speed;
* for learned boundaries: precision and recall of the predicted segment starts against the word rule's.

    OMP_NUM_THREADS=1 python benchmarks/pooling_reconstruction.py pooling-ws-fortunes pooling-learned-fortunes

Names are registry entries (loaded with their shipped weights) or ``save_pretrained`` folders.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo  # noqa: E402
from zoo.data import load_dataset  # noqa: E402
from zoo.pretrained import atomic_write_text  # noqa: E402
from zoo.quantize import codebook_perplexity  # noqa: E402
from zoo.text.base import text_to_bytes  # noqa: E402
from zoo.text.pooling import PoolingTokenizer  # noqa: E402
from zoo.text.pooling.segments import rule_byte_segments, segment_starts  # noqa: E402


def load(name: str) -> PoolingTokenizer:
    tok = zoo.load(name, pretrained=True) if name in zoo.list_tokenizers() else zoo.load(name)
    if not isinstance(tok, PoolingTokenizer):
        raise SystemExit(f"{name}: not a PoolingTokenizer ({type(tok).__name__})")
    return tok.eval()


def byte_hits(spelling: bytes, segment: bytes) -> int:
    return sum(a == b for a, b in zip(spelling, segment))


def frequency_bound(train: list[str], held_out: list[bytes], codes: int, max_bytes: int) -> float:
    """Share of held-out segments among the ``codes`` most frequent rule segments of the training texts."""
    counts = collections.Counter(s for text in train for s in rule_byte_segments(text, max_bytes))
    top = {segment for segment, _ in counts.most_common(codes)}
    return sum(s in top for s in held_out) / max(1, len(held_out))


def boundary_agreement(tok: PoolingTokenizer, texts: list[str]) -> dict:
    """Precision / recall of the tokenizer's segment starts against the word rule's (both cut at max bytes)."""
    hits = predicted = expected = 0
    for text in texts:
        ours = set(segment_starts(tok.segments(text)))
        rule = set(segment_starts(rule_byte_segments(text, tok.max_bytes)))
        hits, predicted, expected = hits + len(ours & rule), predicted + len(ours), expected + len(rule)
    return {"boundary_precision": hits / max(1, predicted), "boundary_recall": hits / max(1, expected)}


def measure(tok: PoolingTokenizer, texts: list[str], train: list[str]) -> dict:
    started = time.perf_counter()
    encoded = tok.encode(texts)
    seconds = time.perf_counter() - started
    total_bytes = sum(len(text_to_bytes(t)) for t in texts)
    spelling = tok.spellings()
    segments, codes = [], []
    for text in texts:
        encoding = tok.encode_segments(text)
        segments += encoding.segments
        codes += encoding.ids.tolist()
    exact = sum(spelling[k] == s for k, s in zip(codes, segments))
    hits = sum(byte_hits(spelling[k], s) for k, s in zip(codes, segments))
    n_tokens = sum(len(row) for row in encoded)
    row = {
        "texts": len(texts),
        "bytes": total_bytes,
        "segments": len(segments),
        "codebook_size": tok.num_codes,
        "exact_segments": exact / max(1, len(segments)),
        "byte_accuracy": hits / max(1, sum(len(s) for s in segments)),
        "exact_segments_bound": frequency_bound(train, segments, tok.num_codes, tok.max_bytes),
        "codes_used": len(set(codes)),
        "code_perplexity": float(codebook_perplexity(torch.tensor(codes), tok.num_codes)),
        "tokens": n_tokens,
        "bytes_per_token": total_bytes / max(1, n_tokens),
        "ids_per_segment": n_tokens / max(1, len(segments)),
        "round_trip_exact": tok.decode(encoded) == texts,
        "encode_bytes_per_s": total_bytes / seconds,
    }
    if tok.boundary == "learned":
        row.update(boundary_agreement(tok, texts))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+", help="registry entries or save_pretrained folders")
    parser.add_argument("--data", default="fortunes:en", help="text dataset spec (default fortunes:en)")
    parser.add_argument("--split", default="test", help="held-out split (default test)")
    parser.add_argument("--limit", type=int, default=None, help="first N held-out texts only")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    texts = load_dataset(args.data, split=args.split, limit=args.limit).texts
    train = load_dataset(args.data, split="train").texts
    results = {}
    for name in args.names:
        results[name] = measure(load(name), texts, train)
    keys = ["exact_segments", "exact_segments_bound", "byte_accuracy", "codes_used", "code_perplexity",
            "bytes_per_token", "ids_per_segment", "round_trip_exact", "encode_bytes_per_s"]  # fmt: skip
    extra = ["boundary_precision", "boundary_recall"]
    keys += [k for k in extra if any(k in r for r in results.values())]
    print(f"{args.data} split={args.split}: {len(texts)} texts, {next(iter(results.values()))['bytes']} bytes")
    print("| tokenizer | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, row in results.items():
        cells = []
        for key in keys:
            value = row.get(key, "")
            cells.append(f"{value:.4f}" if isinstance(value, float) and value < 100 else
                         f"{value:.0f}" if isinstance(value, float) else str(value))  # fmt: skip
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
