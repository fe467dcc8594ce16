"""The arithmetic probe: vocabularies per format, loss masks, greedy answers read back, scoring by hand, a tiny run."""

from __future__ import annotations

import json
from itertools import islice

import pytest
import torch

from zoo.data.arithmetic import Problem, held_out_problems, training_problems
from zoo.errors import ZooError
from zoo.studies.arithmetic_probe import (
    FormatVocabulary,
    batch_tensors,
    differing_digits,
    greedy_answers,
    main,
    problem_ids,
    score,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_each_format_keeps_only_the_ids_arithmetic_uses():
    assert FormatVocabulary("1", "+").size == 10 + 2 + 2  # digits, '+' '=', <pad> <eos>
    with pytest.raises(ZooError, match=r"'2\*3=': holds characters outside this study's arithmetic \('\+' and '='\)"):
        FormatVocabulary("1", "+").encode("2*3=")
    single, grouped = FormatVocabulary("1", "+*"), FormatVocabulary("r2l3", "+*")
    assert grouped.size == 1110 + 3 + 2  # 1-, 2- and 3-digit pieces, '+' '*' '=', <pad> <eos>
    assert single.decode(single.encode("12+7=19")) == "12+7=19"
    assert grouped.decode(grouped.encode("1234*5=6170")) == "1234*5=6170"
    assert len(grouped.encode("1234*5=6170")) == 7 and len(single.encode("1234*5=6170")) == 11  # 1|234*5=6|170


def test_the_loss_mask_covers_the_answer_and_its_end_token_only():
    vocabulary = FormatVocabulary("l2r3", "+")
    rows = [problem_ids(vocabulary, Problem(567, "+", 789)), problem_ids(vocabulary, Problem(1, "+", 2))]
    assert rows[0] == (vocabulary.encode("567+789=") + vocabulary.encode("1356") + [vocabulary.eos_id], 4)
    ids, scored = batch_tensors(rows, vocabulary.pad_id)
    # "567" "+" "789" "=" | "135" "6" <eos>  and  "1" "+" "2" "=" | "3" <eos> <pad>
    assert ids.shape == (2, 7) and ids[1, -1] == vocabulary.pad_id
    assert scored.tolist() == [[False] * 4 + [True] * 3, [False] * 4 + [True, True, False]]


class _Oracle:
    """Answers each prompt correctly (or never ends, with ``end=False``): a stand-in GPT for the decoding path."""

    def __init__(self, vocabulary: FormatVocabulary, end: bool = True):
        self.vocabulary, self.end = vocabulary, end

    def generate(self, num_tokens, prompt, temperature):
        assert temperature == 0
        rows = []
        for row in prompt.tolist():
            a, op, b = _parse(self.vocabulary.decode(row))
            answer = self.vocabulary.encode(Problem(a, op, b).answer) + [self.vocabulary.eos_id] * self.end
            rows.append(row + (answer + [0] * num_tokens)[:num_tokens])
        return torch.tensor(rows)


def _parse(prompt: str) -> tuple[int, str, int]:
    op = "+" if "+" in prompt else "*"
    a, b = prompt.rstrip("=").split(op)
    return int(a), op, int(b)


@pytest.mark.parametrize("grouping", ["1", "l2r3", "r2l3"])
def test_greedy_answers_read_the_text_before_the_end_token(grouping):
    vocabulary = FormatVocabulary(grouping, "+*")
    problems = [Problem(99999, "+", 1), Problem(12, "*", 34), Problem(5, "+", 5), Problem(4321, "+", 1234)]
    assert greedy_answers(_Oracle(vocabulary), vocabulary, problems) == ["100000", "408", "10", "5555"]
    assert greedy_answers(_Oracle(vocabulary, end=False), vocabulary, problems) == [None] * 4


def test_scores_are_counted_by_cell_and_by_answer_length():
    problems = [Problem(567, "+", 789), Problem(123, "+", 456), Problem(999, "+", 1), Problem(12, "+", 3)]
    answers = ["1346", "579", "1000", None]  # wrong in digit 3, right, right, no end token
    found = score(problems, answers)
    assert found["exact"] == 0.5
    assert found["answer_longer"] == {"n": 2, "exact": 0.5} and found["answer_not_longer"] == {"n": 2, "exact": 0.5}
    assert found["cells"]["+ 3 3"] == {"n": 2, "exact": 0.5} and found["cells"]["+ 2 1"] == {"n": 1, "exact": 0.0}
    assert found["by_longer_operand"]["+ 3 longer"] == {"n": 2, "exact": 0.5}
    assert found["wrong_digit_positions"] == {"longer": {"3": 1}, "not_longer": {}}
    assert differing_digits("1346", "1356") == [3] and differing_digits("135", "1356") is None
    assert differing_digits("1356", "1356") is None and differing_digits(None, "1") is None


def test_a_tiny_study_writes_its_table_json_and_plot(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--out", str(out), "--seeds", "0", "1", "--steps", "3", "--batch", "8", "--dim", "16", "--depth",
                 "1", "--heads", "2", "--digits", "4", "--per-cell", "2", "--ops", "+*", "--mul-digits", "1",
                 "--warmup", "2"])
    assert code == 0
    study = json.loads((out / "arithmetic.json").read_text())
    assert [(run["format"], run["seed"]) for run in study["runs"]] == [
        (f, s) for s in (0, 1) for f in ("1", "l2r3", "r2l3")]
    assert study["held_out"] == 4 * 4 * 2 + 1 * 2
    # Single digits: one token per character plus the end token, over the same 3 x 8 problems every format sees.
    held_out = frozenset(held_out_problems("+*", 4, 1, per_cell=2, seed=0))
    problems = list(islice(training_problems("+*", 4, 1, seed=0, exclude=held_out), 24))
    first = study["runs"][0]
    assert first["train_tokens"] == sum(len(p.text) + 1 for p in problems)
    assert first["tokens_per_problem"] > study["runs"][1]["tokens_per_problem"]
    assert all(0 <= run["exact"] <= 1 and set(run["cells"]) >= {"+ 4 4", "* 1 1"} for run in study["runs"])
    markdown = (out / "arithmetic.md").read_text()
    assert markdown.startswith('# The arithmetic probe of "Tokenization counts"')
    assert "python -m zoo.studies.arithmetic_probe --out" in markdown and "| `r2l3` | 4 |" in markdown
    assert (out / "arithmetic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "answer longer than operands" in capsys.readouterr().out


def test_no_format_is_an_error_exit(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--formats"]) == 2
    assert "--formats: name at least one of 1, l2r3, r2l3" in capsys.readouterr().err
