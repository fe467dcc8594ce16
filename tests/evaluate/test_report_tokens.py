"""Readable token splits in the report (byte-level tokens as the text they decode to, partial UTF-8 as \\xNN) and
no "best" bolding of system metrics (throughput, memory)."""

from __future__ import annotations

import re

import zoo
from zoo.evaluate.report import (
    _examples_html,
    best_labels,
    collect_examples,
    markdown_table,
    readable_token,
    readable_tokens,
    token_parts,
)


def test_partial_characters_are_escapes_and_whole_ones_are_text():
    raw = "Tü".encode()  # b"T\xc3\xbc"
    assert token_parts(raw[:2]) == [("T", False), ("\\xc3", True)]
    assert token_parts(raw[2:] + b"rk") == [("\\xbc", True), ("rk", False)]
    assert readable_token("ü 🌍".encode()) == "ü 🌍"
    assert readable_token(b"\n\t\x00a") == "\\n\\t\\x00a"
    assert readable_token("\ud800".encode("utf-8", "surrogatepass")) == "\\xed\\xa0\\x80"  # not Unicode: bytes
    assert readable_token(b"\xf0\x9f\x8c") == "\\xf0\\x9f\\x8c"  # a truncated 4-byte character


def test_a_byte_level_bpe_shows_no_mojibake():
    tok = zoo.load("bpe-32k", pretrained=True)
    text = "Türkiye, 東京 🌍 — ok"
    pieces = readable_tokens(tok, tok.encode(text))
    assert not any(c in "".join(pieces) for c in "ÃĠâ\ufffd")
    unescaped = [re.split(r"(\\x[0-9a-f]{2})", p) for p in pieces]
    raw = b"".join(bytes([int(part[2:], 16)]) if i % 2 else part.encode() for parts in unescaped
                   for i, part in enumerate(parts))
    assert raw == text.encode()  # escapes + text are exactly the token bytes
    assert all(p in text for p in pieces if "\\x" not in p)  # escape-free tokens are literal text


def test_specials_show_by_name():
    tok = zoo.load("byte", add_special_tokens=True)
    assert readable_tokens(tok, tok.encode("é")) == ["<bos>", "\\xc3", "\\xa9", "<eos>"]


def test_the_html_examples_render_escapes_apart(tmp_path):
    tok = zoo.load("byte")
    examples = collect_examples(tok, [{"text": "Tü"}], "text", "cpu")
    assert examples == {"segments": [["T", "\\xc3", "\\xbc"]]}
    page = _examples_html({"modality": "text", "items": [{"text": "Tü"}], "tokenizers": {"byte": examples}})
    assert '<span class="tok"><span class="esc">\\xc3</span></span>' in page and "Ã" not in page


def _results(metrics: dict, values: dict) -> dict:
    return {"metrics": metrics, "results": values}


def test_system_metrics_are_not_bolded_as_best():
    metrics = {
        "throughput": {"higher_is_better": None, "directions": {"encode_mb_per_s": True, "encode_peak_mb": False},
                       "class": "zoo.metrics.throughput:Throughput"},
        "bytes-per-token": {"higher_is_better": True, "directions": {}, "class": "zoo.metrics.text:BytesPerToken"},
        "fid": {"higher_is_better": False, "directions": {"gpu_peak_mb": False}, "class": "x:Y"},
    }
    values = {"a": {"throughput": {"encode_mb_per_s": 11.0, "encode_peak_mb": 3.0}, "bytes-per-token": 4.0,
                    "fid": {"gpu_peak_mb": 10.0}},
              "b": {"throughput": {"encode_mb_per_s": 1.3, "encode_peak_mb": 9.0}, "bytes-per-token": 3.0,
                    "fid": {"gpu_peak_mb": 20.0}}}
    results = _results(metrics, values)
    assert best_labels(results, "throughput", "encode_mb_per_s", True) == set()
    assert best_labels(results, "throughput", "encode_peak_mb", False) == set()
    assert best_labels(results, "fid", "gpu_peak_mb", False) == set()
    assert best_labels(results, "bytes-per-token", None, True) == {"a"}  # quality metrics still ranked
    table = markdown_table(results)
    assert "**4**" in table and "**11**" not in table and "**1.3**" not in table and "**3**" not in table
    assert "encode_mb_per_s ↑" in table  # the direction is still shown
    results["metrics"]["bytes-per-token"]["system"] = True  # a metric may declare itself a system measurement
    assert best_labels(results, "bytes-per-token", None, True) == set()
