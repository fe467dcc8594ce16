"""ADT items: boundaries located by hand, answerability, the ADT-Auto trap search on a fixed greedy vocabulary."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.data.adt import adt, answerable, crossing_token, make_item, token_spans, trap_items, word_cut
from zoo.errors import ZooError
from zoo.text.byte import ByteTokenizer
from zoo.text.lib import LiBTokenizer


def _greedy(chunks: list[str]) -> LiBTokenizer:
    tok = LiBTokenizer(epochs=0)
    tok._compile(chunks)  # greedy longest match over these chunks, bytes elsewhere: segmentations known by hand
    return tok


def test_token_spans_are_characters_and_byte_pieces_widen_to_their_character():
    tok = _greedy(["onea", "st"])
    assert token_spans(tok, "stoneagent") == [(0, 2), (2, 6), (6, 7), (7, 8), (8, 9), (9, 10)]
    # the byte tokenizer writes 长 as three one-byte tokens: each is widened to the whole character
    assert token_spans(ByteTokenizer(), "长江") == [(0, 1)] * 3 + [(1, 2)] * 3


def test_crossing_token_and_word_cut():
    text = 'in "stoneagent"'
    spans = token_spans(_greedy(["onea", "st"]), text)
    assert crossing_token(spans, 9) == (6, 10)  # "onea" covers the stone|agent junction
    assert crossing_token(spans, 6) is None
    assert word_cut(text, spans, 4, 9) and word_cut(text, spans, 9, 14)  # both words share "onea"
    # a token's leading space is not a cut ("in" + " agent" style), but a letter beside the word is
    spaced = token_spans(_greedy([" agent", "sto"]), "stone agent")
    assert not word_cut("stone agent", spaced, 6, 11)
    glued = token_spans(_greedy(["ne a"]), "stone agent")
    assert word_cut("stone agent", glued, 6, 11) and word_cut("stone agent", glued, 0, 5)


def test_a_tokenizer_that_normalises_has_no_spans():
    class Lowercasing(ByteTokenizer):
        def encode_one(self, text):
            return super().encode_one(text.lower())

    with pytest.raises(ZooError, match="do not spell the text byte for byte"):
        token_spans(Lowercasing(), "Stone")


def test_answerable_needs_one_reading():
    lexicon = {"stone", "agent", "the", "rapist", "therapist", "ston", "eagent", "foot", "ball", "football"}
    assert answerable("stone", "house", lexicon)
    assert not answerable("the", "rapist", lexicon)  # "therapist" is itself a word
    assert not answerable("stone", "agent", lexicon)  # "ston" + "eagent" reads too
    assert not answerable("foot", "ball", lexicon)
    assert not answerable("stone", "stone", lexicon)


def test_make_item_spans_choices_and_clean_version():
    item = make_item("stone", "agent", "en", "first", (2, 6), np.random.default_rng(0))
    assert item["question"] == 'Question: Which word comes first in "stoneagent"?\nAnswer: "'
    assert item["clean_question"] == 'Question: Which word comes first in "stone agent"?\nAnswer: "'
    assert sorted(item["choices"]) == ["agent", "st", "stone", "stonea"]
    assert item["choices"][item["answer_index"]] == item["answer"] == "stone"
    assert [item["question"][s:e] for s, e in item["spans"]] == ["stone", "agent"]
    assert [item["clean_question"][s:e] for s, e in item["clean_spans"]] == ["stone", "agent"]
    assert item["question"][item["junction"]] == "a"
    last = make_item("stone", "agent", "en", "last", (2, 6), np.random.default_rng(0))
    assert sorted(last["choices"]) == ["agent", "gent", "oneagent", "stone"] and last["answer"] == "agent"
    zh = make_item("长江", "大桥", "zh", "first", (1, 3), np.random.default_rng(0))
    assert zh["question"] == "问题：“长江大桥”中的第一个词是什么？\n答案：“" and zh["close"] == "”"
    assert sorted(zh["choices"]) == sorted(["长江", "大桥", "长", "长江大"])


def test_trap_search_keeps_only_pairs_the_tokenizer_really_cuts():
    # "onea" = tail("stone") + head("agent"); "useag" would join "house" + "agent" but "hous" is matched
    # first, so greedy segmentation never emits it: that pair is found in the vocabulary and then dropped.
    tok = _greedy(["onea", "hous", "useag"])
    pool = ["stone", "agent", "house"]
    items = trap_items(tok, "toy", "en", pool, set(pool), count=10, seed=0)
    assert {tuple(item["words"]) for item in items} == {("stone", "agent")}
    (item,) = items
    assert item["trap"] == "onea" and item["trap_tokenizer"] == "toy"
    expected = ["agent", "st", "stone", "stonea"] if item["task"] == "first" else ["agent", "gent", "oneagent", "stone"]
    assert sorted(item["choices"]) == expected


def test_random_items_are_deterministic_answerable_and_split_by_word():
    first = adt(lang="en+zh", items=30, seed=0)
    again = adt(lang="en+zh", items=30, seed=0)
    assert len(first) == 60 and [x["question"] for x in first.items] == [x["question"] for x in again.items]
    assert {x["lang"] for x in first.items} == {"en", "zh"}
    for item in first.items:
        a, b = item["words"]
        assert [item["question"][s:e] for s, e in item["spans"]] == [a, b]
        assert len(set(item["choices"])) == len(item["choices"]) >= 3
        assert item["choices"][item["answer_index"]] == (a if item["task"] == "first" else b)
    train_words = {w for x in adt(lang="en", items=200, split="train").items for w in x["words"]}
    test_words = {w for x in adt(lang="en", items=200, split="test").items for w in x["words"]}
    assert train_words and test_words and not train_words & test_words
    assert len(adt(lang="en", items=30, limit=7)) == 7


def test_adt_auto_from_a_shipped_vocabulary():
    items = adt(lang="en", tokenizer="bpe-32k", items=15).items
    assert len(items) == 15
    tok = _load("bpe-32k")
    for item in items:  # every kept question really has a token across its junction, and the clean one none
        assert crossing_token(token_spans(tok, item["question"]), item["junction"]) is not None
        spans = token_spans(tok, item["clean_question"])
        assert not any(word_cut(item["clean_question"], spans, s, e) for s, e in item["clean_spans"])


def _load(name):
    from zoo.loading import load_tokenizer

    return load_tokenizer(name)


def test_bad_options_name_what_was_expected():
    with pytest.raises(ZooError, match="no question template for"):
        adt(lang="xx")
    with pytest.raises(ZooError, match="items must be an integer >= 1"):
        adt(items=0)
    with pytest.raises(ZooError, match="split must be one of"):
        adt(split="dev")
