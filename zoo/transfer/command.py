"""``zoo transfer``: initialise the token embeddings of a model for a new tokenizer.

    zoo transfer model.safetensors --old OLD_TOKENIZER --new NEW_TOKENIZER -o new.safetensors \\
        [--method fvt|normal|multivariate|focus] [--key NAME ...] [--target-text FILE ...] [--seed N]

Overlapping tokens keep their rows; the others are initialised by ``--method`` (see ``zoo.transfer``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from zoo.errors import ZooError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Initialise embeddings for a new vocabulary: copy overlapping tokens, then a method."
    parser.add_argument("embeddings", help="safetensors file holding the embedding matrix (or a whole model)")
    parser.add_argument("--old", required=True, help="the tokenizer the embeddings were trained with")
    parser.add_argument("--new", required=True, help="the new tokenizer (tokenizer.json, folder or registry name)")
    parser.add_argument("-o", "--output", required=True, help="safetensors file to write")
    parser.add_argument("--method", default="fvt", choices=["fvt", "normal", "multivariate", "focus"])
    parser.add_argument(
        "--key",
        action="append",
        default=None,
        help="tensor(s) to transfer (default: every tensor whose first dimension is the old vocabulary size)",
    )
    parser.add_argument(
        "--target-text",
        action="append",
        default=None,
        metavar="FILE",
        help="target-language text for FOCUS's fastText model (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from zoo.transfer import transfer_file

    texts = None
    if args.target_text:
        texts = []
        for item in args.target_text:
            path = Path(item)
            if not path.is_file():
                raise ZooError(f"--target-text {item}: no such file")
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
    if not Path(args.embeddings).is_file():
        raise ZooError(f"{args.embeddings}: no such safetensors file")
    results = transfer_file(
        args.embeddings,
        args.old,
        args.new,
        args.output,
        method=args.method,
        keys=args.key,
        target_texts=texts,
        seed=args.seed,
    )
    summary = {
        key: {"rows": int(r.embeddings.shape[0]), "copied": r.copied, "initialised": r.initialised}
        for key, r in results.items()
    }
    print(json.dumps({"output": str(args.output), "method": args.method, "tables": summary}))
    return 0
