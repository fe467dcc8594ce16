"""``zoo encode`` reads text files, ``--text`` forces a literal, ``--show`` prints readable token splits, and
``zoo export`` writes checked files or refuses in one line."""

from __future__ import annotations

import json
import re

import pytest

import zoo
from zoo.cli import main


def _unescape(piece: str) -> bytes:
    """A readable token back to its bytes (the test's own inverse of the escapes)."""
    parts = re.split(r"(\\x[0-9a-f]{2})", piece)
    return b"".join(bytes([int(part[2:], 16)]) if i % 2 else part.encode() for i, part in enumerate(parts))


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_encode_reads_a_text_file_when_the_path_exists(capsys, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_bytes("héllo\nwörld\n".encode())
    code, out, _ = _run(capsys, "encode", "byte", str(doc))
    assert code == 0 and out.split() == [str(b) for b in "héllo\nwörld\n".encode()]
    code, out, _ = _run(capsys, "encode", "byte", "--text", str(doc))  # the string itself
    assert out.split() == [str(b) for b in str(doc).encode()]
    code, out, _ = _run(capsys, "encode", "byte", "no-such-file.txt")  # not a path: the text
    assert out.split() == [str(b) for b in b"no-such-file.txt"]
    code, out, _ = _run(capsys, "encode", "byte", "--json", "")  # the empty text, not the current folder
    assert code == 0 and json.loads(out) == []


def test_a_file_that_is_not_utf8_follows_the_zoo_policy(capsys, tmp_path):
    doc = tmp_path / "latin1.txt"
    doc.write_bytes(b"caf\xe9")
    code, out, _ = _run(capsys, "encode", "byte", "--json", str(doc))
    assert code == 0 and json.loads(out) == list("caf\ufffd".encode())


def test_a_folder_is_refused_naming_the_literal_flag(capsys, tmp_path):
    code, _, err = _run(capsys, "encode", "byte", str(tmp_path))
    assert code == 2 and "is a folder; expected a text file, or --text" in err and len(err.strip().splitlines()) == 1


def test_show_prints_byte_level_tokens_as_text_with_partial_bytes_escaped(capsys):
    code, out, _ = _run(capsys, "encode", "bpe-32k", "--show", "Türkiye 🌍")
    rows = [line.split("\t") for line in out.splitlines() if line]
    assert code == 0 and all(len(r) == 2 for r in rows)
    pieces = [piece for _, piece in rows]
    assert [int(i) for i, _ in rows] == zoo.load("bpe-32k", pretrained=True).encode("Türkiye 🌍")
    assert not any("Ã" in p or "\ufffd" in p for p in pieces)  # no mojibake, no replacement characters
    assert "ür" in pieces or "ü" in "".join(pieces)  # whole characters as themselves
    assert any(re.fullmatch(r"(\\x[0-9a-f]{2})+", p) for p in pieces)  # the emoji's bytes split, as escapes
    assert b"".join(_unescape(p) for p in pieces) == "Türkiye 🌍".encode()
    code, out, _ = _run(capsys, "encode", "byte", "--show", "--json", "é\n")
    assert json.loads(out) == {"ids": [195, 169, 10], "tokens": ["\\xc3", "\\xa9", "\\n"]}


def test_show_is_refused_for_images(capsys):
    code, _, err = _run(capsys, "encode", "vq-f8", "--show", "x.png")
    assert code == 2 and "--text and --show are for text tokenizers" in err


def test_zoo_export_writes_checked_files_or_refuses_in_one_line(capsys, tmp_path):
    code, out, _ = _run(capsys, "export", "bpe-32k", str(tmp_path / "tt"), "--format", "tiktoken")
    assert code == 0 and out.split() == [str(tmp_path / "tt" / "tokenizer.tiktoken"), str(tmp_path / "tt" /
                                                                                        "tiktoken.json")]
    from zoo.text.export import load_tiktoken

    tok = zoo.load("bpe-32k", pretrained=True)
    assert load_tiktoken(tmp_path / "tt").encode_ordinary("Türkiye 1234") == tok.encode("Türkiye 1234")
    code, _, err = _run(capsys, "export", "unigram-32k", str(tmp_path / "sp"), "--format", "sentencepiece")
    assert code == 2 and "unigram-32k: cannot export to sentencepiece: a byte-level pre-tokenizer" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "sp").exists()
    code, _, err = _run(capsys, "export", "vq-f8", str(tmp_path / "x"), "--format", "hf")
    assert code == 2 and "expected a text tokenizer" in err


def test_zoo_export_names_the_formats_in_its_help(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "hf,tiktoken,sentencepiece" in capsys.readouterr().out
