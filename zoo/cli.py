"""The ``zoo`` command: list, info, encode, decode, demo, and the verbs other modules add.

Bad input ends with exit code 2 and one line on stderr, never a traceback. Verbs that live in
their own modules (``train``, ``eval``, ...) plug in through ``EXTENSIONS``: each module offers
``configure(parser)`` and ``run(args) -> int`` and is imported only when present.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path

EXTENSIONS = {
    "train": ("zoo.train.command", "train a tokenizer (or any trainable model) from a YAML recipe"),
    "eval": ("zoo.evaluate.command", "run an evaluation suite over tokenizers"),
    "analyze": ("zoo.analysis.command", "analyse tokenizers (e.g. infer a BPE's training-data mixture)"),
    "transfer": ("zoo.transfer.command", "initialise embeddings for a new vocabulary"),
}


def _print_json(value) -> None:
    print(json.dumps(value, ensure_ascii=False))


# -- list / info ----------------------------------------------------------------------------------------


def cmd_list(args) -> int:
    import zoo

    names = zoo.list_tokenizers(args.pattern, modality=args.modality, pretrained=True if args.pretrained else None)
    if args.json:
        _print_json([zoo.info(n) for n in names])
        return 0
    width = max((len(n) for n in names), default=4)
    for name in names:
        entry = zoo.registry.get(name)
        mark = "pretrained" if entry.pretrained else "untrained "
        print(f"{name:<{width}}  {entry.modality:<5}  {mark}  {entry.summary}")
    return 0


def cmd_info(args) -> int:
    import zoo

    record = zoo.info(args.name)
    if args.json:
        _print_json(record)
        return 0
    for key, value in record.items():
        if value not in (None, {}, [], ()):
            print(f"{key:>15}: {json.dumps(value) if isinstance(value, dict) else value}")
    return 0


# -- encode / decode -------------------------------------------------------------------------------------


def _load_tokenizer(name: str, trust_remote_code: bool = False):
    from zoo.loading import load_tokenizer

    # A registry entry with shipped weights is used pretrained; a folder loads as saved.
    return load_tokenizer(name, trust_remote_code=trust_remote_code)


def _text_inputs(inputs: list[str]) -> list[str]:
    return [sys.stdin.read() if item == "-" else item for item in inputs]


def cmd_encode(args) -> int:
    import torch

    from zoo import io
    from zoo.errors import ZooError

    tok = _load_tokenizer(args.name)
    if tok.modality == "text":
        rows = [tok.encode(text) for text in _text_inputs(args.inputs)]
        for row in rows:
            _print_json(row) if args.json else print(" ".join(map(str, row)))
        return 0
    with torch.no_grad():
        for item in args.inputs:
            path = Path(item)
            allowed = io.IMAGE_SUFFIXES if tok.modality == "image" else io.AUDIO_SUFFIXES
            if path.suffix.lower() not in allowed:
                raise ZooError(f"{item}: expected a {tok.modality} file ({', '.join(sorted(allowed))})")
            encoded = tok.encode_file(path)
            if tok.modality == "audio":
                ids, lengths = encoded
                _print_json({"ids": ids[0, : int(lengths[0])].tolist()})
            else:
                _print_json({"ids": encoded[0].tolist()})
    return 0


def _parse_ids(text: str) -> list:
    """Ids as JSON (a list, nested lists, or {"ids": ...}) or whitespace-separated ints, one row per line."""
    from zoo.errors import ZooError

    text = text.strip()
    if not text:
        return []
    if text[0] in "[{":
        try:
            values = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise ZooError(f"ids: not valid JSON ({err.msg} at column {err.colno})") from None
        values = [v["ids"] if isinstance(v, dict) and "ids" in v else v for v in values]
        return values[0] if len(values) == 1 else values
    rows = []
    for line in text.splitlines():
        try:
            rows.append([int(token) for token in line.split()])
        except ValueError:
            raise ZooError(f"ids: expected integers separated by spaces, got {line[:40]!r}") from None
    return rows[0] if len(rows) == 1 else rows


def cmd_decode(args) -> int:
    import torch

    from zoo import io
    from zoo.errors import ZooError

    tok = _load_tokenizer(args.name)
    raw = sys.stdin.read() if args.ids == "-" else args.ids
    ids = _parse_ids(raw)
    if tok.modality == "text":
        decoded = tok.decode(ids)
        text = decoded if isinstance(decoded, str) else "\n".join(decoded)
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
            if sys.stdout.isatty():
                sys.stdout.write("\n")
        return 0
    if not args.output:
        raise ZooError(f"decoding {tok.modality} needs -o OUT ({'a .png' if tok.modality == 'image' else 'a .wav'})")
    with torch.no_grad():
        batch = torch.tensor(ids, dtype=torch.long).unsqueeze(0)
        decoded = tok.decode(batch)
    if tok.modality == "image":
        io.write_image(args.output, decoded[0])
    else:
        io.write_audio(args.output, decoded[0], tok.sample_rate)
    print(args.output)
    return 0


def cmd_demo(args) -> int:
    from zoo.evaluate.demo import run_demo

    return run_demo(args)


# -- parser ----------------------------------------------------------------------------------------------


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent package is absent
        return False


def build_parser() -> argparse.ArgumentParser:
    from zoo._version import __version__

    parser = argparse.ArgumentParser(prog="zoo", description="Discrete tokenizers for text, images and audio.")
    parser.add_argument("--version", action="version", version=f"zoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="list registered tokenizers")
    p.add_argument("pattern", nargs="?", default="*", help="wildcard pattern, e.g. 'vq-*'")
    p.add_argument("--modality", choices=["text", "image", "audio"])
    p.add_argument("--pretrained", action="store_true", help="only entries with usable pretrained weights")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="show one registry entry")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("encode", help="print the ids of texts, image files or audio files")
    p.add_argument("name", help="registry name or checkpoint folder")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="text ('-' reads stdin), image or audio files")
    p.add_argument("--json", action="store_true", help="print each row as JSON")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="turn ids back into text, a PNG or a WAV")
    p.add_argument("name", help="registry name or checkpoint folder")
    p.add_argument("ids", help="ids as JSON or space-separated ints; '-' reads stdin")
    p.add_argument("-o", "--output", help="output file (text goes to stdout without it)")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("demo", help="quick evaluation suites of every pretrained tokenizer on built-in data")
    p.add_argument("--out", default="zoo-demo", help="folder for the demo's report")
    p.add_argument("--limit", type=int, help="items per modality (overrides the demo suites)")
    p.set_defaults(func=cmd_demo)

    for verb, (module, help_text) in EXTENSIONS.items():
        if not _module_exists(module):
            continue
        p = sub.add_parser(verb, help=help_text)
        mod = importlib.import_module(module)
        mod.configure(p)
        p.set_defaults(func=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from zoo.errors import ZooError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ZooError as err:
        print(f"zoo {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as err:
        print(f"zoo {args.command}: error: {err.filename or err}: {err.strerror}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print(f"zoo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
