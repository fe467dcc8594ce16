"""Text encode engines side by side: MB/s on one thread and whether the ids equal the reference's.

Vocabularies (all built offline):

- ``bpe-32k`` (zoo's byte-level BPE, ``tokenizer.json``): ``tokenizers`` (reference), zoo's path,
  tiktoken, kitoken. rs-bpe and bpe-openai take only the encodings they ship, not this one.
- ``cl100k_base`` from the ranks bpe-openai ships (or ``$TIKTOKEN_CACHE_DIR`` when cached there):
  tiktoken (reference), rs-bpe, bpe-openai, kitoken.
- ``unigram-32k`` (byte-level Unigram): ``tokenizers`` (reference), zoo's path, SentencePiece built
  from the same pieces and scores (``zoo.text.engines.sentencepiece_unigram``), kitoken.

Texts: every fortune record in 12 languages joined into ~64 KB blocks (``--mb`` of them), and
pycountry's country names in 30 locales in 16 scripts (``pycountry-parallel``), also in blocks.
One ``encode`` per block, fastest of ``--repeats`` interleaved rounds; ``RAYON_NUM_THREADS=1`` before any engine loads.

    python -m benchmarks.text_engines [--mb 4] [--repeats 3]

Writes ``benchmarks/results/text_engines.json`` and prints it.
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
from zoo.text import engines  # noqa: E402

LOCALES_30 = "ar bg bn cs de el es fa fi fr he hi hu hy id it ja ka km ko lo pl pt ru sv ta th tr uk zh_CN".split()


def in_blocks(texts: list[str], size: int = 1 << 16, limit_mb: float | None = None) -> list[str]:
    out, current, length = [], [], 0
    for text in texts:
        current.append(text)
        length += len(text.encode("utf-8"))
        if length >= size:
            out.append("\n".join(current))
            current, length = [], 0
            if limit_mb is not None and len(out) * size >= limit_mb * 1e6:
                return out
    if current:
        out.append("\n".join(current))
    return out


def corpora(limit_mb: float) -> dict[str, list[str]]:
    fortunes = load_dataset("fortunes", lang="all", split="all").texts
    names = load_dataset("pycountry-parallel", langs="+".join(LOCALES_30), split="all", include_english=False).texts
    return {
        "fortunes, 12 languages": in_blocks(fortunes, limit_mb=limit_mb),
        "country names, 30 locales": in_blocks(names),
    }


def compare(candidates: dict, reference: str, texts: dict[str, list[str]], repeats: int) -> dict:
    """MB/s per engine per text (fastest of ``repeats`` rounds, engines interleaved within each round, so a burst
    of other load hits them alike), and how many blocks' ids differ from ``reference``'s."""
    table = {}
    for label, blocks in texts.items():
        megabytes = sum(len(b.encode("utf-8")) for b in blocks) / 1e6
        runnable = {name: encode for name, encode in candidates.items() if not isinstance(encode, str)}
        ids = {name: [list(encode(b)) for b in blocks] for name, encode in runnable.items()}  # warm-up, compared
        seconds = dict.fromkeys(runnable, float("inf"))
        for _ in range(repeats):
            for name, encode in runnable.items():
                start = time.perf_counter()
                for block in blocks:
                    encode(block)
                seconds[name] = min(seconds[name], time.perf_counter() - start)
        rows = {}
        for name, encode in candidates.items():
            if isinstance(encode, str):  # a reason the engine cannot run this vocabulary
                rows[name] = {"unavailable": encode}
                continue
            rows[name] = {
                "mb_per_s": round(megabytes / seconds[name], 2),
                "vs_reference": round(seconds[reference] / seconds[name], 2),
                "blocks_with_other_ids": sum(a != b for a, b in zip(ids[name], ids[reference], strict=True)),
            }
        table[label] = {"megabytes": round(megabytes, 3), "blocks": len(blocks), "engines": rows}
    return table


def bpe_candidates(name: str) -> dict:
    tok = zoo.load(name, pretrained=True)
    hf = tok.hf_tokenizer
    kit = engines.kitoken_engine(hf.to_str())
    encoding = tok.tiktoken_encoding
    return {
        "tokenizers": lambda t: hf.encode(t, add_special_tokens=False).ids,
        f"zoo ({tok.engine})": tok.encode,
        "tiktoken": encoding.encode_ordinary if encoding is not None else "tiktoken cannot run this vocabulary",
        "kitoken": kit.encode if kit else "kitoken is not installed or refuses the file",
        "rs-bpe": "takes only the encodings it ships (cl100k_base, o200k_base)",
        "bpe-openai": "takes only the encodings it ships (cl100k_base, o200k_base, voyage3_base)",
    }


def cl100k_candidates() -> tuple[dict, str]:
    import tiktoken

    shipped = engines.shipped_ranks("cl100k_base")
    if shipped is None:
        raise SystemExit("cl100k_base: install bpe-openai (its package ships the ranks) or cache the file")
    ranks, pattern = shipped
    specials = {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}  # fmt: skip
    encoding = tiktoken.Encoding("cl100k_base", pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)
    candidates = {"tiktoken": encoding.encode_ordinary}
    for label, engine in (
        ("rs-bpe", engines.rs_bpe_engine("cl100k_base")),
        ("bpe-openai", engines.bpe_openai_engine("cl100k_base")),
        ("kitoken", engines.kitoken_ranks_engine(ranks, pattern)),
    ):
        candidates[label] = engine.encode if engine else f"{label} is not installed"
    candidates["tokenizers"] = "no tokenizer.json offline"
    return candidates, "ranks shipped in the bpe-openai package (cl100k_base.tiktoken.gz)"


def unigram_candidates(name: str) -> dict:
    tok = zoo.load(name, pretrained=True)
    hf = tok.hf_tokenizer
    sp, why = engines.sentencepiece_unigram(json.loads(hf.to_str()))
    kit = engines.kitoken_engine(hf.to_str())
    return {
        "tokenizers": lambda t: hf.encode(t, add_special_tokens=False).ids,
        "zoo (tokenizers)": tok.encode,
        "sentencepiece": sp.encode if sp else why,
        "kitoken": kit.encode if kit else "kitoken is not installed or refuses the file",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=4.0, help="MB of fortunes (64 KB blocks)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bpe", default="bpe-32k")
    parser.add_argument("--unigram", default="unigram-32k")
    parser.add_argument("--out", default="benchmarks/results/text_engines.json")
    args = parser.parse_args()

    texts = corpora(args.mb)
    cl100k, source = cl100k_candidates()
    result = {
        "threads": 1,
        "cpus": len(os.sched_getaffinity(0)),
        args.bpe: compare(bpe_candidates(args.bpe), "tokenizers", texts, args.repeats),
        "cl100k_base": {"source": source, **compare(cl100k, "tiktoken", texts, args.repeats)},
        args.unigram: compare(unigram_candidates(args.unigram), "tokenizers", texts, args.repeats),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
