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
    "tokenize": ("zoo.tokenize.command", "turn a dataset into sharded token files (Ray Data)"),
    "export": ("zoo.export.command", "write a text tokenizer as tokenizer.json, tiktoken or SentencePiece files"),
    "convert": ("zoo.export.convert_command", "turn an authors' checkpoint file into a zoo folder (weights only)"),
    "sentinel": ("zoo.transfer.sentinel_command", "key a tokenizer (and a zoo GPT) with a passkey (SentinelLMs)"),
    "expand": ("zoo.transfer.expand_command", "extend a BPE with new-language tokens and a model with rows for them"),
    "zett-train": ("zoo.transfer.zett_command", "train a ZeTT hypernetwork that predicts a GPT's embeddings for any "
                   "tokenizer"),
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
        print(f"{name:<{width}}  {entry.modality:<5}  {_weights_mark(entry):<10}  {entry.summary}")
    return 0


def _weights_mark(entry) -> str:
    """Where an entry's weights come from: ``shipped`` (in the package), ``cached`` / ``download`` (fetched from
    their official source on first use), ``built-in`` (ready without weights), ``untrained`` (train it first)."""
    from zoo.hub import remote_cache_path

    if entry.weights is None:
        return "untrained" if entry.needs_training else "built-in"
    remote = remote_cache_path(entry.weights)
    if remote is None:
        return "shipped"
    return "cached" if remote.is_file() else "download"


def cmd_info(args) -> int:
    import zoo

    record = zoo.info(args.name)
    if args.json:
        _print_json(record)
        return 0
    for key, value in record.items():
        if value in (None, {}, [], ()):
            continue
        if key == "inputs":  # one line with its shape legend
            value = zoo.registry.get(args.name).describe_inputs()
        if key == "card":  # one indented line per field; the metrics name the file they come from
            print(f"{key:>15}:")
            for field, item in value.items():
                if field == "metrics":
                    item = ", ".join(f"{name} {number}" for name, number in item.items())
                    item += f" (from {value['metrics_source']})" if "metrics_source" in value else ""
                elif field == "metrics_source":
                    continue
                elif isinstance(item, int):
                    item = f"{item:,}"
                print(f"{'':17}{field + ':':<11} {item}")
            continue
        print(f"{key:>15}: {json.dumps(value) if isinstance(value, dict) else value}")
    return 0


# -- encode / decode -------------------------------------------------------------------------------------


def _load_tokenizer(args):
    from zoo.loading import load_tokenizer

    # A registry entry with shipped weights is used pretrained; a folder loads as saved.
    return load_tokenizer(
        args.name, trust_remote_code=args.trust_remote_code, verify=not args.no_verify, dtype_cast=args.dtype_cast
    )


def _text_inputs(inputs: list[str]) -> list[str]:
    """Texts as given; '-' reads stdin as bytes, decoded by the zoo's UTF-8 policy (lone surrogates kept in their
    3-byte form, other bytes that are not UTF-8 become U+FFFD), so any piped input encodes instead of crashing."""
    from zoo.text.base import bytes_to_text

    return [bytes_to_text(sys.stdin.buffer.read()) if item == "-" else item for item in inputs]


def _text_or_file(item: str) -> str:
    """An encode INPUT for a text tokenizer: '-' is stdin, an existing file is read (bytes, the zoo's UTF-8
    policy), anything else is the text itself (``--text`` takes every INPUT as text)."""
    from zoo.errors import ZooError
    from zoo.text.base import bytes_to_text

    if item == "-":
        return _text_inputs(["-"])[0]
    if not item:  # Path("") is the current folder; the empty text is meant
        return item
    path = Path(item)
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except (OSError, ValueError):  # a name too long or holding NUL: not a path, so the text itself
        return item
    if is_dir:
        raise ZooError(f"{item}: is a folder; expected a text file, or --text {item!r} to encode the string itself")
    return bytes_to_text(path.read_bytes()) if is_file else item


def _input_file(item: str, suffixes: set[str], modality: str) -> Path:
    from zoo.errors import ZooError

    path = Path(item)
    expected = f"expected {'an' if modality[0] in 'aeiou' else 'a'} {modality} file ({', '.join(sorted(suffixes))})"
    if path.is_dir():
        raise ZooError(f"{item}: is a folder; {expected}")
    if path.suffix.lower() not in suffixes:
        raise ZooError(f"{item}: {expected}")
    if not path.is_file():
        raise ZooError(f"{item}: no such file; {expected}")
    return path


def cmd_encode(args) -> int:
    import torch

    from zoo import io
    from zoo.errors import ZooError

    tok = _load_tokenizer(args)
    if tok.modality == "text":
        texts = _text_inputs(args.inputs) if args.text else [_text_or_file(item) for item in args.inputs]
        for row in (tok.encode(text) for text in texts):
            if args.show:
                _print_tokens(tok, row, args.json)
            else:
                _print_json(row) if args.json else print(" ".join(map(str, row)))
        return 0
    if args.text or args.show:
        raise ZooError(f"--text and --show are for text tokenizers; {args.name} is a {tok.modality} tokenizer")
    with torch.no_grad():
        allowed = io.IMAGE_SUFFIXES if tok.modality == "image" else io.AUDIO_SUFFIXES
        paths = [_input_file(item, allowed, tok.modality) for item in args.inputs]  # all checked before any work
        for path in paths:
            encoded = tok.encode_file(path)
            if tok.modality == "audio":
                frames = int(encoded.lengths[0])
                record = {"ids": encoded.ids[0, :frames].tolist()}
                if encoded.scales is not None:  # chunk-normalised codecs (EnCodec 48 kHz) decode with them
                    record["scales"] = encoded.scales[0].tolist()
                _print_json(record)
            else:
                _print_json({"ids": encoded[0].tolist()})
    return 0


def _print_tokens(tok, ids: list[int], as_json: bool) -> None:
    """``--show``: each id with the text its bytes decode to (partial UTF-8 as ``\\xNN``, controls escaped), one
    token a line as ``ID<TAB>TOKEN``, a blank line after each input; with ``--json`` one object per input."""
    from zoo.evaluate.report import readable_tokens

    pieces = readable_tokens(tok, ids)
    if as_json:
        _print_json({"ids": ids, "tokens": pieces})
        return
    for i, piece in zip(ids, pieces):
        print(f"{i}\t{piece}")
    print()


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
        except RecursionError:
            raise ZooError(f"ids: lists nested too deeply; expected at most {_MAX_ID_DEPTH} levels") from None
        values = [v["ids"] if isinstance(v, dict) and "ids" in v else v for v in values]
        return values[0] if len(values) == 1 else values
    rows = []
    for line in text.splitlines():
        try:
            rows.append([int(token) for token in line.split()])
        except ValueError:
            raise ZooError(f"ids: expected integers separated by spaces, got {line[:40]!r}") from None
    return rows[0] if len(rows) == 1 else rows


def _parse_scales(text: str) -> list[float] | None:
    """The ``"scales"`` of one ``zoo encode`` record ({"ids": ..., "scales": [...]}), or None when it has none."""
    from zoo.errors import ZooError

    text = text.strip()
    if not text.startswith("{"):
        return None
    record = json.loads(text.splitlines()[0])
    scales = record.get("scales") if isinstance(record, dict) else None
    if scales is None:
        return None
    if not isinstance(scales, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scales):
        raise ZooError(f"ids: 'scales' must be a list of numbers (one per chunk), got {str(scales)[:60]}")
    return [float(v) for v in scales]


_MAX_ID_DEPTH = 8  # lists inside lists: a batch of grids of code levels is 4


def _id_grid_shape(value, modality: str, where: str = "ids", depth: int = 0) -> tuple[int, ...]:
    """The shape of nested lists of ids, refusing anything but ints in int64 range in a rectangular grid."""
    from zoo.errors import ZooError

    if isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**63:
            raise ZooError(f"{where}: id {value} is out of range; expected ids of the {modality} tokenizer's codebook")
        return ()
    if not isinstance(value, list):
        raise ZooError(f"{where}: expected integer ids, got {json.dumps(value)[:40]}")
    if depth >= _MAX_ID_DEPTH:
        raise ZooError(f"ids: lists nested too deeply; expected at most {_MAX_ID_DEPTH} levels")
    shapes = [_id_grid_shape(item, modality, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    for i, shape in enumerate(shapes):
        if shape != shapes[0]:
            raise ZooError(
                f"ids: ragged rows, {where}[{i}] has shape {list(shape)} but {where}[0] has "
                f"{list(shapes[0])}; {modality} ids must form a rectangular grid"
            )
    return (len(value), *(shapes[0] if shapes else ()))


def _write_text_output(args, text: str) -> None:
    """Decoded text, as bytes in the zoo's UTF-8 form: a lone surrogate is written as its 3-byte generalised form
    (what ``zoo encode`` reads back as the same surrogate), so stdout and ``-o`` hold the same bytes and a
    decode | encode pipe round-trips instead of failing with UnicodeEncodeError."""
    from zoo import io
    from zoo.text.base import text_to_bytes

    data = text_to_bytes(text)
    if args.output:
        io.write_bytes(args.output, data)
        return
    sys.stdout.flush()
    sys.stdout.buffer.write(data + (b"\n" if sys.stdout.isatty() else b""))
    sys.stdout.buffer.flush()


def cmd_decode(args) -> int:
    import torch

    from zoo import io
    from zoo.errors import ZooError

    tok = _load_tokenizer(args)
    suffixes = {"image": io.IMAGE_SUFFIXES, "audio": io.AUDIO_SUFFIXES}.get(tok.modality)
    if args.output:  # refused before any work: a missing folder, a folder, an unknown suffix
        io.output_path(args.output, suffixes, f"{tok.modality} output")
    raw = _text_inputs(["-"])[0] if args.ids == "-" else args.ids
    ids = _parse_ids(raw)
    scales = _parse_scales(raw)
    if tok.modality == "text":
        decoded = tok.decode(ids)
        _write_text_output(args, decoded if isinstance(decoded, str) else "\n".join(decoded))
        return 0
    if not args.output:
        raise ZooError(f"decoding {tok.modality} needs -o OUT (one of {', '.join(sorted(suffixes))})")
    _id_grid_shape(ids, tok.modality)
    with torch.no_grad():
        batch = torch.tensor(ids, dtype=torch.long).unsqueeze(0)
        if scales is not None:
            from zoo.tokenizer import AudioTokens

            if tok.modality != "audio":
                raise ZooError(f"ids: 'scales' belong to chunk-normalised audio codecs, not to {args.name}")
            batch = AudioTokens(batch, torch.tensor([batch.shape[1]]), torch.tensor([scales], dtype=torch.float32))
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


class _OneLineParser(argparse.ArgumentParser):
    """Usage mistakes end like every other refusal: one line on stderr, exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _loading_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let a folder's config.json name classes outside the zoo package (it runs their code)",
    )
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="load a folder even when a file differs from the sha256 its config.json records",
    )
    parser.add_argument(
        "--dtype-cast",
        action="store_true",
        help="cast weights stored in another dtype (float16, float64) instead of refusing them",
    )


def build_parser() -> argparse.ArgumentParser:
    from zoo._version import __version__

    parser = _OneLineParser(prog="zoo", description="Discrete tokenizers for text, images and audio.")
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
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="for text: a text file (read when the path exists), '-' for stdin, or the text itself; "
                        "image or audio files")
    p.add_argument("--text", action="store_true",
                   help="text: take every INPUT as the text itself, never as a file ('zoo encode NAME --text doc.txt' "
                        "encodes the string 'doc.txt')")
    p.add_argument("--show", action="store_true",
                   help="text: print each token with the text it decodes to (partial UTF-8 bytes as \\xNN)")
    p.add_argument("--json", action="store_true", help="print each row as JSON")
    _loading_flags(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="turn ids back into text, a PNG or a WAV")
    p.add_argument("name", help="registry name or checkpoint folder")
    p.add_argument("ids", help="ids as JSON or space-separated ints; '-' reads stdin")
    p.add_argument("-o", "--output", help="output file (text goes to stdout without it); its folder must exist")
    _loading_flags(p)
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
    except (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError) as err:
        print(f"zoo {args.command}: error: {err.filename or err}: {err.strerror}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print(f"zoo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
