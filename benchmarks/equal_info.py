"""Equal-Info Windows (Lester et al. 2024, https://arxiv.org/abs/2404.03626) at small scale: compression and
learnability.

1. Compression on held-out fortunes in 12 languages (the test split of eval/text-compression.yaml): bytes per token
   and bits per byte of Equal-Info Windows (window 32 / 64 / 128 bits, 8- or 16-bit tokens) against bytes, the zoo's
   bpe-32k and gzip -9; plus where an EIW window's bits go (M1's information, the end-of-window symbol, padding).
   Every held-out EIW sequence is decoded back and compared with its text.
2. Learnability: the same small GPT (M2) trained on EIW tokens (64-bit windows, 8-bit tokens), on bytes and on
   bpe-32k ids of the same training text, at equal compute measured as **equal steps x tokens**: the same number of
   steps of the same batch of the same number of tokens through the same transformer body (only the embedding and
   output layers differ with the vocabulary). Reported: held-out bits per byte = total cross-entropy over the
   held-out tokens / the bytes they cover, for two seeds.

    OMP_NUM_THREADS=1 python benchmarks/equal_info.py --out eval/results/equal-info

M1 is weights/eiw-m1 (``zoo train recipes/text/eiw-m1.yaml``).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo  # noqa: E402
from zoo.data import load_dataset  # noqa: E402
from zoo.generators import GPT  # noqa: E402
from zoo.generators.equal_info import EqualInfoTokenizer  # noqa: E402
from zoo.hub import sha256_of  # noqa: E402
from zoo.pretrained import atomic_write_text  # noqa: E402
from zoo.text.base import text_to_bytes  # noqa: E402

WINDOWS = (32, 64, 128)


def eiw(m1: Path, window_bits: int, token_bits: int) -> EqualInfoTokenizer:
    return EqualInfoTokenizer.from_pretrained(m1, window_bits=window_bits, token_bits=token_bits)


def window_budget(tok: EqualInfoTokenizer, texts: list[str]) -> dict:
    """Where the bits of the texts' windows go, per byte: M1's information content of the bytes (what an ideal
    coder without windows would spend), the end-of-window symbols, and the rest (zero padding, coder rounding)."""
    started = time.perf_counter()
    rows = [tok.windows(text) for text in texts]
    seconds = time.perf_counter() - started
    flat = [w for windows in rows for w in windows]
    total = sum(len(text_to_bytes(t)) for t in texts)
    eow = tok.eow_bits * sum(w.closed for w in flat)  # EOW has the fixed probability 2^-eow_bits
    info = sum(w.info_bits for w in flat) - eow
    return {
        "ids": [[t for w in windows for t in tok._tokens_of(w.words)] for windows in rows],
        "windows": len(flat),
        "bytes_per_window": total / len(flat),
        "eow_windows": sum(w.closed for w in flat),
        "eow_windows_not_last": sum(w.closed for windows in rows for w in windows[:-1]),
        # candidates the reader would have misread (the padding decodes further): the writer's check refused them
        "windows_with_refusals": sum(w.refused > 0 for w in flat),
        "m1_bits_per_byte": info / total,
        "eow_bits_per_byte": eow / total,
        "padding_bits_per_byte": (len(flat) * tok.window_bits - info - eow) / total,
        "bits_per_byte": len(flat) * tok.window_bits / total,
        "encode_kb_per_s": total / 1000 / seconds,
    }


def compression(args, heldout: list[str]) -> list[dict]:
    raw = sum(len(text_to_bytes(t)) for t in heldout)
    rows = []
    byte_tok = zoo.load("byte")
    rows.append({"tokenizer": "byte", "vocab": 256, "bytes_per_token": 1.0, "bits_per_byte": 8.0})
    assert sum(len(ids) for ids in byte_tok.encode(heldout)) == raw
    bpe = zoo.load("bpe-32k", pretrained=True)
    tokens = sum(len(ids) for ids in bpe.encode(heldout))
    rows.append({"tokenizer": "bpe-32k", "vocab": bpe.vocab_size, "bytes_per_token": raw / tokens,
                 "bits_per_byte": tokens * math.log2(bpe.vocab_size) / raw})  # fmt: skip
    whole = len(gzip.compress("".join(heldout).encode("utf-8", "surrogatepass"), 9, mtime=0))
    per_record = sum(len(gzip.compress(text_to_bytes(t), 9, mtime=0)) for t in heldout)
    rows.append({"tokenizer": "gzip -9, whole held-out text", "vocab": 256, "bytes_per_token": raw / whole,
                 "bits_per_byte": 8 * whole / raw})  # fmt: skip
    rows.append({"tokenizer": "gzip -9, per record", "vocab": 256, "bytes_per_token": raw / per_record,
                 "bits_per_byte": 8 * per_record / raw})  # fmt: skip
    for window_bits in WINDOWS:
        key = {"window_bits": window_bits, "heldout": args.heldout, "decode_check": args.decode_check,
               "m1": sha256_of(args.m1 / "model.safetensors")}  # fmt: skip
        cached = _cache_path(args, key)
        if cached.is_file():
            rows += json.loads(cached.read_text())["rows"]
            continue
        tok = eiw(args.m1, window_bits, 16)
        budget = window_budget(tok, heldout)
        # every held-out text for the study's window; --decode-check of them for the others
        checked = budget.pop("ids")[: None if window_bits == args.window_bits else args.decode_check]
        started = time.perf_counter()
        decoded = tok.decode(checked)
        decode_s = time.perf_counter() - started
        wrong = sum(a != b for a, b in zip(decoded, heldout))
        decoded_bytes = sum(len(text_to_bytes(t)) for t in heldout[: len(checked)])
        for token_bits in (8, 16):
            rows.append({"tokenizer": f"eiw-w{window_bits}-{ {8: 'v256', 16: 'v65k'}[token_bits]}",
                         "vocab": 2**token_bits,
                         "bytes_per_token": raw * token_bits / (budget["windows"] * window_bits),
                         **budget, "decode_kb_per_s": decoded_bytes / 1000 / decode_s, "decoded_records": len(checked),
                         "decode_mismatches": wrong})  # fmt: skip
        atomic_write_text(cached, json.dumps({"key": key, "rows": rows[-2:]}, indent=2) + "\n")
        print(f"  eiw w{window_bits}: {budget['bits_per_byte']:.3f} bits/byte, {wrong} mismatches in {len(checked)} "
              "records decoded", flush=True)
    return rows


def _cache_path(args, key: dict) -> Path:
    """Where a finished piece of the study is kept, named by the hash of everything it depends on."""
    return args.cache / (hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16] + ".json")


# -- learnability ------------------------------------------------------------------------------------------------
def streams(tokenizer_name: str, args, train: list[str], heldout: list[str]) -> tuple[list[int], list[int], int]:
    """``(train ids, held-out ids, vocabulary)``, cached (EIW tokens take M1 steps to write)."""
    key = {"streams": tokenizer_name, "train": args.train, "heldout": args.heldout, "window_bits": args.window_bits}
    if tokenizer_name == "eiw":
        key["m1"] = sha256_of(args.m1 / "model.safetensors")
    path = _cache_path(args, key)
    if path.is_file():
        record = json.loads(path.read_text())
        return record["train"], record["heldout"], record["vocab"]
    train_ids, heldout_ids, vocab = _encode_streams(tokenizer_name, args, train, heldout)
    atomic_write_text(path, json.dumps({"key": key, "train": train_ids, "heldout": heldout_ids, "vocab": vocab}))
    return train_ids, heldout_ids, vocab


def _encode_streams(tokenizer_name: str, args, train: list[str], heldout: list[str]) -> tuple[list, list, int]:
    """bpe-32k keeps only the ids the two texts use (a smaller softmax, the same bits: an id neither text uses would
    only be given mass to waste)."""
    if tokenizer_name == "byte":
        return list(b"".join(map(text_to_bytes, train))), list(b"".join(map(text_to_bytes, heldout))), 256
    if tokenizer_name == "eiw":
        tok = eiw(args.m1, args.window_bits, 8)
        rows = [tok.encode(train), tok.encode(heldout)]
        return [i for r in rows[0] for i in r], [i for r in rows[1] for i in r], tok.vocab_size
    bpe = zoo.load("bpe-32k", pretrained=True)
    a, b = ([i for r in bpe.encode(texts) for i in r] for texts in (train, heldout))
    used = {old: new for new, old in enumerate(sorted(set(a) | set(b)))}
    return [used[i] for i in a], [used[i] for i in b], len(used)


@torch.no_grad()
def heldout_bits(model: GPT, ids: list[int], context: int) -> float:
    """Total cross-entropy (bits) of every held-out token, the stream cut into context-length chunks."""
    model.eval()
    stream, total = torch.tensor(ids), 0.0
    for start in range(0, len(stream), context * 16):
        block = stream[start : start + context * 16]
        full = block[: len(block) // context * context].view(-1, context)
        for chunk in [full, block[full.numel() :][None]]:
            if chunk.numel():
                logits = model(chunk).flatten(0, 1)
                total += torch.nn.functional.cross_entropy(logits, chunk.flatten(), reduction="sum").item()
    model.train()
    return total / math.log(2)


def train_m2(vocab: int, stream: list[int], args, seed: int, evaluate) -> list[tuple[int, float]]:
    """Train M2 on random windows of ``stream``; returns ``evaluate(model)`` every ``--eval-every`` steps and at
    the end."""
    model = GPT(vocab, context_length=args.context, dim=args.dim, depth=args.depth, heads=args.heads, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, args.steps // 20)
    def factor(step: int) -> float:  # linear warmup, cosine decay to a tenth
        return min(1.0, (step + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(step / args.steps, 1))))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, factor)
    data = torch.tensor(stream)
    model.train()
    curve = []
    for step in range(args.steps):
        starts = torch.randint(0, len(data) - args.context, (args.batch,), generator=generator)
        batch = torch.stack([data[s : s + args.context] for s in starts.tolist()])
        loss = model.training_losses({"ids": batch}, step)["loss"]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            curve.append((step + 1, evaluate(model)))
    return curve


def learnability(args, train: list[str], heldout: list[str]) -> list[dict]:
    """M2 on each tokenization and seed; each run's row is cached under ``--cache`` by its settings, so an
    interrupted study resumes (and the baselines can run before M1 is trained)."""
    raw = sum(len(text_to_bytes(t)) for t in heldout)
    rows = []
    settings = {k: getattr(args, k) for k in ("train", "heldout", "window_bits", "steps", "batch", "context", "dim",
                                              "depth", "heads", "lr", "eval_every")}  # fmt: skip
    for name in args.tokens:
        encoded = None
        for seed in args.seeds:
            key = {"tokens": name, "seed": seed, **settings}
            if name == "eiw":
                key["m1"] = sha256_of(args.m1 / "model.safetensors")
            path = _cache_path(args, key)
            if path.is_file():
                rows.append(json.loads(path.read_text())["row"])
            else:
                started = time.perf_counter()
                encoded = encoded or streams(name, args, train, heldout)
                train_ids, heldout_ids, vocab = encoded
                encode_s = time.perf_counter() - started
                curve = train_m2(vocab, train_ids, args, seed,
                                 lambda model: heldout_bits(model, heldout_ids, args.context) / raw)  # noqa: B023
                best_step, best = min(curve, key=lambda point: point[1])
                row = {"tokens": f"eiw-w{args.window_bits}-v256" if name == "eiw" else name, "seed": seed,
                       "vocab": vocab, "train_tokens": len(train_ids), "heldout_tokens": len(heldout_ids),
                       "heldout_bytes_per_token": raw / len(heldout_ids), "bits_per_byte": curve[-1][1],
                       "best_bits_per_byte": best, "best_step": best_step, "curve": curve,
                       "uniform_bits_per_byte": len(heldout_ids) * math.log2(vocab) / raw,
                       "tokens_seen": args.steps * args.batch * args.context,
                       "train_s": time.perf_counter() - started - encode_s, "encode_s": encode_s}  # fmt: skip
                atomic_write_text(path, json.dumps({"key": key, "row": row}, indent=2) + "\n")
                rows.append(row)
            print(f"  M2 on {rows[-1]['tokens']} seed {seed}: {rows[-1]['bits_per_byte']:.3f} bits/byte", flush=True)
    return rows


# -- report --------------------------------------------------------------------------------------------------------
def markdown(result: dict) -> str:
    a = result["args"]
    lines = [f"Command: `{result['command']}` ({result['seconds']:.0f} s, {result['machine']})", "",
             f"Held-out: {result['heldout_records']} records ({result['heldout_bytes']:,} bytes) of "
             f"fortunes:lang=all,split=test, seed 0.", "",
             "| tokenizer | vocab | bytes/token | bits/byte | M1 info | EOW | padding + coder | EOW windows "
             "(not last) | misread candidates refused | bytes/window | decode mismatches |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in result["compression"]:
        extra = ["", "", "", "", "", "", ""]
        if "windows" in r:
            extra = [f"{r['m1_bits_per_byte']:.3f}", f"{r['eow_bits_per_byte']:.3f}",
                     f"{r['padding_bits_per_byte']:.3f}",
                     f"{r['eow_windows']} of {r['windows']} ({r['eow_windows_not_last']})",
                     f"{r['windows_with_refusals']} windows" if "windows_with_refusals" in r else "not counted",
                     f"{r['bytes_per_window']:.2f}", f"{r['decode_mismatches']} of {r['decoded_records']}"]  # fmt: skip
        lines.append(f"| {r['tokenizer']} | {r['vocab']:,} | {r['bytes_per_token']:.3f} | {r['bits_per_byte']:.3f} | "
                     + " | ".join(extra) + " |")  # fmt: skip
    lines += ["", f"Learnability: M2 = GPT (dim {a['dim']}, depth {a['depth']}, heads {a['heads']}, context "
              f"{a['context']} tokens), {a['steps']} steps x batch {a['batch']} x {a['context']} tokens each, "
              f"lr {a['lr']}; training text {result['train_records']} records ({result['train_bytes']:,} bytes) of "
              "fortunes:lang=all,split=train.", "",
              "| tokens | seed | vocab | train tokens | held-out bytes/token | M2 held-out bits/byte, final | best "
              "(step) | uniform over the vocabulary |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in result["learnability"]:
        lines.append(f"| {r['tokens']} | {r['seed']} | {r['vocab']:,} | {r['train_tokens']:,} | "
                     f"{r['heldout_bytes_per_token']:.3f} | {r['bits_per_byte']:.3f} | {r['best_bits_per_byte']:.3f} "
                     f"({r['best_step']}) | {r['uniform_bits_per_byte']:.3f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--m1", type=Path, default=Path("weights/eiw-m1"))
    parser.add_argument("--heldout", type=int, default=100, help="held-out records")
    parser.add_argument("--train", type=int, default=300, help="training records for M2")
    parser.add_argument("--window-bits", type=int, default=64, help="EIW window for the learnability study")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--dim", type=int, default=96)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--eval-every", type=int, default=50, help="held-out bits per byte every N M2 steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--decode-check", type=int, default=30,
                        help="held-out records decoded back for the windows other than --window-bits (all for it)")
    parser.add_argument("--tokens", nargs="+", default=["eiw", "byte", "bpe-32k"], help="M2 tokenizations")
    parser.add_argument("--skip-compression", action="store_true")
    parser.add_argument("--skip-learnability", action="store_true")
    parser.add_argument("--cache", type=Path, default=Path("runs/equal-info"), help="finished M2 runs, by settings")
    parser.add_argument("--out", type=Path, default=Path("eval/results/equal-info"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # EIW tokens need bit-identical M1 passes; one thread is also fastest on a shared CPU
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    started = time.perf_counter()
    heldout = load_dataset("fortunes", lang="all", split="test", limit=args.heldout).texts
    train = load_dataset("fortunes", lang="all", split="train", limit=args.train).texts
    print(f"compression on {len(heldout)} held-out records", flush=True)
    result = {"command": command, "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread",
              "heldout_records": len(heldout), "heldout_bytes": sum(len(text_to_bytes(t)) for t in heldout),
              "train_records": len(train), "train_bytes": sum(len(text_to_bytes(t)) for t in train),
              "compression": [] if args.skip_compression else compression(args, heldout)}  # fmt: skip
    result["learnability"] = [] if args.skip_learnability else learnability(args, train, heldout)
    result["seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    atomic_write_text(args.out.with_suffix(".md"), markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
