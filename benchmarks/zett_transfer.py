"""Zero-shot tokenizer transfer in miniature: the frozen base GPT read through an unseen tokenizer, no training.

The base model is the shipped ``weights/adt-gpt-bpe32k`` (a 3-layer, 64-wide zoo GPT over ``bpe-32k``, trained on
fortunes in en+de+zh, train split). Its token table is replaced for a tokenizer it has never seen, trained on the
*val* split (which neither the GPT nor the hypernetworks' sampled tokenizers saw): a byte-level Unigram of 6,000
pieces (outside the 1,024-4,096 range the hypernetworks were trained on) and a byte-level BPE of 3,000 ids (another
model type), plus the shipped ``unigram-32k`` (byte-level Unigram, 32k ids, trained on the text-mix train split).
The new rows come from ZeTT hypernetworks (``--hypernet``, one per training seed), FVT, FOCUS (fastText
on the val text through the new tokenizer) and N(mean, std) ("random", two seeds). The GPT then scores held-out
*test* text with no further training: bits per UTF-8 byte (comparable across tokenizers) and nats per token. The
base tokenizer with the base rows is the ceiling.

    python -m zoo.transfer.zett_command weights/adt-gpt-bpe32k -o weights/zett-adt-gpt-bpe32k --steps 800 --seed 0
    python -m zoo.transfer.zett_command weights/adt-gpt-bpe32k -o /tmp/zett-s1 --steps 800 --seed 1
    python benchmarks/zett_transfer.py --hypernet weights/zett-adt-gpt-bpe32k --hypernet /tmp/zett-s1
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.analysis.merges import train_byte_level_bpe  # noqa: E402
from zoo.analysis.vocab import load_vocabulary  # noqa: E402
from zoo.data import load_dataset  # noqa: E402
from zoo.pretrained import atomic_write_text  # noqa: E402
from zoo.transfer import transfer_embeddings  # noqa: E402
from zoo.transfer.zett import load_hypernet, predict_embeddings  # noqa: E402
from zoo.transfer.zett_command import load_base  # noqa: E402
from zoo.transfer.zett_sampling import train_unigram  # noqa: E402
from zoo.transfer.zett_train import gpt_tables, stream_nll  # noqa: E402


def split_text(lang: str, split: str, limit_bytes: int | None, seed: int = 0) -> str:
    texts = load_dataset("fortunes", lang=lang, split=split, seed=seed).texts
    random.Random(seed).shuffle(texts)
    text = "".join(texts)
    return text.encode()[:limit_bytes].decode(errors="ignore") if limit_bytes else text


def score(gpt, encode, rows: torch.Tensor, text: str, context: int) -> dict:
    ids = torch.tensor(encode(text), dtype=torch.long)
    nll, scored = stream_nll(gpt, ids, rows, context)
    covered = len(text.encode()) * scored / len(ids)  # bytes of the windows scored (all but a short tail)
    return {"bits_per_byte": nll / math.log(2) / covered, "nats_per_token": nll / scored, "tokens": len(ids)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lm", default="weights/adt-gpt-bpe32k")
    parser.add_argument("--hypernet", action="append", default=[], help="ZeTT hypernetwork folder (repeatable)")
    parser.add_argument("--lang", default="en+de+zh")
    parser.add_argument("--unigram", type=int, default=6000, help="pieces of the unseen Unigram tokenizer")
    parser.add_argument("--bpe", type=int, default=3000, help="ids of the unseen byte-level BPE")
    parser.add_argument("--registry", action="append", default=None,
                        help="shipped tokenizers to transfer to as well (default: unigram-32k)")
    parser.add_argument("--heldout-bytes", type=int, default=100_000)
    parser.add_argument("--random-seeds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/zett_transfer.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    started = time.perf_counter()

    gpt, base_spec = load_base(args.lm, None)
    base_vocab = load_vocabulary(base_spec)
    base_rows = gpt_tables(gpt)[0].float()
    context = gpt.context_length
    tokenizer_text = split_text(args.lang, "val", None)
    heldout = split_text(args.lang, "test", args.heldout_bytes)
    hypernets = {}
    for path in args.hypernet:
        net = load_hypernet(path)
        hypernets[f"zett (seed {net.config['seed']}{'' if net.residual else ', not residual'})"] = net
    meta = {name: net._zoo_metadata for name, net in hypernets.items()}

    results: dict = {"base tokenizer (ceiling)": score(gpt, base_vocab.encode, base_rows, heldout, context)}
    print("base", results["base tokenizer (ceiling)"], flush=True)
    unseen = {
        f"unigram-{args.unigram} (val)": train_unigram([tokenizer_text], args.unigram),
        f"bpe-{args.bpe} (val)": train_byte_level_bpe([tokenizer_text], args.bpe - 256),
        **{f"{name} (registry)": name for name in (["unigram-32k"] if args.registry is None else args.registry)},
    }
    table: dict[str, dict] = {}
    details: dict[str, dict] = {}
    for tok_name, tokenizer in unseen.items():
        vocab = load_vocabulary(tokenizer)
        encode = vocab.encode
        runs: dict[str, torch.Tensor] = {}
        counts: dict[str, dict] = {}
        for name, net in hypernets.items():
            for all_rows in (False, True):
                label = name + (" all rows" if all_rows else "")
                result = predict_embeddings(net, base_rows, base_vocab, vocab, copy_overlap=not all_rows)
                runs[label], counts[label] = result.embeddings, {"copied": result.copied, **result.initialised}
        for method in ("fvt", "focus"):
            result = transfer_embeddings(base_rows, base_vocab, vocab, method, target_texts=[tokenizer_text], seed=0)
            runs[method], counts[method] = result.embeddings, {"copied": result.copied, **result.initialised}
        for seed in range(args.random_seeds):
            result = transfer_embeddings(base_rows, base_vocab, vocab, "normal", seed=seed)
            runs[f"random (seed {seed})"] = result.embeddings
            counts[f"random (seed {seed})"] = {"copied": result.copied, **result.initialised}
        table[tok_name] = {}
        for label, rows in runs.items():
            table[tok_name][label] = score(gpt, encode, rows, heldout, context)
            print(tok_name, label, counts[label], table[tok_name][label], flush=True)
        details[tok_name] = {"vocab_size": vocab.size, "rows": counts}
    seconds = time.perf_counter() - started

    labels = list(next(iter(table.values())))
    ceiling = results["base tokenizer (ceiling)"]
    def cell(value: dict) -> str:
        return f"{value['bits_per_byte']:.3f} ({value['nats_per_token']:.3f})"

    lines = [
        "| initialisation | " + " | ".join(f"{t}, {details[t]['vocab_size']} ids" for t in table) + " |",
        "|---|" + "---|" * len(table),
        "| base tokenizer bpe-32k, its own rows (ceiling) | " + " | ".join(cell(ceiling) for _ in table) + " |",
    ]
    lines += [f"| {label} | " + " | ".join(cell(table[t][label]) for t in table) + " |" for label in labels]
    print("\n".join(lines))
    record = {
        "command": command,
        "seconds": round(seconds, 1),
        "lm": args.lm,
        "base_tokenizer": str(base_spec),
        "heldout": {"lang": args.lang, "split": "test", "bytes": len(heldout.encode())},
        "unseen_tokenizers": details,
        "ceiling": ceiling,
        "results": table,
        "hypernets": meta,
        "markdown": lines,
    }
    atomic_write_text(args.out, json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
