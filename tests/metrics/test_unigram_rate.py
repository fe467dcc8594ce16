"""unigram-cross-entropy: hand-computed bits per character, the fit split, source numbers, sharded sums, errors."""

from __future__ import annotations

import math

import pytest

from zoo.data import DATASETS
from zoo.errors import ZooError
from zoo.metrics import METRICS, build_metric
from zoo.metrics.base import EvalContext
from zoo.metrics.unigram_rate import UnigramCrossEntropy, smoothed_log2
from zoo.text.byte import ByteTokenizer


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    monkeypatch.setitem(DATASETS, "markov", "zoo.data.markov:markov")
    monkeypatch.setitem(METRICS, "unigram-cross-entropy", "zoo.metrics.unigram_rate:UnigramCrossEntropy")


@pytest.fixture
def fit_file(tmp_path):
    path = tmp_path / "fit.txt"
    path.write_text("aab")
    return f"text-files:path={path}"


def test_smoothing_is_additive_over_every_cell():
    assert smoothed_log2([2, 1, 0], 0.5).tolist() == pytest.approx([math.log2(2.5 / 4.5), math.log2(1.5 / 4.5),
                                                                   math.log2(0.5 / 4.5)])


def test_bits_per_char_match_a_hand_computation(fit_file):
    tokenizer = ByteTokenizer()  # one token per character, 259 ids
    metric = build_metric("unigram-cross-entropy", fit=fit_file, alpha=0.5)
    metric.setup(tokenizer)
    metric.update(EvalContext(tokenizer, {"text": ["ab", "c"]}))
    value = metric.compute()
    # Tokens: fit counts a=2, b=1 over V=259 ids -> Q(t) = (n + 0.5) / (3 + 129.5).
    total = 3 + 0.5 * 259
    token_bits = -(math.log2(2.5 / total) + math.log2(1.5 / total) + math.log2(0.5 / total))
    # Characters: cells a, b and one for unseen characters -> (2.5, 1.5, 0.5) / 4.5.
    char_bits = -(math.log2(2.5 / 4.5) + math.log2(1.5 / 4.5) + math.log2(0.5 / 4.5))
    assert value["bits_per_char"] == pytest.approx(token_bits / 3)
    assert value["char_unigram_bits"] == pytest.approx(char_bits / 3)
    assert value["chars_per_token"] == 1.0 and "entropy_rate" not in value  # a text file knows no source


def test_the_fit_split_defaults_to_the_train_split_of_the_evaluated_data():
    from zoo.evaluate.runner import evaluate_suite

    suite = {"name": "m", "data": "markov:k=1,delta=0.2,split=test,count=8,length=2000", "examples": 0,
             "batch_size": 3, "metrics": [{"name": "unigram-cross-entropy", "fit_limit": 6}]}
    run = evaluate_suite(suite, [ByteTokenizer()], progress=False)
    value = run.results["results"]["ByteTokenizer"]["unigram-cross-entropy"]
    h = -0.2 * math.log2(0.2) - 0.8 * math.log2(0.8)
    assert value["entropy_rate"] == pytest.approx(h) and value["source_unigram_bits"] == pytest.approx(1.0)
    assert value["excess_bits"] == pytest.approx(value["bits_per_char"] - h)
    # Bytes are characters here, so the token unigram is the character unigram, up to the mass that smoothing
    # gives the 257 ids never seen (129 / 12,000 fit tokens: about 0.015 bits).
    assert 0 < value["bits_per_char"] - value["char_unigram_bits"] < 0.03
    metric = UnigramCrossEntropy(fit_limit=6)
    metric.setup(ByteTokenizer(), '{"name": "markov", "options": {"k": 1, "delta": 0.2, "split": "test", '
                                  '"count": 8, "length": 64, "limit": 2}}')
    assert metric.fit_record["spec"]["split"] == "train" and "limit" not in metric.fit_record["spec"]
    assert metric.fit_record["items"] == 6 and metric.fit_record["chars"] == 6 * 64


def test_sharded_state_sums_to_the_single_process_value(fit_file):
    tokenizer = ByteTokenizer()
    texts = ["abba", "bab", "aaab", "b"]
    whole = UnigramCrossEntropy(fit=fit_file)
    whole.setup(tokenizer)
    whole.update(EvalContext(tokenizer, {"text": texts}))
    parts = []
    for shard in (texts[:1], texts[1:]):
        part = UnigramCrossEntropy(fit=fit_file)
        part.setup(tokenizer)
        part.update(EvalContext(tokenizer, {"text": shard}))
        parts.append(part)
    parts[0].merge_state(parts[1])
    assert parts[0].compute() == pytest.approx(whole.compute())


def test_a_learned_dictionary_beats_the_character_unigram_on_a_k2_source():
    from zoo.data import load_dataset
    from zoo.text.hf import BPETokenizer

    spec = "markov:k=2,delta=0.1,count=64,length=256"
    tokenizer = BPETokenizer(vocab_size=257 + 30)
    tokenizer.fit(load_dataset(spec).texts)
    metric = UnigramCrossEntropy(fit=spec)
    metric.setup(tokenizer)
    metric.update(EvalContext(tokenizer, {"text": load_dataset(f"{spec},split=test").texts}))
    value = metric.compute()
    assert value["bits_per_char"] < value["char_unigram_bits"] - 0.2
    assert value["bits_per_char"] > value["entropy_rate"]  # no unigram model codes below the entropy rate here


def test_errors_name_the_option_or_the_missing_fit_data():
    with pytest.raises(ZooError, match="alpha must be a number > 0"):
        UnigramCrossEntropy(alpha=0)
    with pytest.raises(ZooError, match="fit_limit must be a positive integer"):
        UnigramCrossEntropy(fit_limit=0)
    with pytest.raises(ZooError, match="set fit:"):
        UnigramCrossEntropy().setup(ByteTokenizer(), None)
    with pytest.raises(ZooError, match="setup"):
        UnigramCrossEntropy().compute()
