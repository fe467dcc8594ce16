"""``zoo convert SRC NAME --to DIR``: an authors' checkpoint file -> a zoo checkpoint folder, once.

The file (LlamaGen ``.pt``, a CompVis ``.bin``, SNAC's ``pytorch_model.bin``, ...) is read with
``torch.load(weights_only=True)`` only, its keys mapped by the family of the registry entry ``NAME``, and written
as ``config.json`` + ``model.safetensors``, which ``zoo.load(DIR)`` reads without unpickling anything. Image entries
convert through ``zoo.image.published.convert``, audio codecs through ``zoo.audio.published.convert``.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="the authors' checkpoint file (.pt, .pth, .ckpt, .bin, .safetensors)")
    parser.add_argument("tokenizer", help="the registry entry the file fits (e.g. llamagen-vq16)")
    parser.add_argument("--to", required=True, help="the folder to write (config.json + model.safetensors)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="config override for another topology of the same family (image entries)")


def run(args: argparse.Namespace) -> int:
    from zoo.errors import ZooError
    from zoo.image.published.convert import parse_sets
    from zoo.registry import get

    entry = get(args.tokenizer)  # an unknown name is refused here, with the closest names
    overrides = parse_sets(args.set)
    if entry.modality == "image":
        from zoo.image.published.convert import convert_checkpoint

        folder = convert_checkpoint(args.source, args.to, args.tokenizer, **overrides)
    elif entry.modality == "audio":
        from zoo.audio.published.convert import convert_checkpoint

        if overrides:
            raise ZooError(f"--set: audio codecs convert into their entry's own config ({args.tokenizer}); drop --set")
        folder = convert_checkpoint(args.source, args.to, args.tokenizer)
    else:
        raise ZooError(f"{args.tokenizer} is a {entry.modality} tokenizer; zoo convert reads image and audio "
                       f"checkpoints (text files load directly: zoo.load('file:PATH'))")
    print(f"wrote {folder} (zoo.load({str(folder)!r}))")
    return 0
