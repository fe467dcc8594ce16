"""A published codec's pickled checkpoint (SNAC's ``pytorch_model.bin``) -> a zoo checkpoint folder, once.

    python -m zoo.audio.published.convert ~/Downloads/pytorch_model.bin --to runs/snac-24khz snac-24khz

The file is read with ``torch.load(weights_only=True)``: tensors and plain containers, never code; a file
that needs a full unpickle is refused with the reason. Its tensors are mapped by the family's ``convert``
(weight-norm ``weight_g`` / ``weight_v`` -> parametrizations; for DAC, descript's ``weights.pth`` layout ->
transformers' names with the weight norm folded in) and loaded strictly into the named entry's
network; ``zoo.load(DIR)`` then reads safetensors only. With the entry's weights cached
(``zoo.hub.cached_path``), pass that path as the source: its pin is checked first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoo.audio.published.base import PublishedAudioCodec
from zoo.errors import ZooError
from zoo.hub import sha256_of
from zoo.pretrained import read_weights_only


def convert_checkpoint(source: str | Path, directory: str | Path, tokenizer) -> Path:
    """Convert ``source`` into a ``save_pretrained`` folder of ``tokenizer`` (a registry name or a published codec)."""
    from zoo.hub import resolve_weights
    from zoo.loading import load_tokenizer
    from zoo.registry import get

    tok = load_tokenizer(tokenizer, pretrained=False) if isinstance(tokenizer, str) else tokenizer
    if not isinstance(tok, PublishedAudioCodec):
        raise ZooError(f"{tokenizer!r}: expected a published audio codec (zoo.audio.published), got "
                       f"{type(tok).__name__}")
    if isinstance(tokenizer, str):
        weights = get(tokenizer).weights or {}
        if weights.get("path", "").startswith("hf://"):  # the cached official file: its pin is checked first
            from zoo.hub import cached_path

            if Path(source).resolve() == cached_path(weights["path"], weights.get("revision")).resolve():
                resolve_weights(weights["path"], weights.get("sha256"), weights.get("revision"))
    tok.load_converted(tok.convert(read_weights_only(source)), str(source))
    metadata = {"converted_from": str(source), "source_sha256": sha256_of(source)}
    return tok.save_pretrained(directory, metadata=metadata)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.audio.published.convert", description=__doc__.splitlines()[0])
    parser.add_argument("source", help="the authors' pickled checkpoint file")
    parser.add_argument("--to", required=True, help="the folder to write (config.json + model.safetensors)")
    parser.add_argument("tokenizer", help="the registry entry whose config the file fits (e.g. snac-24khz)")
    args = parser.parse_args(argv)
    try:
        folder = convert_checkpoint(args.source, args.to, args.tokenizer)
    except ZooError as err:
        print(f"convert: {err}", file=sys.stderr)
        return 2
    print(f"wrote {folder} (zoo.load({str(folder)!r}))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
