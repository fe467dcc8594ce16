"""Embedding transfer in miniature (after "An Empirical Comparison of Vocabulary Expansion and
Initialization Approaches for Language Models", https://arxiv.org/abs/2407.05841).

A tiny GPT (``zoo.generators.GPT``) is trained on English fortunes with byte-level BPE A (trained on English).
Its vocabulary is then swapped for BPE B (trained on German): the token table is rewritten by
``zoo.transfer.transfer_file`` with each initialisation, and training continues on German for the same
number of steps from each. Reported: bits per byte of held-out German over the continued steps, plus a
model trained from scratch on German with B as the no-transfer reference.

    python benchmarks/embedding_transfer.py --out eval/results/embedding-transfer.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import corpora  # noqa: E402

from zoo.analysis.merges import train_byte_level_bpe  # noqa: E402
from zoo.generators import GPT  # noqa: E402
from zoo.pretrained import atomic_write_text  # noqa: E402
from zoo.transfer import transfer_file  # noqa: E402
from zoo.transfer.wechsel import align, load_dictionary, train_word_vectors  # noqa: E402

# label -> (method, extra options); "wechsel (all rows)" is the paper's setting, overlapping rows recomputed too
METHODS = {
    "fvt": ("fvt", {}),
    "focus": ("focus", {}),
    "wechsel": ("wechsel", {}),
    "wechsel (all rows)": ("wechsel", {"wechsel_copy_overlap": False}),
    "normal": ("normal", {}),
    "multivariate": ("multivariate", {}),
}


def model_config(vocab_size: int, args) -> dict:
    return dict(vocab_size=vocab_size, context_length=args.context, dim=args.dim, depth=args.depth, heads=args.heads)


@torch.no_grad()
def bits_per_byte(model: GPT, ids: torch.Tensor, num_bytes: int, context: int) -> float:
    """Total next-token NLL of the held-out stream (cut into context windows) in bits, per UTF-8 byte."""
    model.eval()
    usable = ids[: len(ids) // context * context].view(-1, context)
    nll = 0.0
    for chunk in usable.split(64):
        logits = model(chunk)
        nll += torch.nn.functional.cross_entropy(logits.flatten(0, 1), chunk.flatten(), reduction="sum").item()
    covered = num_bytes * usable.numel() / len(ids)  # bytes of the windows scored (all but a short tail)
    model.train()
    return nll / math.log(2) / covered


def train(model: GPT, stream: torch.Tensor, steps: int, args, seed: int, evaluate=None) -> list[tuple[int, float]]:
    """AdamW with warmup + cosine on random windows of ``stream``; ``evaluate(model)`` every ``--eval-every`` steps."""
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.95))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda s: min(1.0, (s + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0)))),
    )
    curve = [(0, evaluate(model))] if evaluate else []
    model.train()
    for step in range(1, steps + 1):
        starts = torch.randint(0, len(stream) - args.context, (args.batch,), generator=generator)
        batch = torch.stack([stream[s : s + args.context] for s in starts.tolist()])
        loss = model.training_losses({"ids": batch}, step)["loss"]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        if evaluate and (step % args.eval_every == 0 or step == steps):
            curve.append((step, evaluate(model)))
    return curve


def plot(curves: dict[str, list[tuple[int, float]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name, curve in curves.items():
        ax.plot([s for s, _ in curve], [b for _, b in curve], marker="o", markersize=3, label=name)
    ax.set_xlabel("training steps on the new language")
    ax.set_ylabel("bits per byte (held-out, lower is better)")
    ax.set_title(title, fontsize=10)
    ax.set_ylim(top=min(ax.get_ylim()[1], 9))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="en")
    parser.add_argument("--target", default="de")
    parser.add_argument("--merges", type=int, default=1000)
    parser.add_argument("--train-bytes", type=int, default=1_000_000)
    parser.add_argument("--heldout-bytes", type=int, default=40_000)
    parser.add_argument("--pretrain-steps", type=int, default=800)
    parser.add_argument("--steps", type=int, default=250, help="continued-training steps per initialisation")
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--context", type=int, default=96)
    parser.add_argument("--dim", type=int, default=96)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("eval/results/embedding-transfer.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread runs several times faster than two on a shared, oversubscribed CPU
    torch.manual_seed(0)
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    started = time.perf_counter()

    source_train, _ = corpora.split_pools(corpora.category_records(args.source), (0.9, 0.1), seed=0)
    target_train, target_heldout = corpora.split_pools(corpora.category_records(args.target), (0.9, 0.1), seed=0)
    source_text = corpora.take_bytes(source_train, args.train_bytes, seed=0)
    target_text = corpora.take_bytes(target_train, args.train_bytes, seed=0)
    heldout_text = corpora.take_bytes(target_heldout, args.heldout_bytes, seed=0)
    tok_a, tok_b = train_byte_level_bpe([source_text], args.merges), train_byte_level_bpe([target_text], args.merges)
    overlap = len(set(tok_a.get_vocab()) & set(tok_b.get_vocab()))
    stream_a = torch.tensor(tok_a.encode(source_text).ids)
    stream_b = torch.tensor(tok_b.encode(target_text).ids)
    heldout_b = torch.tensor(tok_b.encode(heldout_text).ids)
    heldout_bytes = len(heldout_text.encode())

    def evaluate(model: GPT) -> float:
        return bits_per_byte(model, heldout_b, heldout_bytes, args.context)

    source_model = GPT(**model_config(tok_a.get_vocab_size(), args), seed=0)
    train(source_model, stream_a, args.pretrain_steps, args, seed=1)
    source_heldout = torch.tensor(tok_a.encode(heldout_text).ids)
    source_on_target = bits_per_byte(source_model, source_heldout, heldout_bytes, args.context)
    print(
        f"pretrained on {args.source}: {args.target} held-out with tokenizer A {source_on_target:.3f} bits/byte",
        flush=True,
    )

    # WECHSEL's word vectors: fastText on each language's training text, aligned over pycountry's names and
    # the words both languages spell alike
    dictionary = f"pycountry:{args.target}+identical"
    source_vectors, target_vectors = train_word_vectors([source_text]), train_word_vectors([target_text])
    pairs = load_dictionary(dictionary, source_vectors, target_vectors)
    pairs_used = align(source_vectors, target_vectors, pairs)[1]
    wechsel_options = {
        "source_word_vectors": source_vectors,
        "target_word_vectors": target_vectors,
        "dictionary": pairs,
    }
    print(f"WECHSEL dictionary {dictionary}: {len(pairs)} pairs, {pairs_used} in both fastText models", flush=True)

    curves: dict[str, list[tuple[int, float]]] = {}
    counts: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tok_a.save(str(tmp / "a.json"))
        tok_b.save(str(tmp / "b.json"))
        source_model.save_pretrained(tmp / "source")
        for k, (label, (method, options)) in enumerate(METHODS.items()):
            if method == "wechsel":
                options = {**wechsel_options, **options}
            results = transfer_file(
                tmp / "source" / "model.safetensors",
                tmp / "a.json",
                tmp / "b.json",
                tmp / f"{k}.safetensors",
                method=method,
                target_texts=[target_text],
                seed=0,
                **options,
            )
            counts[label] = {key: {"copied": r.copied, **r.initialised} for key, r in results.items()}
            model = GPT(**model_config(tok_b.get_vocab_size(), args), seed=0)
            model.load_weights(tmp / f"{k}.safetensors")
            curves[label] = train(model, stream_b, args.steps, args, seed=2, evaluate=evaluate)
            print(label, counts[label], curves[label][0], curves[label][-1], flush=True)
    scratch = GPT(**model_config(tok_b.get_vocab_size(), args), seed=0)
    curves["scratch (no transfer)"] = train(scratch, stream_b, args.steps, args, seed=2, evaluate=evaluate)
    print("scratch", curves["scratch (no transfer)"][-1], flush=True)
    seconds = time.perf_counter() - started

    png = args.out.with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    title = f"{args.source} GPT -> {args.target} vocabulary ({args.merges} merges each, {overlap} shared tokens)"
    plot(curves, png, title)
    steps = [s for s, _ in next(iter(curves.values()))]
    lines = [
        "# Embedding transfer to a new vocabulary: bits per byte over continued training",
        "",
        f"A {args.depth}-layer, {args.dim}-wide GPT (`zoo.generators.GPT`, tied embeddings, context {args.context})",
        f"is trained for {args.pretrain_steps} steps on {args.source} fortunes with byte-level BPE A",
        f"({args.merges} merges, trained on {args.source}). Its token table is then rewritten for BPE B",
        f"({args.merges} merges, trained on {args.target}; {overlap} of {tok_b.get_vocab_size()} tokens shared",
        f"with A) by `zoo transfer`'s methods, and training continues on {args.target} for {args.steps} steps",
        f"(batch {args.batch} x {args.context} tokens, AdamW, lr {args.lr:g}, warmup + cosine) from each",
        f"initialisation. Held-out {args.target}: {heldout_bytes // 1000} KB of records never trained on.",
        "Bits per byte = total next-token NLL / ln 2 / UTF-8 bytes (comparable across",
        "tokenizers). Step 0 is the transferred model before any training on the new language.",
        "",
        f"For reference, the source model reads the {args.target} held-out text with its own tokenizer A at "
        f"{source_on_target:.3f} bits/byte.",
        "",
        "WECHSEL: fastText (CBOW, dim 100, char n-grams 3-6, 10 epochs) on each language's training text,",
        f"aligned by Procrustes over `{dictionary}` ({len(pairs)} pairs, {pairs_used} found in both models);",
        "top-10 source tokens by cosine, softmax(cos / 0.1). `wechsel` copies overlapping tokens' rows like the",
        "other methods; `wechsel (all rows)` is the paper's setting, where only special tokens are copied.",
        "",
        "| step | " + " | ".join(curves) + " |",
        "|---|" + "---|" * len(curves),
    ]
    for i, step in enumerate(steps):
        lines.append(f"| {step} | " + " | ".join(f"{curve[i][1]:.3f}" for curve in curves.values()) + " |")
    lines += ["", "Rows initialised per method (token table; `copied` = tokens shared with A):", ""]
    for method, table in counts.items():
        lines.append(f"- {method}: {json.dumps(table)}")
    lines += [
        "",
        f"![bits per byte over steps]({png.name})",
        "",
        "Produced by:",
        "",
        "```",
        command,
        "```",
        "",
        f"Wall time: {seconds / 60:.1f} min on 2 shared CPU cores.",
        "",
    ]
    atomic_write_text(args.out, "\n".join(lines))
    atomic_write_text(args.out.with_suffix(".json"), json.dumps({"curves": curves, "counts": counts}, indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
