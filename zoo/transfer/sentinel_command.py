"""``zoo sentinel``: key a tokenizer (and optionally a zoo GPT) with a passkey, SentinelLMs style.

    ZOO_SENTINEL_KEY=... zoo sentinel TOKENIZER -o enc-tokenizer [--model GPT_FOLDER --model-out enc-model]
        [--scheme keyed|paper] [--glide-steps 2] [--no-fingerprint] [--key-file FILE]

The passkey comes from ``--key-file`` (its first line) or ``$ZOO_SENTINEL_KEY``, never from the command line, where
shell history and process lists would keep it. Neither output folder stores it (``zoo.text.sentinel``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from zoo.errors import ZooError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Permute a tokenizer's ids with a passkey; optionally key a zoo GPT's embeddings to match."
    parser.add_argument("tokenizer", help="the text tokenizer to wrap (registry name or checkpoint folder)")
    parser.add_argument("-o", "--output", required=True, help="folder for the SentinelTokenizer")
    parser.add_argument("--model", default=None, help="a zoo GPT checkpoint folder trained on the tokenizer's ids")
    parser.add_argument("--model-out", default=None, help="folder for the keyed GPT (with --model)")
    parser.add_argument("--scheme", default="keyed", choices=["keyed", "paper"],
                        help="keyed: scrypt + keyed BLAKE2b (default); paper: the reference's seed (not secure)")
    parser.add_argument("--glide-steps", type=int, default=2, help="reflection + translation steps (paper: 3, 10)")
    parser.add_argument("--no-fingerprint", action="store_true", help="store no key fingerprint in the folder")
    parser.add_argument("--no-glide", action="store_true", help="permute the model's rows only")
    parser.add_argument("--key-file", default=None, help="file whose first line is the passkey")


def _passkey(args: argparse.Namespace) -> str | None:
    if args.key_file is None:
        return None  # SentinelTokenizer reads $ZOO_SENTINEL_KEY or says how to give a key
    path = Path(args.key_file)
    if not path.is_file():
        raise ZooError(f"--key-file {args.key_file}: no such file")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0]:
        raise ZooError(f"--key-file {args.key_file}: the first line is empty; expected the passkey there")
    return lines[0]


def run(args: argparse.Namespace) -> int:
    from zoo.text.sentinel import SentinelTokenizer

    if (args.model is None) != (args.model_out is None):
        raise ZooError("--model and --model-out go together: the GPT to key and the folder to write it to")
    tokenizer = SentinelTokenizer(args.tokenizer, key=_passkey(args), scheme=args.scheme,
                                  glide_steps=args.glide_steps, store_fingerprint=not args.no_fingerprint)
    tokenizer.save_pretrained(args.output)
    summary = {"tokenizer": str(args.output), "scheme": args.scheme, "vocab_size": tokenizer.vocab_size,
               "fingerprint": None if args.no_fingerprint else tokenizer.fingerprint}
    if args.model is not None:
        from zoo.generators.gpt import GPT
        from zoo.transfer.sentinel import encrypt_gpt

        keyed = encrypt_gpt(GPT.from_pretrained(args.model), tokenizer, transform=not args.no_glide)
        glide_steps = 0 if args.no_glide else args.glide_steps
        metadata = {"sentinel": {"scheme": args.scheme, "glide_steps": glide_steps}}
        keyed.save_pretrained(args.model_out, metadata=metadata)
        summary["model"] = str(args.model_out)
    print(json.dumps(summary))
    return 0
