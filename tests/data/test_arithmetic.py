"""Arithmetic problems: answers, seeded determinism, length sampling, a stratified held-out set apart from training."""

from __future__ import annotations

from collections import Counter
from itertools import islice

import pytest

from zoo.data.arithmetic import Problem, arithmetic, held_out_problems, training_problems
from zoo.errors import ZooError


def test_a_problem_writes_its_prompt_answer_and_lengths():
    problem = Problem(567, "+", 789)
    assert (problem.prompt, problem.answer, problem.text) == ("567+789=", "1356", "567+789=1356")
    assert problem.lengths == (3, 3) and problem.answer_is_longer
    assert not Problem(123, "+", 45).answer_is_longer
    assert Problem(12, "*", 34).text == "12*34=408" and Problem(12, "*", 34).answer_is_longer
    assert Problem(0, "+", 0).text == "0+0=0"


def test_the_training_stream_is_deterministic_and_samples_lengths_uniformly():
    first = list(islice(training_problems("+", digits=4, seed=3), 4000))
    assert first == list(islice(training_problems("+", digits=4, seed=3), 4000))
    assert first != list(islice(training_problems("+", digits=4, seed=4), 4000))
    lengths = Counter(length for p in first for length in p.lengths)
    assert set(lengths) == {1, 2, 3, 4}
    assert all(abs(count / 8000 - 0.25) < 0.03 for count in lengths.values())
    assert all(p.op == "+" for p in first)


def test_mixed_operators_keep_multiplication_short():
    problems = list(islice(training_problems("+*", digits=6, mul_digits=2, seed=0), 2000))
    ops = Counter(p.op for p in problems)
    assert abs(ops["*"] / 2000 - 0.5) < 0.05
    assert max(max(p.lengths) for p in problems if p.op == "*") == 2
    assert max(max(p.lengths) for p in problems if p.op == "+") == 6


def test_the_held_out_set_is_stratified_capped_and_disjoint_from_training():
    held_out = held_out_problems("+", digits=3, per_cell=80, seed=0)
    cells = Counter(p.lengths for p in held_out)
    assert set(cells) == {(la, lb) for la in (1, 2, 3) for lb in (1, 2, 3)}
    # 1+1 digits has 10 x 10 = 100 problems: at most half are held out; 1+2 has 10 x 90 = 900.
    assert cells[(1, 1)] == 50 and cells[(1, 2)] == 80 and cells[(3, 3)] == 80
    assert len(set(held_out)) == len(held_out)
    assert held_out == held_out_problems("+", digits=3, per_cell=80, seed=0)
    training = set(islice(training_problems("+", digits=3, seed=0, exclude=frozenset(held_out)), 20000))
    assert not training & set(held_out)
    assert {p.lengths for p in training if p.lengths == (1, 1)}  # the small cell still trains


def test_the_dataset_builder_yields_text_items():
    test = arithmetic("test", digits=2, per_cell=5)
    assert len(test) == 20 and test[0]["text"] == test[0]["prompt"] + test[0]["answer"]
    train = arithmetic("train", digits=2, count=50, limit=10)
    assert len(train) == 10 and all(item["text"].count("+") == 1 for item in train)
    assert not {item["text"] for item in train} & {item["text"] for item in test}


def test_bad_options_are_refused_with_what_was_expected():
    with pytest.raises(ZooError, match=r"ops must be distinct characters of '\+\*', got '-'"):
        held_out_problems("-")
    with pytest.raises(ZooError, match="digits and mul_digits must be >= 1, got 0 and 3"):
        next(training_problems("+", digits=0))
    with pytest.raises(ZooError, match="split must be one of"):
        arithmetic("val")
    with pytest.raises(ZooError, match="per_cell must be >= 1"):
        held_out_problems("+", per_cell=0)
