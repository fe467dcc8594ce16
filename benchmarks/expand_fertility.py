"""Fertility of an English BPE before and after vocabulary expansion with a new language (``zoo.text.expand``).

    python benchmarks/expand_fertility.py --base-vocab 8000 --langs de ru --new 1000 4000

The base is a byte-level BPE trained on English fortunes (train split). For each new language it is expanded with
``--new`` tokens learnt from that language's train split, and compared on the test splits (never trained on) of
the new language and of English: fertility (tokens per word, the ``fertility`` metric), bytes per token, and the
share of English test texts whose ids are exactly the base's. A BPE of the same size as the expanded one trained
from scratch on the new language alone is the reference for what that many tokens can do for it (it forgets
English; the expanded one keeps every old id). Prints a Markdown table; ``--json`` writes the rows too.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from zoo.data.text import fortunes
from zoo.pretrained import atomic_write_text
from zoo.text.expand import expand_bpe, fertility_table
from zoo.text.hf import BPETokenizer


def trained(texts: list[str], vocab: int) -> BPETokenizer:
    tok = BPETokenizer(vocab_size=vocab)
    tok.fit(texts)
    return tok


def rows_for(lang: str, base: BPETokenizer, new_sizes: list[int], english: list[str]) -> list[dict]:
    train = fortunes(lang, split="train").texts
    test = fortunes(lang, split="test").texts
    base_ids = base.encode(english)
    candidates: dict[str, tuple[object, str]] = {"base (English)": (base, "")}
    for n in new_sizes:
        start = time.perf_counter()
        grown = expand_bpe(base, train, n)
        seconds = time.perf_counter() - start
        note = f"{len(grown.added_ids)} appended in {seconds:.1f} s; skipped {grown.skipped}"
        candidates[f"base + {len(grown.added_ids)} {lang}"] = (grown.tokenizer, note)
    scratch = trained(train, base.vocab_size + max(new_sizes))
    candidates[f"{lang} only, from scratch"] = (scratch, "reference: no English tokens kept")
    new = fertility_table({name: tok for name, (tok, _) in candidates.items()}, test)
    old = fertility_table({name: tok for name, (tok, _) in candidates.items()}, english)
    rows = []
    for (name, (tok, note)), on_new, on_en in zip(candidates.items(), new, old):
        same = sum(a == b for a, b in zip(tok.encode(english), base_ids)) / len(english)
        rows.append({"lang": lang, "tokenizer": name, "vocab_size": tok.vocab_size,
                     f"fertility_{lang}": on_new["fertility"], f"bytes_per_token_{lang}": on_new["bytes_per_token"],
                     "fertility_en": on_en["fertility"], "en_texts_same_ids": same, "note": note})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| new language | tokenizer | vocab | fertility (new, test) | bytes/token (new) | fertility (en, test) "
             "| en texts with the base's ids |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lang = r["lang"]
        lines.append(f"| {lang} | {r['tokenizer']} | {r['vocab_size']} | {r[f'fertility_{lang}']:.3f} | "
                     f"{r[f'bytes_per_token_{lang}']:.2f} | {r['fertility_en']:.3f} | {r['en_texts_same_ids']:.1%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-vocab", type=int, default=8000)
    parser.add_argument("--langs", nargs="+", default=["de", "ru"])
    parser.add_argument("--new", nargs="+", type=int, default=[1000, 4000])
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    start = time.perf_counter()
    base = trained(fortunes("en", split="train").texts, args.base_vocab)
    english = fortunes("en", split="test").texts
    rows = [row for lang in args.langs for row in rows_for(lang, base, args.new, english)]
    print(markdown(rows))
    for r in rows:
        if r["note"]:
            print(f"- {r['tokenizer']}: {r['note']}")
    print(f"({time.perf_counter() - start:.0f} s in all)")
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
