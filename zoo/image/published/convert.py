"""An authors' checkpoint file -> a zoo checkpoint folder, once; ``zoo.load(DIR)`` then reads safetensors only.

    python -m zoo.image.published.convert vq_ds8_c2i.pt --to runs/llamagen-vq8 llamagen-vq16 \\
        --set 'vq_config={"channel_multiplier": [1, 2, 2, 4]}'

Pickled files (``.pt``, ``.pth``, ``.ckpt``, ``.bin``) are read with ``torch.load(weights_only=True)`` only:
tensors and plain containers, never code. Two globals are admitted besides: ``argparse.Namespace``, a plain
attribute bag that LlamaGen's training checkpoints store their arguments in (its unpickling sets attributes,
nothing else), and the Lightning 1.x callback classes that taming-transformers' ``.ckpt`` files key their
callback states by, read as an inert stand-in (nothing is imported from Lightning). A file that needs a full
unpickle (other Python objects beside the tensors) is refused with the reason.

A registry entry whose official file is such a pickle (LlamaGen's ``vq_ds8_c2i.pt``, the CompVis VQ's
``diffusion_pytorch_model.bin``) converts here once, on its first ``zoo.load(name, pretrained=True)``:
``base.write_converted`` writes ``FILE.zoo.safetensors`` beside the pinned download in ``$ZOO_CACHE``, recording
the source's sha256, and every later load reads that safetensors file only. The state dict is taken from
``ema``, ``model`` or ``state_dict`` when the file nests it (LlamaGen's training checkpoints keep
``model``), mapped by the family's ``convert`` and loaded strictly into the named entry's network.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from zoo.errors import ZooError
from zoo.hub import sha256_of
from zoo.image.published.base import PublishedImageTokenizer, read_authors_checkpoint


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an authors' checkpoint (``base.read_authors_checkpoint``: weights-only reads)."""
    return read_authors_checkpoint(path)


def convert_checkpoint(source: str | Path, directory: str | Path, tokenizer, **overrides) -> Path:
    """Convert ``source`` into a ``save_pretrained`` folder of ``tokenizer`` (a registry name or a published
    tokenizer object); ``overrides`` replace the entry's config (another topology of the same family)."""
    from zoo.loading import load_tokenizer

    tok = load_tokenizer(tokenizer, pretrained=False, **overrides) if isinstance(tokenizer, str) else tokenizer
    if not isinstance(tok, PublishedImageTokenizer):
        raise ZooError(f"{tokenizer!r}: expected a published image tokenizer (zoo.image.published), got "
                       f"{type(tok).__name__}")
    tok.load_converted(type(tok).convert(read_checkpoint(source)), str(source))
    metadata = {"converted_from": str(source), "source_sha256": sha256_of(source)}
    return tok.save_pretrained(directory, metadata=metadata)


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``zoo convert`` (the CLI's extension hook) and of ``python -m zoo.image.published.convert``."""
    parser.add_argument("source", help="the authors' checkpoint file")
    parser.add_argument("--to", required=True, help="the folder to write (config.json + model.safetensors)")
    parser.add_argument("tokenizer", help="the registry entry whose family and config the file fits")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="config override")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.image.published.convert", description=__doc__.splitlines()[0])
    configure(parser)
    return run(parser.parse_args(argv))


def parse_sets(items: list[str]) -> dict:
    """``--set KEY=JSON`` arguments as config overrides."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ZooError(f"--set {item!r}: expected KEY=JSON")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError as err:
            raise ZooError(f"--set {key}: not valid JSON ({err.msg} at column {err.colno})") from None
    return overrides


def run(args: argparse.Namespace) -> int:
    """Convert as ``args`` say; 0 on success, 2 (with the reason on stderr) on a refused or unreadable file."""
    try:
        folder = convert_checkpoint(args.source, args.to, args.tokenizer, **parse_sets(args.set))
    except ZooError as err:
        print(f"convert: {err}", file=sys.stderr)
        return 2
    print(f"wrote {folder} (zoo.load({str(folder)!r}))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
