"""``zoo zett-train``: train a ZeTT hypernetwork for a zoo GPT (``python -m zoo.transfer.zett_command`` works too).

    zoo zett-train weights/adt-gpt-bpe32k -o weights/zett-adt-gpt-bpe32k \\
        [--data fortunes:lang=en+de+zh,split=train] [--steps 600] [--seed 0] ...

The LM is a TextLM folder (its tokenizer is the base tokenizer) or a GPT folder with ``--base-tokenizer``. The folder
written holds ``config.json`` + ``model.safetensors`` of a ``zoo.transfer.zett:ZettHypernet``, which
``zoo transfer --method zett --hypernet DIR`` applies.
"""

from __future__ import annotations

import argparse
import json
import time

from zoo.errors import ZooError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Train a ZeTT hypernetwork (embeddings for any tokenizer) for a frozen zoo GPT."
    parser.add_argument("lm", help="a TextLM folder (e.g. weights/adt-gpt-bpe32k) or a zoo GPT folder")
    parser.add_argument("-o", "--output", required=True, help="folder to write the hypernetwork to")
    parser.add_argument("--base-tokenizer", help="the GPT's tokenizer (default: the TextLM's own)")
    parser.add_argument("--data", default="fortunes:lang=en+de+zh,split=train", help="training text (dataset spec)")
    parser.add_argument("--limit", type=int, default=None, help="use at most this many texts")
    group = parser.add_argument_group("hypernetwork")
    group.add_argument("--hidden", type=int, default=128)
    group.add_argument("--depth", type=int, default=2)
    group.add_argument("--heads", type=int, default=4)
    group.add_argument("--max-pieces", type=int, default=7, help="base pieces kept per token (the paper's 7)")
    group.add_argument("--no-residual", action="store_true", help="predict rows from scratch, not as FVT + delta")
    group = parser.add_argument_group("sampled tokenizers")
    group.add_argument("--pool", type=int, default=4, help="Unigram models trained once, each on a random share")
    group.add_argument("--pool-share", type=float, default=0.3, help="share of the texts each pool model sees")
    group.add_argument("--min-vocab", type=int, default=1024)
    group.add_argument("--max-vocab", type=int, default=4096)
    group = parser.add_argument_group("training")
    group.add_argument("--steps", type=int, default=600)
    group.add_argument("--identity-steps", type=int, default=0, help="warm-up steps reproducing base rows")
    group.add_argument("--batch", type=int, default=16)
    group.add_argument("--context", type=int, default=None, help="tokens per window (default: the GPT's context)")
    group.add_argument("--lr", type=float, default=1e-3)
    group.add_argument("--lexical-weight", type=float, default=0.5, help="weight of the auxiliary lexical loss")
    group.add_argument("--max-tokens", type=int, default=1024, help="softmax subsample of the sampled vocabulary")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")


def load_base(lm_path: str, base_tokenizer: str | None):
    """(GPT module, base tokenizer spec) from a TextLM or GPT folder."""
    from zoo.generators.gpt import GPT
    from zoo.generators.text_lm import TextLM
    from zoo.pretrained import from_folder

    model = from_folder(lm_path)
    if isinstance(model, TextLM):
        if model.gpt is None:
            raise ZooError(f"{lm_path}: a TextLM over a transformers model; ZeTT here trains for a zoo GPT")
        return model.gpt, base_tokenizer or model.config["tokenizer"]
    if isinstance(model, GPT):
        if base_tokenizer is None:
            raise ZooError(f"{lm_path}: a bare GPT folder names no tokenizer; pass --base-tokenizer")
        return model, base_tokenizer
    raise ZooError(f"{lm_path}: holds a {type(model).__name__}; expected a TextLM or GPT folder")


def run(args: argparse.Namespace) -> int:
    import torch

    from zoo.analysis.vocab import load_vocabulary
    from zoo.data import load_dataset
    from zoo.transfer.zett import ZettHypernet
    from zoo.transfer.zett_sampling import TokenizerSampler
    from zoo.transfer.zett_train import ZettTraining, gpt_tables, train_hypernet, training_summary

    torch.set_num_threads(args.threads)
    gpt, tokenizer = load_base(args.lm, args.base_tokenizer)
    base_vocab = load_vocabulary(tokenizer)
    if base_vocab.size != gpt.vocab_size:
        raise ZooError(f"--base-tokenizer has {base_vocab.size} ids, the GPT's table {gpt.vocab_size} rows")
    texts = [t for t in load_dataset(args.data).texts if t]
    texts = texts[: args.limit] if args.limit else texts
    started = time.perf_counter()
    sampler = TokenizerSampler(texts, pool_size=args.pool, pool_vocab=args.max_vocab, pool_share=args.pool_share,
                               min_vocab=args.min_vocab, max_vocab=args.max_vocab, seed=args.seed)
    rows, tables = gpt_tables(gpt)
    hypernet = ZettHypernet(base_vocab.size, rows.shape[1], hidden=args.hidden, depth=args.depth, heads=args.heads,
                            max_pieces=args.max_pieces, residual=not args.no_residual, tables=tables, seed=args.seed)
    config = ZettTraining(steps=args.steps, batch=args.batch, context=args.context or gpt.context_length, lr=args.lr,
                          lexical_weight=args.lexical_weight, identity_steps=args.identity_steps,
                          max_tokens=args.max_tokens, seed=args.seed)
    records = train_hypernet(hypernet, gpt, base_vocab, texts, sampler, config,
                             log=lambda r: print(json.dumps(r), flush=True))
    metadata = {
        "base_lm": str(args.lm),
        "base_tokenizer": str(tokenizer),
        "data": args.data,
        "sampling": {"pool": args.pool, "pool_share": args.pool_share, "min_vocab": args.min_vocab,
                     "max_vocab": args.max_vocab},
        "parameters": sum(p.numel() for p in hypernet.parameters()),
        **training_summary(config, records, time.perf_counter() - started),
    }
    hypernet.save_pretrained(args.output, metadata=metadata)
    print(json.dumps({"output": str(args.output), **metadata}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.transfer.zett_command")
    configure(parser)
    try:
        return run(parser.parse_args(argv))
    except ZooError as err:
        parser.exit(2, f"error: {err}\n")


if __name__ == "__main__":
    raise SystemExit(main())
