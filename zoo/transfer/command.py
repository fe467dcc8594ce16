"""``zoo transfer``: initialise the token embeddings of a model for a new tokenizer.

    zoo transfer model.safetensors --old OLD_TOKENIZER --new NEW_TOKENIZER -o new.safetensors \\
        [--method fvt|normal|multivariate|focus|wechsel|zett] [--key NAME ...] [--target-text FILE ...] [--seed N]
        [--source-text FILE ... | --source-fasttext BIN] [--target-fasttext BIN] [--dictionary SPEC]
        [--hypernet DIR] [--zett-all-rows]

Overlapping tokens keep their rows; the others are initialised by ``--method`` (see ``zoo.transfer``).
WECHSEL aligns fastText spaces of the two languages over ``--dictionary`` (``pycountry:de``, ``cldr:de``,
``identical``, a TSV file; joined with ``+``). ZeTT predicts rows with a hypernetwork trained for the model
(``--hypernet``: a folder from ``python -m zoo.transfer.zett_command``, e.g. the shipped
``weights/zett-adt-gpt-bpe32k``; see ``zoo.transfer.zett``).
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
    # spelled out rather than imported: zoo.transfer.embeddings imports torch, which `zoo --help` should not wait for
    parser.add_argument(
        "--method", default="fvt", choices=["fvt", "normal", "multivariate", "focus", "wechsel", "zett"]
    )
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
        help="target-language text for FOCUS's and WECHSEL's fastText models (repeatable)",
    )
    parser.add_argument(
        "--source-text",
        action="append",
        default=None,
        metavar="FILE",
        help="source-language text for WECHSEL's source fastText model (repeatable)",
    )
    parser.add_argument("--source-fasttext", metavar="BIN", help="WECHSEL: a source-language fastText .bin model")
    parser.add_argument("--target-fasttext", metavar="BIN", help="WECHSEL: a target-language fastText .bin model")
    parser.add_argument(
        "--dictionary",
        default="identical",
        help="WECHSEL's bilingual dictionary: pycountry:LANG, cldr:LANG, identical or a TSV file, joined by '+'",
    )
    parser.add_argument(
        "--wechsel-all-rows",
        action="store_true",
        help="WECHSEL as published: recompute overlapping tokens' rows too (only specials are copied)",
    )
    parser.add_argument(
        "--hypernet",
        metavar="DIR",
        help="ZeTT: the hypernetwork trained for this model (shipped: weights/zett-adt-gpt-bpe32k)",
    )
    parser.add_argument(
        "--zett-all-rows",
        action="store_true",
        help="ZeTT as published: predict overlapping tokens' rows too (only special tokens are copied)",
    )
    parser.add_argument("--seed", type=int, default=0)


def _read_texts(items: list[str] | None, flag: str) -> list[str] | None:
    if not items:
        return None
    texts = []
    for item in items:
        path = Path(item)
        if not path.is_file():
            raise ZooError(f"{flag} {item}: no such file")
        texts.append(path.read_text(encoding="utf-8", errors="replace"))
    return texts


def _run_zett(args: argparse.Namespace):
    from zoo.transfer.zett import load_hypernet, transfer_file_zett

    if not args.hypernet:
        raise ZooError(
            "--method zett needs --hypernet DIR: a ZeTT hypernetwork trained for this model (the shipped "
            "weights/zett-adt-gpt-bpe32k serves weights/adt-gpt-bpe32k; train others with "
            "`python -m zoo.transfer.zett_command`)"
        )
    return transfer_file_zett(
        args.embeddings,
        args.old,
        args.new,
        args.output,
        load_hypernet(args.hypernet),
        keys=args.key,
        copy_overlap=not args.zett_all_rows,
        seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    from zoo.transfer import transfer_file

    texts = _read_texts(args.target_text, "--target-text")
    options = {}
    if args.method == "wechsel":
        options = {
            "source_texts": _read_texts(args.source_text, "--source-text"),
            "source_word_vectors": args.source_fasttext,
            "target_word_vectors": args.target_fasttext,
            "dictionary": args.dictionary,
            "wechsel_copy_overlap": not args.wechsel_all_rows,
        }
    if not Path(args.embeddings).is_file():
        raise ZooError(f"{args.embeddings}: no such safetensors file")
    if args.method == "zett":
        results = _run_zett(args)
    else:
        results = transfer_file(
            args.embeddings,
            args.old,
            args.new,
            args.output,
            method=args.method,
            keys=args.key,
            target_texts=texts,
            seed=args.seed,
            **options,
        )
    summary = {
        key: {"rows": int(r.embeddings.shape[0]), "copied": r.copied, "initialised": r.initialised}
        for key, r in results.items()
    }
    print(json.dumps({"output": str(args.output), "method": args.method, "tables": summary}))
    return 0
