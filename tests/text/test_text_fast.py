"""The tiktoken fast path gives the ids of the tokenizers path, on real text and generated strings."""

from __future__ import annotations

import json
import random

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

import zoo
from tests._text_corpus import corpus, held_out
from zoo.text.bytelevel import from_byte_chars
from zoo.text.digits import split_pattern
from zoo.text.fast import TiktokenPath, _ranks
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


def _bpe_with_merges(merges: list[tuple[str, str]]) -> Tokenizer:
    """A byte-level BPE (zoo's pipeline, no specials) whose merge ``k`` makes token ``256 + k``."""
    state = json.loads(BPETokenizer(vocab_size=300, special_tokens=()).hf_tokenizer.to_str())
    for left, right in merges:
        state["model"]["vocab"][left + right] = len(state["model"]["vocab"])
        state["model"]["merges"].append([left, right])
    return Tokenizer.from_str(json.dumps(state))


def test_a_token_the_merge_list_does_not_rebuild_turns_the_fast_path_off():
    # Ranks rise with merge order, but "abc" is made from "ab"+"c" while "bc" is merged first: tokenizers
    # spells "abcx" a|bc|x, and tiktoken, which merges any pair whose concatenation is a token, abc|x.
    tk = _bpe_with_merges([("b", "c"), ("a", "b"), ("ab", "c")])
    assert tk.encode("abcx").tokens == ["a", "bc", "x"]
    state = json.loads(tk.to_str())
    ranks = {from_byte_chars(token): i for token, i in state["model"]["vocab"].items()}
    rank_based = tiktoken.Encoding("t", pat_str=split_pattern(), mergeable_ranks=ranks, special_tokens={})
    assert rank_based.encode_ordinary("abcx") != tk.encode("abcx").ids  # what the fast path would have given
    assert TiktokenPath.build(tk) is None
    assert "spells token 'abc' as ['a', 'bc']" in _ranks(state["model"], tk)[1]


def test_the_fast_path_is_exact_or_off_on_arbitrary_merge_tables():
    # Random merge tables over a, b, c and space (most are not what a trainer makes), random texts over them.
    rng = random.Random(0)
    used = 0
    for _ in range(150):
        merges: list[tuple[str, str]] = []
        tokens = ["a", "b", "c", "Ġ"]
        for _ in range(rng.randint(1, 12)):
            left, right = rng.choice(tokens), rng.choice(tokens)
            if left + right not in tokens:
                merges.append((left, right))
                tokens.append(left + right)
        tk = _bpe_with_merges(merges)
        path = TiktokenPath.build(tk)
        used += path is not None
        for _ in range(20):
            text = "".join(rng.choice("abc ") for _ in range(rng.randint(1, 14)))
            assert path is None or path.encode(text) == tk.encode(text).ids, (merges, text)
    assert 10 < used < 140  # both outcomes were exercised
