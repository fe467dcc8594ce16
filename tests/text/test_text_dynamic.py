"""Dynamic tokenization: batch-level merges over a base tokenizer, within word boundaries."""

from __future__ import annotations

import pytest

from tests._text_corpus import held_out
from zoo.errors import ZooError
from zoo.text.byte import ByteTokenizer
from zoo.text.dynamic import DynamicMerger
from zoo.text.hf import BPETokenizer


def test_merges_follow_batch_frequency_on_bytes():
    merger = DynamicMerger(ByteTokenizer())
    batch = merger.merge(["aab aab", "aab"])
    a, b, space, v = ord("a"), ord("b"), ord(" "), batch.base_vocab_size
    # pairs: (a,a) x3, (a,b) x3, (b," ") x1, (" ",a) x1 -> (a,a) first (first of the most frequent), then
    # (aa,b) x3; " "+"aab" would be allowed (leading whitespace) but occurs once, below min_frequency 2.
    assert v == 259
    assert batch.merges == [(a, a), (v, b)]
    assert batch.ids == [[v + 1, space, v + 1], [v + 1]]
    assert batch.base_lengths == [7, 3] and batch.lengths == [3, 1]
    assert batch.reduction == pytest.approx(1 - 4 / 10)
    assert batch.expand(batch.ids[0]) == list(b"aab aab")
    assert batch.token_text(v + 1) == "aab"


def test_no_merged_token_crosses_a_word_boundary():
    merger = DynamicMerger(ByteTokenizer(), min_frequency=1)
    texts = ["the cat sat", "the cat ran", "a cat\tnapped\nthe end"]
    batch = merger.merge(texts)
    for i in range(batch.base_vocab_size, batch.base_vocab_size + len(batch.merges)):
        body = batch.token_text(i).lstrip()
        assert body == "" or not any(c.isspace() for c in body), batch.token_text(i)
    # with every pair allowed once, each word ends as one token (plus its leading whitespace)
    assert [merger.decode(batch, row) for row in batch.ids] == texts
    assert batch.lengths == [3, 3, 5]


def test_pretoken_boundary_also_keeps_punctuation_apart():
    base = ByteTokenizer()
    words = DynamicMerger(base, boundary="word", min_frequency=1).merge(["end. end."])
    pieces = DynamicMerger(base, boundary="pretoken", min_frequency=1).merge(["end. end."])
    assert "end." in {words.token_text(i) for i in words.ids[0]}
    assert [pieces.token_text(i) for i in pieces.ids[0]] == ["end", ".", " end", "."]


def test_real_batch_over_a_trained_bpe_gets_shorter_and_stays_exact():
    base = BPETokenizer(vocab_size=600)
    texts = held_out(200)
    base.fit(texts)
    merger = DynamicMerger(base)
    batch = merger.merge(texts[:32])
    assert batch.reduction > 0.05
    assert [merger.decode(batch, row) for row in batch.ids] == texts[:32]
    capped = DynamicMerger(base, max_merges=3).merge(texts[:32])
    assert len(capped.merges) == 3 and capped.merges == batch.merges[:3]


def test_bad_arguments_are_errors():
    with pytest.raises(ZooError, match="boundary must be one of"):
        DynamicMerger(ByteTokenizer(), boundary="sentence")
    with pytest.raises(ZooError, match="list of str"):
        DynamicMerger(ByteTokenizer()).merge("one string")
    batch = DynamicMerger(ByteTokenizer()).merge(["aa aa"])
    with pytest.raises(ZooError, match="neither a base id"):
        batch.expand([batch.base_vocab_size + 99])
