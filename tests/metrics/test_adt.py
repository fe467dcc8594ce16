"""ADT metrics against hand-counted segmentations and a scripted language model; the suite end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zoo.data import DATASETS, collate
from zoo.data.adt import make_item
from zoo.errors import ZooError
from zoo.metrics import METRICS
from zoo.metrics.adt import ChoiceAccuracy, SegmentationErrors
from zoo.metrics.base import EvalContext
from zoo.text.byte import ByteTokenizer
from zoo.text.lib import LiBTokenizer


def _greedy(chunks: list[str]) -> LiBTokenizer:
    tok = LiBTokenizer(epochs=0)
    tok._compile(chunks)
    return tok


def _items() -> list[dict]:
    rng = np.random.default_rng(0)
    return [make_item("stone", "agent", "en", "first", (2, 6), rng),  # "onea" crosses: a trap
            make_item("house", "music", "en", "last", (4, 6), rng),  # no chunk crosses its junction
            make_item("长江", "大桥", "zh", "first", (1, 3), rng)]


def _run(metric, tokenizer, items):
    metric.setup(tokenizer)
    metric.update(EvalContext(tokenizer, collate(items)))
    return metric.compute()


def test_split_errors_count_cut_key_words_by_hand():
    # "ne a" glues the two words of the clean "stone agent" too; "ouse" and "长江大" cut nothing / one junction
    tok = _greedy(["onea", "ne a", "江大"])
    result = _run(SegmentationErrors(), tok, _items())
    # adversarial: stone+agent (onea), 长江+大桥 (江大) cut, house/music not: 4 of 6 key words
    # clean: "stone agent" -> "ne a" cuts both words; "长江 大桥" nothing: 2 of 6
    assert result["adversarial"] == pytest.approx(4 / 6)
    assert result["clean"] == pytest.approx(2 / 6)
    assert result["traps"] == pytest.approx(2 / 3)
    assert result["traps_en"] == 0.5 and result["traps_zh"] == 1.0 and "traps_de" not in result


def test_bytes_never_cut_a_word():
    result = _run(SegmentationErrors(), ByteTokenizer(), _items())
    assert result == {"adversarial": 0.0, "clean": 0.0, "traps": 0.0, "traps_en": 0.0, "traps_zh": 0.0}


class ScriptedLM:
    """A "language model" over a greedy tokenizer that reads a pair only when its words are apart: on a clean
    question it prefers the answer, on a joined one the longest choice (always a misreading here)."""

    modality = "text"

    def __init__(self, tokenizer, items):
        self.tok = tokenizer
        self.answers = {item["clean_question"]: item["answer"] for item in items}
        self.calls = 0

    def encode(self, text):
        return self.tok.encode(text)

    def token_bytes(self, ids):
        return self.tok.token_bytes(ids)

    def log_likelihood(self, prompt: str, continuation: str) -> float:
        self.calls += 1
        choice = continuation[:-1]  # without the closing quote
        if prompt in self.answers:
            return 0.0 if choice == self.answers[prompt] else -5.0
        return -1.0 / len(choice)


def test_accuracy_groups_items_by_the_lm_s_own_traps():
    items = _items()
    lm = ScriptedLM(_greedy(["onea", "江大"]), items)
    result = _run(ChoiceAccuracy(), lm, items)
    assert lm.calls == 2 * 12  # 4 choices, two versions, three items
    # traps: stone|agent and 长江|大桥; joined, the longest choice wins: "stonea" and "长江大", both wrong
    assert result["trap_items"] == 2
    assert result["adversarial"] == 0.0 and result["clean"] == 1.0 and result["drop"] == 1.0
    # the control: house|music is no trap; joined, "emusic" wins (wrong), apart the answer
    assert result["no_trap_adversarial"] == 0.0 and result["no_trap_clean"] == 1.0
    assert result["chance"] == pytest.approx(0.25)


def test_accuracy_needs_a_language_model():
    with pytest.raises(ZooError, match="no language model .* log_likelihood"):
        _run(ChoiceAccuracy(), ByteTokenizer(), _items())
    with pytest.raises(ZooError, match="needs ADT items"):
        SegmentationErrors().update(EvalContext(ByteTokenizer(), {"text": ["plain"]}))


def test_the_suite_runs_end_to_end(monkeypatch):
    from zoo.evaluate.runner import run_suite
    from zoo.evaluate.suite import load_suite

    # the registry lines the lead adds to zoo/data/__init__.py and zoo/metrics/__init__.py
    monkeypatch.setitem(DATASETS, "adt", "zoo.data.adt:adt")
    monkeypatch.setitem(METRICS, "adt-split-errors", "zoo.metrics.adt:SegmentationErrors")
    monkeypatch.setitem(METRICS, "adt-accuracy", "zoo.metrics.adt:ChoiceAccuracy")
    suite = load_suite("eval/text-adt.yaml")
    results = run_suite(suite, ["byte", "bpe-32k"], limit=40, progress=False)
    byte, bpe = results["results"]["byte"], results["results"]["bpe-32k"]
    assert byte["adt-split-errors"]["traps"] == 0.0 and byte["adt-split-errors"]["adversarial"] == 0.0
    assert 0.0 < bpe["adt-split-errors"]["traps"] < 1.0
    assert "adt-accuracy" not in bpe  # tokenizers are no language models: the runner notes and skips it
    assert any("adt-accuracy: skipped" in note for note in results["notes"]["bpe-32k"])
    assert not math.isnan(bpe["adt-split-errors"]["clean"])
