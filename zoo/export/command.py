"""``zoo export NAME --format hf|tiktoken|sentencepiece OUT``: write a text tokenizer in another library's format.

The export is checked before anything is written: the files, loaded by their own library, must encode the built-in
check corpus to zoo's ids (``zoo.text.export``); otherwise it is refused in one line naming what the format cannot
express.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from zoo.text.export import FORMATS

    parser.add_argument("name", help="registry name, checkpoint folder or file:PATH of a text tokenizer")
    parser.add_argument("out", help="folder to write the files into (created if missing)")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="hf: tokenizer.json (+ tokenizer_config.json); tiktoken: tokenizer.tiktoken + "
                             "tiktoken.json; sentencepiece: tokenizer.model")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let a folder's config.json name classes outside the zoo package (it runs their code)")
    parser.add_argument("--no-verify", action="store_true",
                        help="load a folder even when a file differs from the sha256 its config.json records")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from zoo.loading import load_tokenizer
    from zoo.text.export import export

    tok = load_tokenizer(args.name, modality="text", owner="zoo export", trust_remote_code=args.trust_remote_code,
                         verify=not args.no_verify)
    label = Path(args.name.removeprefix("file:")).stem if ("/" in args.name or ":" in args.name) else args.name
    for path in export(tok, args.format, args.out, name=label):
        print(path)
    return 0
