"""The refusal table: every bad input the CLI is given ends in one line on stderr and exit code 2, naming the input
and what was expected, never a traceback. Run in-process (``zoo.cli.main``), so any other exception fails its row.

``python -m tests.core.test_refusals`` prints the table (case, exit code, the one line) for a closing note.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _wav(path: Path, samples: np.ndarray, rate: int = 16000) -> str:
    import soundfile

    soundfile.write(path, samples, rate, subtype="FLOAT")
    return str(path)


def _png(path: Path, size: int = 64) -> Path:
    from PIL import Image

    Image.fromarray(np.full((size, size, 3), 128, dtype=np.uint8)).save(path)
    return path


def _recipe(folder: Path, **changes) -> str:
    text = (ROOT / "recipes/test/toy-image.yaml").read_text()
    for key, value in changes.items():
        text = re.sub(rf"^{key}:.*$", f"{key}: {value}", text, flags=re.M)
    path = folder / "recipe.yaml"
    path.write_text(text)
    return str(path)


def _saved_byte(folder: Path, edit=None) -> str:
    import zoo

    out = folder / "saved"
    zoo.load("byte").save_pretrained(out)
    if edit is not None:
        config = json.loads((out / "config.json").read_text())
        edit(config, out)
        (out / "config.json").write_text(json.dumps(config))
    return str(out)


def _saved_without_weights(folder: Path) -> str:
    import zoo

    out = folder / "saved-bpe"
    zoo.load("bpe-32k", pretrained=True).save_pretrained(out)
    (out / "tokenizer.json").unlink()
    return str(out)


def _planted_target(config, out):
    config["target"] = "os:system"


def _unknown_key(config, out):
    config["config"]["bogus_option"] = 1


def _held_lock(folder: Path) -> str:
    import os
    import socket

    out = folder / "eval-out"
    out.mkdir()
    # pid 1 is alive on every host: the lock belongs to a live run
    (out / ".zoo-eval.lock").write_text(json.dumps({"pid": 1, "host": socket.gethostname()}))
    assert os.getpid() != 1
    return str(out)


# (case id, argv builder taking a tmp folder, regex the one line must match)
CASES = [
    ("unknown name", lambda d: ["encode", "bytee", "x"], r"unknown tokenizer 'bytee'.*did you mean 'byte'"),
    ("missing folder", lambda d: ["encode", str(d / "nope") + "/", "x"], "no such checkpoint folder"),
    ("ids not integers", lambda d: ["decode", "byte", "1 2 x"], "expected integers"),
    ("ids bad JSON", lambda d: ["decode", "byte", "[1, 2"], "not valid JSON"),
    ("ids out of range", lambda d: ["decode", "byte", "[999]"], r"ints in \[0, 259\)"),
    ("negative id", lambda d: ["decode", "byte", "[-1]"], r"ints in \[0, 259\)"),
    ("ragged ids", lambda d: ["decode", "vq-f8", "[[1, 2], [3]]", "-o", str(d / "x.png")],
     "ragged rows, ids.1. has shape .1. but ids.0. has .2.; image ids must form a rectangular grid"),
    ("image ids wrong rank", lambda d: ["decode", "vq-f8", "[1, 2, 3]", "-o", str(d / "x.png")],
     r"expected shape \[B, h, w\] for a vq quantizer, got \[1, 3\]"),
    ("image id out of range", lambda d: ["decode", "vq-f8", json.dumps([[[300] * 8] * 8]), "-o", str(d / "x.png")],
     r"ids must lie in \[0, 256\), got \[300, 300\]"),
    ("unknown -o extension", lambda d: ["decode", "vq-f8", json.dumps([[[1] * 8] * 8]), "-o", str(d / "x.docx")],
     r"\.docx"),
    ("-o into a missing folder", lambda d: ["decode", "byte", "[104]", "-o", str(d / "no/such/x.txt")],
     "folder .* does not exist|No such file"),
    ("truncated PNG", lambda d: ["encode", "vq-f8", _truncated_png(d)], "truncated|cannot read|not an image"),
    ("text file to an image tokenizer", lambda d: ["encode", "vq-f8", _text_file(d)], "expected an image file .*png"),
    ("NaN audio", lambda d: ["encode", "beats-iter2", _wav(d / "nan.wav", np.full(16000, np.nan, np.float32))],
     "NaN"),
    ("Inf audio", lambda d: ["encode", "codec-16k", _wav(d / "inf.wav", np.full(16000, np.inf, np.float32))],
     "Inf|NaN"),
    ("int16-scale float audio", lambda d: ["encode", "codec-16k",
                                           _wav(d / "loud.wav", np.full(16000, 3000.0, np.float32))],
     r"\[-1, 1\]"),
    ("wrong sample rate", lambda d: ["encode", "codec-16k", _wav(d / "8k.wav", np.zeros(8000, np.float32), 8000)],
     None),  # served: resampled to the tokenizer's rate
    ("empty audio", lambda d: ["encode", "codec-16k", _wav(d / "empty.wav", np.zeros(0, np.float32))],
     None),  # served: no samples, no frames
    ("image too small", lambda d: ["encode", "vq-f8", str(_png(d / "tiny.png", 4))], "at least|too small|multiple"),
    ("planted target in config.json", lambda d: ["encode", _saved_byte(d, _planted_target), "x"],
     "os:system.*not a zoo class|trust-remote-code|trust_remote_code"),
    ("unknown key in config.json", lambda d: ["encode", _saved_byte(d, _unknown_key), "x"], "bogus_option"),
    ("folder without its weights file", lambda d: ["encode", _saved_without_weights(d), "x"],
     "saved-bpe: missing tokenizer.json next to config.json"),
    ("unknown recipe override", lambda d: ["train", _recipe(d), "model.overrides.bogus=1"], "bogus"),
    ("negative learning rate", lambda d: ["train", _recipe(d), "optimizer.lr=-1"], "lr"),
    ("negative seed", lambda d: ["train", _recipe(d, seed=-1)], "seed"),
    ("steps zero", lambda d: ["train", _recipe(d), "steps=0"], "steps"),
    ("recipe missing", lambda d: ["train", str(d / "nope.yaml")], "nope.yaml"),
    ("duplicate YAML key", lambda d: ["train", _dup_recipe(d)], "key .steps. repeats the key of line"),
    ("unknown suite", lambda d: ["eval", "no-such-suite", "-t", "byte"], "no-such-suite"),
    ("eval --out held by a live run", lambda d: ["eval", "demo-text", "-t", "byte", "--out", _held_lock(d)],
     "another zoo eval .pid 1"),
    ("eval --out is a file", lambda d: ["eval", "demo-text", "-t", "byte", "--out", _text_file(d)],
     "is a file; expected a folder"),
    ("hf path escaping the cache", lambda d: ["encode", "hf://org/../../etc/passwd", "x"], "not allowed|no such"),
    ("unknown command flag", lambda d: ["encode", "byte", "x", "--bogus"], "unrecognized arguments: --bogus"),
]  # fmt: skip


def _truncated_png(folder: Path) -> str:
    full = _png(folder / "full.png").read_bytes()
    path = folder / "truncated.png"
    path.write_bytes(full[: len(full) // 2])
    return str(path)


def _text_file(folder: Path) -> str:
    path = folder / "notes.txt"
    path.write_text("not an image\n")
    return str(path)


def _dup_recipe(folder: Path) -> str:
    path = folder / "dup.yaml"
    path.write_text((ROOT / "recipes/test/toy-image.yaml").read_text() + "steps: 30\n")
    return str(path)


def run_case(build, folder: Path, capsys) -> tuple[int, str, str]:
    from zoo.cli import main

    argv = build(folder)
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(("case", "build", "expected"), CASES, ids=[row[0] for row in CASES])
def test_every_refusal_is_one_line_and_exit_2(case, build, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    try:
        code, out, err = run_case(build, tmp_path, capsys)
    except SystemExit as exit_:  # argparse's own exit, still one line through _OneLineParser
        code, err = exit_.code, capsys.readouterr().err
    if expected is None:  # the row documents a case that is served, not refused
        assert code == 0, err
        return
    lines = err.strip().splitlines()
    assert code == 2, f"{case}: exit {code}, stderr {err!r}"
    assert len(lines) == 1, f"{case}: {len(lines)} lines on stderr: {err!r}"
    assert lines[0].startswith("zoo"), lines[0]
    assert re.search(expected, lines[0]), f"{case}: {lines[0]!r} does not match {expected!r}"


def test_bytes_that_are_not_utf8_go_to_stdout_as_they_are():
    """Once a traceback (a lone surrogate cannot be encoded): the decoded bytes are written unchanged, exit 0."""
    import subprocess

    run = subprocess.run([sys.executable, "-m", "zoo", "decode", "byte", "[237, 160, 128]"], capture_output=True,
                         cwd=ROOT, timeout=120)  # fmt: skip
    assert run.returncode == 0 and run.stderr == b"", run.stderr
    assert run.stdout == bytes([237, 160, 128])


def _print_table() -> int:  # pragma: no cover - a report for people
    import tempfile

    class _Capture:
        def __init__(self):
            import io

            self.out, self.err = io.StringIO(), io.StringIO()

        def readouterr(self):
            captured = type("C", (), {"out": self.out.getvalue(), "err": self.err.getvalue()})
            self.out.seek(0), self.out.truncate(), self.err.seek(0), self.err.truncate()
            return captured

    tracebacks = 0
    for case, build, _ in CASES:
        with tempfile.TemporaryDirectory() as folder:
            capture = _Capture()
            real = sys.stdout, sys.stderr
            sys.stdout, sys.stderr = capture.out, capture.err
            try:
                code, _, err = run_case(build, Path(folder), capture)
            except SystemExit as exit_:
                code, err = exit_.code, capture.readouterr().err
            except Exception as exc:  # noqa: BLE001 - counted, shown
                code, err = "traceback", f"{type(exc).__name__}: {exc}"
                tracebacks += 1
            finally:
                sys.stdout, sys.stderr = real
        print(f"| {case} | {code} | {err.strip().splitlines()[0] if err.strip() else '(served)'} |")
    print(f"tracebacks: {tracebacks} of {len(CASES)} cases")
    return tracebacks


if __name__ == "__main__":
    import os

    os.environ.setdefault("ZOO_TRUSTED_MODULES", "tests")  # the toy recipe's family, as tests/conftest.py allows
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(1 if _print_table() else 0)
