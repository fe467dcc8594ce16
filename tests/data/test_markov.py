"""Markov sources: exact entropy rates against closed forms and Monte Carlo, stationary sampling, the data spec."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from zoo.data import DATASETS, load_dataset
from zoo.data.markov import MarkovSource, entropy_bits
from zoo.errors import ZooError


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    monkeypatch.setitem(DATASETS, "markov", "zoo.data.markov:markov")


def h(x: float) -> float:
    return -x * math.log2(x) - (1 - x) * math.log2(1 - x)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_switching_source_matches_the_closed_forms(k):
    p, q = 0.1, 0.3
    source = MarkovSource.switching(k, p, q)
    assert np.allclose(source.symbol_probs, [q / (p + q), p / (p + q)])
    assert math.isclose(source.entropy_rate, (q * h(p) + p * h(q)) / (p + q), rel_tol=1e-9)
    assert math.isclose(source.unigram_entropy, h(p / (p + q)), rel_tol=1e-9)
    # The context after k steps: the row for "oldest character a" switches to b with probability p.
    assert np.allclose(source.table[0], [1 - p, p]) and np.allclose(source.table[-1], [q, 1 - q])


def test_stationary_distribution_is_stationary_and_normalised():
    source = MarkovSource.random(3, "abc", concentration=0.5, seed=4)
    pi = source.stationary
    moved = np.zeros_like(pi)
    for context, symbol in itertools.product(range(source.contexts), range(3)):
        moved[source.next_context(context, symbol)] += pi[context] * source.table[context, symbol]
    assert np.allclose(moved, pi, atol=1e-12) and math.isclose(pi.sum(), 1.0) and (pi >= 0).all()


def test_entropy_rate_is_the_block_entropy_increment():
    """H = H(X_1..X_{k+1}) - H(X_1..X_k) for a stationary k-th order chain (blocks enumerated by hand)."""
    source, k, m = MarkovSource.random(2, "abc", concentration=0.7, seed=1), 2, 3
    pi = source.stationary

    def block_probs(n):  # P(x_1..x_n) for n >= k: π of the first k, then the table
        probs = []
        for block in itertools.product(range(m), repeat=n):
            context = block[0] * m + block[1]
            prob = pi[context]
            for symbol in block[k:]:
                prob *= source.table[context, symbol]
                context = source.next_context(context, symbol)
            probs.append(prob)
        return np.array(probs)

    increment = entropy_bits(block_probs(k + 1)) - entropy_bits(block_probs(k))
    assert math.isclose(float(increment), source.entropy_rate, rel_tol=1e-9)
    assert math.isclose(float(block_probs(3).sum()), 1.0)


def test_order_zero_is_an_iid_source():
    source = MarkovSource("abc", 0, np.array([[0.5, 0.25, 0.25]]))
    assert math.isclose(source.entropy_rate, 1.5) and math.isclose(source.unigram_entropy, 1.5)


@pytest.mark.parametrize("source", [MarkovSource.switching(4, 0.1, 0.1), MarkovSource.random(2, "abcd", 0.5, seed=3)])
def test_monte_carlo_estimates_agree_with_the_exact_values(source):
    rng = np.random.default_rng(0)
    texts = [source.sample(2000, rng) for _ in range(40)]  # 80k characters
    bits, count = map(sum, zip(*(source.conditional_bits(t) for t in texts)))
    assert abs(bits / count - source.entropy_rate) < 0.02
    joined = "".join(texts)
    frequencies = np.array([joined.count(c) for c in source.alphabet]) / len(joined)
    assert np.abs(frequencies - source.symbol_probs).max() < 0.02
    assert abs(float(entropy_bits(frequencies)) - source.unigram_entropy) < 0.02


def test_the_dataset_spec_is_deterministic_with_disjoint_splits():
    data = load_dataset("markov:k=2,delta=0.2,count=5,length=40")
    again = load_dataset({"name": "markov", "k": 2, "delta": 0.2, "count": 5, "length": 40})
    assert len(data) == 5 and data.texts == again.texts
    assert all(len(t) == 40 and set(t) <= {"a", "b"} for t in data.texts)
    test = load_dataset("markov:test,k=2,delta=0.2,count=5,length=40")
    assert not set(test.texts) & set(data.texts)
    assert math.isclose(data.entropy_rate, h(0.2)) and math.isclose(data.unigram_entropy, 1.0)
    assert len(load_dataset("markov:k=1")) == 1024 and len(load_dataset("markov:k=1,split=test,limit=3")) == 3
    other = load_dataset("markov:k=2,kind=random,alphabet=xyz,seed=1,count=2,length=30")
    assert set("".join(other.texts)) <= set("xyz") and other.texts != load_dataset(
        "markov:k=2,kind=random,alphabet=xyz,seed=2,count=2,length=30").texts


@pytest.mark.parametrize(("spec", "message"), [
    ("markov:k=2,kind=random,delta=0.1", "belong to kind=switching"),
    ("markov:k=2,delta=0.1,p=0.2", "not both"),
    ("markov:k=2,p=1.5", r"p, q in \(0, 1\)"),
    ("markov:k=2,alphabet=abc", "switching source is binary"),
    ("markov:k=12,kind=random,alphabet=abcd", "contexts; at most"),
    ("markov:k=2,kind=hidden", "kind must be one of"),
    ("markov:k=2,split=dev", "split must be one of"),
    ("markov:k=2,length=0", "length must be a positive integer"),
    ("markov:k=1,kind=random,alphabet=aa", "distinct characters"),
])
def test_bad_specs_name_what_was_wrong(spec, message):
    with pytest.raises(ZooError, match=message):
        load_dataset(spec)


def test_conditional_bits_refuses_foreign_characters():
    with pytest.raises(ZooError, match="outside the alphabet"):
        MarkovSource.switching(1, 0.1, 0.1).conditional_bits("abz")
