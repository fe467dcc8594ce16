"""``zoo expand``: extend a BPE with new-language tokens, and a model's token tables with rows for them.

    zoo expand BASE NEW_TEXT_OR_TOKENIZER --out DIR [--new-tokens N] [--model MODEL_FOLDER --init METHOD]
        [--text FILE ...] [--groups FILE] [--seed N]

NEW_TEXT_OR_TOKENIZER is new-language text (a file: a BPE learnt on it is merged into BASE, every old id keeping
its meaning), a new-language byte-level BPE (a checkpoint folder or registry name, merged the same way) or an
already expanded tokenizer (whose first ids are BASE's: used as it is).
Writes DIR/tokenizer (a zoo checkpoint, exported like any other), DIR/model (with ``--model``: the model with
rows for the added ids by ``--init``) and DIR/expand.json (sizes, fertility on the text before and after).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from zoo.errors import ZooError
from zoo.transfer.command import _read_texts

INIT_CHOICES = ["mean", "multivariate", "fvt", "cw2v", "groups"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Extend a BPE with new-language tokens (old ids unchanged) and a model with rows for them."
    parser.add_argument("base", help="the base BPE tokenizer (checkpoint folder or registry name, e.g. bpe-32k)")
    parser.add_argument("new", metavar="new_text_or_tokenizer", help="new-language text file, or an expanded tokenizer")
    parser.add_argument("--out", required=True, help="output folder (tokenizer/, model/, expand.json)")
    parser.add_argument("--new-tokens", type=int, default=1000, help="tokens to add when learning from text")
    parser.add_argument("--model", help="a model folder over BASE's ids (e.g. a zoo GPT) to give rows for the new ids")
    parser.add_argument("--init", default="fvt", choices=INIT_CHOICES, help="how the added rows are initialised")
    parser.add_argument(
        "--text", action="append", default=None, metavar="FILE", help="new-language text (repeatable; for cw2v, "
        "fertility, and when NEW is a tokenizer)"
    )  # fmt: skip
    parser.add_argument("--groups", metavar="FILE", help="groups of related terms for --init groups (JSON/YAML/TSV)")
    parser.add_argument("--cw2v-epochs", type=int, default=5)
    parser.add_argument("--cw2v-rank", type=int, default=1024, help="rank of CW2V's factorised mixing logits")
    parser.add_argument("--seed", type=int, default=0)


def _is_text_file(spec: str) -> bool:
    path = Path(spec)
    return path.is_file() and path.suffix != ".json"


def _extends(base_tok, new_tok) -> bool:
    """True when ``new_tok`` is already an expansion of ``base_tok`` (more ids, the first ones the base's)."""
    from zoo.analysis.vocab import load_vocabulary
    from zoo.transfer.expand import added_ids

    if new_tok.vocab_size <= base_tok.vocab_size:
        return False
    try:
        added_ids(load_vocabulary(base_tok), load_vocabulary(new_tok))
    except ZooError:
        return False
    return True


def run(args: argparse.Namespace) -> int:
    from zoo.analysis.vocab import load_vocabulary
    from zoo.loading import load_tokenizer
    from zoo.transfer.expand import added_ids, expand_model, expand_tokenizer, fertility

    if args.new_tokens < 1:
        raise ZooError(f"--new-tokens must be >= 1, got {args.new_tokens}")
    if args.init in ("cw2v", "groups") and not args.model:
        raise ZooError(f"--init {args.init} initialises a model's rows: pass --model MODEL_FOLDER")
    if args.init == "groups" and not args.groups:
        raise ZooError("--init groups needs --groups FILE (groups of related terms)")
    base_tok = load_tokenizer(args.base, modality="text", owner="base")
    texts = _read_texts(args.text, "--text") or []
    if _is_text_file(args.new):
        texts = _read_texts([args.new], "new text") + texts
        merged_tok, _ = expand_tokenizer(base_tok, texts, args.new_tokens, seed=args.seed)
    else:
        new_tok = load_tokenizer(args.new, modality="text", owner="new tokenizer")
        merged_tok = new_tok if _extends(base_tok, new_tok) else expand_tokenizer(base_tok, new_tok, args.new_tokens)[0]
    base, merged = load_vocabulary(base_tok), load_vocabulary(merged_tok)
    ids = added_ids(base, merged)
    out = Path(args.out)
    merged_tok.save_pretrained(out / "tokenizer")
    summary: dict = {"base": str(args.base), "base_size": base.size, "expanded_size": merged.size, "added": len(ids)}
    if texts:
        summary["fertility"] = {"base": fertility(base_tok, texts), "expanded": fertility(merged_tok, texts)}
    if args.model:
        model, tables = expand_model(
            args.model, base, merged, args.init, texts=texts, groups=args.groups, seed=args.seed,
            **({"epochs": args.cw2v_epochs, "rank": args.cw2v_rank} if args.init == "cw2v" else {}),
        )  # fmt: skip
        model.save_pretrained(out / "model", metadata={"zoo_expand": {"init": args.init, "base": str(args.base)}})
        summary["model"] = tables
    from zoo.pretrained import atomic_write_text

    atomic_write_text(out / "expand.json", json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    return 0
