"""DynamicMerger under random batches: every row decodes to its text, expands to the base ids, no merged token
crosses its boundary, lengths only shrink, and odd input (empty strings, lone surrogates, control characters,
huge repeats) is served or refused with a ZooError, never a crash or a hang."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.errors import ZooError
from zoo.text.byte import ByteTokenizer
from zoo.text.dynamic import DynamicMerger
from zoo.text.hf import BPETokenizer

FUZZ = settings(max_examples=150, derandomize=True, deadline=None, database=None)
WORDS = st.sampled_from(["the", "cat", "sat", "on", "mat", "héllo", "東京", "🌍", "123", "a.b", "x\ty", "\n", "  "])
TEXTS = st.one_of(
    st.lists(WORDS, max_size=12).map(" ".join),
    st.text(max_size=40),  # any code point, lone surrogates included
    st.builds(lambda w, n: (w + " ") * n, WORDS, st.integers(0, 60)),
)
BATCHES = st.lists(TEXTS, min_size=1, max_size=8)


@pytest.fixture(scope="module")
def bpe():
    base = BPETokenizer(vocab_size=300)
    base.fit(["the cat sat on the mat. héllo 東京 🌍 123 a.b x\ty\n"] * 20)
    return base


def _check(merger: DynamicMerger, texts: list[str]) -> None:
    try:
        batch = merger.merge(texts)
    except ZooError:
        return  # refused clearly (e.g. a lone surrogate the base cannot encode)
    base = merger.base
    assert len(batch.ids) == len(texts)
    assert all(new <= old for new, old in zip(batch.lengths, batch.base_lengths, strict=True))
    vocab_end = batch.base_vocab_size + len(batch.merges)
    for text, row in zip(texts, batch.ids, strict=True):
        assert all(0 <= i < vocab_end for i in row)
        assert merger.decode(batch, row) == text
        assert batch.expand(row) == base.encode(text)
    for i in range(batch.base_vocab_size, vocab_end):
        text = batch.token_text(i)
        body = text.lstrip()
        if merger.boundary == "word":
            assert body == "" or not any(c.isspace() for c in body), repr(text)
        else:  # one pre-token of the base's split (which may end in newlines: ":\n" is one under cl100k's pattern)
            assert body == "" or len(merger._pattern.findall(text)) == 1, repr(text)


@FUZZ
@given(texts=BATCHES, min_frequency=st.integers(1, 3), max_merges=st.one_of(st.none(), st.integers(0, 20)))
def test_random_batches_over_bytes(texts, min_frequency, max_merges):
    _check(DynamicMerger(ByteTokenizer(), min_frequency=min_frequency, max_merges=max_merges), texts)


@FUZZ
@given(texts=BATCHES, boundary=st.sampled_from(["word", "pretoken"]))
def test_random_batches_over_a_trained_bpe(bpe, texts, boundary):
    _check(DynamicMerger(bpe, boundary=boundary, min_frequency=1), texts)


def test_a_long_repeat_is_merged_quickly_and_exactly():
    text = "ab " * 3000
    batch = DynamicMerger(ByteTokenizer(), min_frequency=2).merge([text])
    assert DynamicMerger(ByteTokenizer()).decode(batch, batch.ids[0]) == text
    assert batch.lengths[0] <= 2 * 3000 + 1


@pytest.mark.parametrize("bad", [[1, 2], [None], ["ok", b"bytes"], "a string"])
def test_non_text_items_are_refused(bad):
    with pytest.raises(ZooError):
        DynamicMerger(ByteTokenizer()).merge(bad)
