"""The tiktoken fast path gives the ids of the tokenizers path, on real text and generated strings."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

import zoo
from tests._text_corpus import corpus, held_out
from zoo.text.fast import TiktokenPath
from zoo.text.hf import BPETokenizer


@pytest.fixture(scope="module", params=["l2r3", "r2l3"])
def bpe(request) -> BPETokenizer:
    tok = BPETokenizer(vocab_size=1500, digits=request.param)
    tok.fit(corpus())
    return tok


def _hf_ids(tok: BPETokenizer, text: str) -> list[int]:
    return tok.hf_tokenizer.encode(text, add_special_tokens=False).ids


def test_fast_path_is_used_and_matches_on_real_multilingual_text(bpe):
    assert bpe.uses_tiktoken
    texts = held_out(600)  # quotes in 12 languages and Python source files
    assert bpe.encode(texts) == [_hf_ids(bpe, t) for t in texts]
    joined = "\n".join(texts)
    assert bpe.encode(joined) == _hf_ids(bpe, joined)


@settings(max_examples=400, deadline=None)
@given(text=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cn"]), max_size=60))
def test_fast_path_matches_on_generated_strings(text):
    tok = _generated_fixture()
    assert tok.encode(text) == _hf_ids(tok, text)


_FIXTURE: list = []


def _generated_fixture() -> BPETokenizer:
    if not _FIXTURE:
        tok = BPETokenizer(vocab_size=800)
        tok.fit(corpus(400))
        _FIXTURE.append(tok)
    return _FIXTURE[0]


def test_fast_path_off_gives_the_same_ids(bpe, tmp_path):
    slow = zoo.load(bpe.save_pretrained(tmp_path / "bpe"), fast=False)
    assert not slow.uses_tiktoken and slow.tiktoken_encoding is None
    text = "\n".join(held_out(100))
    assert slow.encode(text) == bpe.encode(text)


def test_vocabularies_tiktoken_cannot_run_are_refused_with_a_reason(bpe):
    state = json.loads(bpe.hf_tokenizer.to_str())
    state["model"]["ignore_merges"] = False
    assert "ignore_merges" in TiktokenPath.why_not(Tokenizer.from_str(json.dumps(state)))
    state["model"]["ignore_merges"] = True
    state["normalizer"] = {"type": "Lowercase"}
    assert "normalizer" in TiktokenPath.why_not(Tokenizer.from_str(json.dumps(state)))
    assert TiktokenPath.build(Tokenizer.from_str(json.dumps(state))) is None
    state["normalizer"] = None
    state["model"]["merges"] = state["model"]["merges"][::-1]  # merge order no longer follows ids
    assert TiktokenPath.build(Tokenizer.from_str(json.dumps(state))) is None
