"""The Markov tokenization study: LZW by hand, dictionary sizes, a GPT that learns, and a tiny end-to-end run."""

from __future__ import annotations

import json

import pytest
import torch

from zoo.data import DATASETS
from zoo.metrics import METRICS
from zoo.studies.markov_tokens import (
    dictionary_size,
    held_out_bits_per_char,
    lzw_phrases,
    main,
    train_gpt,
    train_tokenizer,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    monkeypatch.setitem(DATASETS, "markov", "zoo.data.markov:markov")
    monkeypatch.setitem(METRICS, "unigram-cross-entropy", "zoo.metrics.unigram_rate:UnigramCrossEntropy")


def test_lzw_adds_the_longest_known_phrase_plus_one_character():
    # a | b | ab | aba | b...: each step adds what it read plus the next character (Welch 1984).
    assert lzw_phrases(["abababab"], 100, "ab") == ["a", "b", "ab", "ba", "aba", "abab"]
    assert lzw_phrases(["abababab", "bbbb"], 4, "ab") == ["a", "b", "ab", "ba"]
    assert lzw_phrases(["abababab", "bbbb"], 100, "ab")[6:] == ["bb", "bbb"]


def test_trained_tokenizers_have_the_dictionary_asked_for():
    texts = ["abbaabababbbaaab" * 8] * 4
    assert dictionary_size(train_tokenizer("byte", 2, texts, "ab"), "ab") == 2
    lzw = train_tokenizer("lzw", 10, texts, "ab")
    assert dictionary_size(lzw, "ab") == 10 and lzw.decode(lzw.encode("abbab")) == "abbab"
    bpe = train_tokenizer("bpe", 12, texts, "ab")
    assert dictionary_size(bpe, "ab") == 12
    assert len(bpe.encode(texts[0])) < len(texts[0]) / 3


def test_the_gpt_learns_a_deterministic_pattern():
    stream = torch.tensor([0, 1] * 600)
    settings = {"dim": 16, "depth": 1, "heads": 2, "context": 12, "steps": 40, "batch": 8, "lr": 1e-2}
    model = train_gpt(stream, 2, settings, seed=0)
    # 1 bit per symbol for a model that knows nothing (the unigram rate); each symbol fixes the next one.
    assert held_out_bits_per_char(model, stream[:240], 240) < 0.3


def test_a_tiny_study_writes_its_table_json_and_plot(tmp_path, capsys):
    source = "k=2,delta=0.1,count=12,length=128"
    out = tmp_path / "out"
    code = main(["--out", str(out), "--sources", source, "--sizes", "4", "8", "--unigram-sizes", "8",
                 "--lib-reads", "20", "--gpt-sources", source, "--seeds", "0", "1", "--steps", "3", "--dim", "16",
                 "--depth", "1", "--heads", "2", "--context", "16", "--work", str(tmp_path / "work")])
    assert code == 0
    study = json.loads((out / "markov.json").read_text())
    families = [(row["family"], row["setting"]) for row in study["tokenizers"]]
    assert families == [("byte", 2), ("bpe", 4), ("bpe", 8), ("unigram", 8), ("lzw", 4), ("lzw", 8), ("lib", 20)]
    byte = study["tokenizers"][0]
    assert byte["dictionary"] == 2 and byte["chars_per_token"] == 1.0
    assert abs(byte["char_unigram_bits"] - 1.0) < 0.05  # the character unigram of a symmetric source: 1 bit
    assert byte["bits_per_char"] > byte["char_unigram_bits"]  # bytes: the same, plus mass smoothed onto 257 ids
    assert (tmp_path / "work" / "k2_delta0.1_count12_length128" / "bpe-8" / "tokenizer.json").is_file()
    assert [(row["tokens"], row["seed"]) for row in study["transformer"]] == [
        ("chars", 0), ("chars", 1), ("bpe-64", 0), ("bpe-64", 1)]
    assert all(row["bits_per_char"] > 0 for row in study["transformer"])
    markdown = (out / "markov.md").read_text()
    assert markdown.startswith("# Tokenization on Markov sources") and "python -m zoo.studies.markov_tokens" in markdown
    assert "| `k=2,delta=0.1,count=12,length=128` | chars |" in markdown
    assert (out / "markov.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Unigram-over-tokens" in capsys.readouterr().out


def test_a_bad_setting_is_an_error_exit(tmp_path, capsys):
    code = main(["--out", str(tmp_path), "--sources", "--gpt-sources", "k=2,count=4,length=32", "--seeds", "0",
                 "--gpt-dictionary", "1"])
    assert code == 2 and "smaller than the alphabet" in capsys.readouterr().err
