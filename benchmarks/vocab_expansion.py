"""Vocabulary expansion in miniature (after Mundra et al. 2024, https://arxiv.org/abs/2407.05841).

A byte-level BPE is trained on English fortunes and a tiny GPT (``zoo.generators.GPT``) on English with it.
The BPE is then *expanded* with tokens learnt on German fortunes (``zoo.text.expand.expand_bpe``: old ids keep
their meaning, new ids are appended), and the GPT's token table gets rows for the added ids by each
initialisation of ``zoo.transfer.expand`` (mean, multivariate, FVT, CW2V, K-Tokeniser-style groups). Training
continues on German for the same number of steps from each. Reported: fertility of the base vs the expanded
tokenizer; bits per byte on held-out German over the continued steps and on held-out English right after the
expansion (old rows are copied, so only the softmax's spread over the added ids changes English); and the base
model trained on for the same steps with its own tokenizer, as the no-expansion reference.

    python benchmarks/vocab_expansion.py --out eval/results/vocab-expansion.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import corpora  # noqa: E402
from embedding_transfer import bits_per_byte, plot, train  # noqa: E402

from zoo.analysis.vocab import load_vocabulary  # noqa: E402
from zoo.generators import GPT  # noqa: E402
from zoo.pretrained import atomic_write_text  # noqa: E402
from zoo.text.hf import BPETokenizer  # noqa: E402
from zoo.transfer.expand import INITS, expand_model, expand_tokenizer, fertility  # noqa: E402


def pycountry_groups(lang: str) -> dict[str, list[str]]:
    """Built-in groups of related terms by semantic type: pycountry's country, language and currency names."""
    import pycountry

    from zoo.data.text import CATALOG_DOMAINS, read_mo

    names = {"iso3166-1": "country", "iso639-3": "language", "iso4217": "currency"}
    root = Path(pycountry.LOCALES_DIR)
    groups = {}
    for domain in CATALOG_DOMAINS:
        path = root / lang / "LC_MESSAGES" / f"{domain}.mo"
        if path.is_file():
            groups[names[domain]] = sorted(set(read_mo(path).values()))
    return groups


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="en")
    parser.add_argument("--target", default="de")
    parser.add_argument("--merges", type=int, default=1000, help="merges of the base BPE")
    parser.add_argument("--new-tokens", type=int, default=500)
    parser.add_argument("--train-bytes", type=int, default=1_000_000)
    parser.add_argument("--heldout-bytes", type=int, default=40_000)
    parser.add_argument("--pretrain-steps", type=int, default=600)
    parser.add_argument("--steps", type=int, default=150, help="continued-training steps per initialisation")
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--cw2v-epochs", type=int, default=2)
    parser.add_argument("--cw2v-pairs", type=int, default=300_000, help="skip-gram pairs per CW2V epoch")
    parser.add_argument("--context", type=int, default=96)
    parser.add_argument("--dim", type=int, default=96)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("eval/results/vocab-expansion.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread runs several times faster than two on a shared, oversubscribed CPU
    torch.manual_seed(0)
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    started = time.perf_counter()

    def config(vocab_size: int) -> dict:
        return dict(vocab_size=vocab_size, context_length=args.context, dim=args.dim, depth=args.depth,
                    heads=args.heads)  # fmt: skip

    source_train, source_heldout = corpora.split_pools(corpora.category_records(args.source), (0.9, 0.1), seed=0)
    target_train, target_heldout = corpora.split_pools(corpora.category_records(args.target), (0.9, 0.1), seed=0)
    source_text = corpora.take_bytes(source_train, args.train_bytes, seed=0)
    target_text = corpora.take_bytes(target_train, args.train_bytes, seed=0)
    heldout = {
        args.target: corpora.take_bytes(target_heldout, args.heldout_bytes, seed=0),
        args.source: corpora.take_bytes(source_heldout, args.heldout_bytes, seed=0),
    }
    base = BPETokenizer(vocab_size=257 + args.merges)
    base.fit([source_text])
    merged, added = expand_tokenizer(base, [target_text], args.new_tokens)
    base_vocab, merged_vocab = load_vocabulary(base), load_vocabulary(merged)
    fertilities = {
        lang: {"base": fertility(base, [text]), "expanded": fertility(merged, [text])} for lang, text in heldout.items()
    }
    print(f"added {len(added)} tokens; fertility {json.dumps(fertilities)}", flush=True)

    def scorer(tokenizer, lang: str):
        ids = torch.tensor(tokenizer.encode(heldout[lang]))
        size = len(heldout[lang].encode())
        return lambda model: bits_per_byte(model, ids, size, args.context)

    base_model = GPT(**config(base.vocab_size), seed=0)
    train(base_model, torch.tensor(base.encode(source_text)), args.pretrain_steps, args, seed=1)
    base_scores = {lang: scorer(base, lang)(base_model) for lang in heldout}
    print(f"pretrained on {args.source}: {json.dumps(base_scores)}", flush=True)

    groups = pycountry_groups(args.target)
    stream = torch.tensor(merged.encode(target_text))
    target_score, source_score = scorer(merged, args.target), scorer(merged, args.source)
    curves: dict[str, list[tuple[int, float]]] = {}
    english: dict[str, float] = {}
    counts: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    for init in INITS:
        tic = time.perf_counter()
        options = {"epochs": args.cw2v_epochs, "rank": 256, "max_pairs": args.cw2v_pairs} if init == "cw2v" else {}
        model, summary = expand_model(
            base_model, base_vocab, merged_vocab, init, texts=[target_text], groups=groups, seed=0, **options
        )
        seconds[init] = time.perf_counter() - tic
        counts[init] = {k: v["initialised"] for k, v in summary["tables"].items()}
        english[init] = source_score(model)
        curves[init] = train(model, stream, args.steps, args, seed=2, evaluate=target_score)
        print(init, counts[init], f"en {english[init]:.3f}", curves[init][0], curves[init][-1], flush=True)
    reference = GPT(**config(base.vocab_size), seed=0)
    reference.load_state_dict(base_model.state_dict())
    label = "no expansion (base tokenizer)"
    curves[label] = train(reference, torch.tensor(base.encode(target_text)), args.steps, args, seed=2,
                          evaluate=scorer(base, args.target))  # fmt: skip
    english[label] = base_scores[args.source]
    print(label, curves[label][-1], flush=True)
    wall = time.perf_counter() - started

    png = args.out.with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    plot(curves, png, f"{args.source} GPT, BPE expanded with {len(added)} {args.target} tokens")
    steps = [s for s, _ in next(iter(curves.values()))]
    src, tgt = args.source, args.target
    lines = [
        "# Vocabulary expansion: fertility and the small GPT's loss per initialisation of the added rows",
        "",
        f"Base: byte-level BPE with {args.merges} merges trained on {src} fortunes ({base.vocab_size} ids). "
        f"Expanded: `zoo.text.expand.expand_bpe` appends {len(added)} tokens learnt on {tgt} fortunes "
        f"(asked for {args.new_tokens}); ids 0..{base.vocab_size - 1} keep their meaning.",
        "",
        "## Fertility (tokens per whitespace word, held-out text; lower is better)",
        "",
        "| held-out text | base | expanded |",
        "|---|---|---|",
    ]
    lines += [f"| {lang} | {f['base']:.3f} | {f['expanded']:.3f} |" for lang, f in fertilities.items()]
    lines += [
        "",
        "## The GPT after expansion",
        "",
        f"A {args.depth}-layer, {args.dim}-wide GPT (tied embeddings, context {args.context}) is trained for "
        f"{args.pretrain_steps} steps on {src} with the base BPE, then expanded by `zoo.transfer.expand_model` "
        f"with each initialisation and trained on {tgt} (expanded tokenizer) for {args.steps} steps (batch "
        f"{args.batch} x {args.context}, AdamW, lr {args.lr:g}, warmup + cosine). Bits per byte = total next-token "
        "NLL / ln 2 / UTF-8 bytes of held-out records never trained on (comparable across tokenizers); step 0 is "
        "the expanded model before any training on the new language.",
        "",
        f"Before expansion the base model reads held-out {src} at {base_scores[src]:.3f} and {tgt} at "
        f"{base_scores[tgt]:.3f} bits/byte.",
        "",
        f"| init | {src} bits/byte right after expansion | {tgt} at step 0 | {tgt} at step {args.steps} | "
        "rows initialised | init time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, curve in curves.items():
        made = json.dumps(counts[name]["token_embedding.weight"]) if name in counts else "-"
        took = f"{seconds[name]:.1f}" if name in seconds else "-"
        lines.append(f"| {name} | {english[name]:.3f} | {curve[0][1]:.3f} | {curve[-1][1]:.3f} | {made} | {took} |")
    lines += [
        "",
        f"{tgt} held-out bits/byte over the continued steps:",
        "",
        "| step | " + " | ".join(curves) + " |",
        "|---|" + "---|" * len(curves),
    ]
    for i, step in enumerate(steps):
        lines.append(f"| {step} | " + " | ".join(f"{curve[i][1]:.3f}" for curve in curves.values()) + " |")
    lines += [
        "",
        "Initialisations: `mean` = mean of the old rows; `multivariate` = N(mu, 1e-5 Sigma) of the old rows "
        "(Hewitt); `fvt` = mean of the rows of the base pieces of each added token; `cw2v` = softmax(A)·E "
        f"trained by skip-gram on the {tgt} training text (window 5, 5 negatives, rank 256, {args.cw2v_epochs} "
        f"epochs of {args.cw2v_pairs} pairs); `groups` = K-Tokeniser-style, with pycountry's {tgt} country, "
        "language and currency names as the groups (added tokens in no name fall back to fvt).",
        "",
        f"![{tgt} bits per byte over steps]({png.name})",
        "",
        "Produced by:",
        "",
        "```",
        command,
        "```",
        "",
        f"Wall time: {wall / 60:.1f} min on 2 shared CPU cores.",
        "",
    ]
    atomic_write_text(args.out, "\n".join(lines))
    record = {"fertility": fertilities, "base": base_scores, "english_after_expansion": english, "curves": curves,
              "counts": counts, "init_seconds": seconds, "added": len(added)}  # fmt: skip
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(record, indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
