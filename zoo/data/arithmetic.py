"""Addition and multiplication problems ("123+45=" -> "168"), for probing how number tokenization shapes arithmetic.

Each operand's digit count is drawn per problem, uniformly in ``1..digits`` (``1..mul_digits`` for ``*``), then
the operand uniformly among the numbers with that many digits (0-9 for one digit), as Singh & Strouse 2024
draw theirs per length (https://arxiv.org/abs/2402.14903). Everything is seeded: the same seed gives the
same problems on every machine.

The held-out set is stratified: ``per_cell`` distinct problems for every (operator, len a, len b) cell, never
more than half of a cell (1-digit + 1-digit has only 100 problems), so training always keeps problems of
every cell. Training problems are drawn from their own stream and skip every held-out problem, so the two
are disjoint. Text is plain ASCII with no spaces: ``f"{a}{op}{b}={answer}"``; how numbers become tokens is
the tokenizer's business (``zoo.text.numbers``).
"""

from __future__ import annotations

import operator
import random
from collections.abc import Iterator
from dataclasses import dataclass

from torch.utils.data import Dataset

from zoo.errors import ZooError

OPERATORS = {"+": operator.add, "*": operator.mul}
_SPLITS = ("train", "test")


@dataclass(frozen=True)
class Problem:
    a: int
    op: str
    b: int

    @property
    def answer(self) -> str:
        return str(OPERATORS[self.op](self.a, self.b))

    @property
    def prompt(self) -> str:
        return f"{self.a}{self.op}{self.b}="

    @property
    def text(self) -> str:
        return self.prompt + self.answer

    @property
    def lengths(self) -> tuple[int, int]:
        """Digits of ``a`` and of ``b``."""
        return len(str(self.a)), len(str(self.b))

    @property
    def answer_is_longer(self) -> bool:
        """The answer has more digits than the longer operand (a carry out of the top digit, for ``+``)."""
        return len(self.answer) > max(self.lengths)


def _check(ops: str, digits: int, mul_digits: int) -> None:
    if not ops or any(op not in OPERATORS for op in ops) or len(set(ops)) != len(ops):
        raise ZooError(f"arithmetic: ops must be distinct characters of {''.join(OPERATORS)!r}, got {ops!r}")
    if digits < 1 or mul_digits < 1:
        raise ZooError(f"arithmetic: digits and mul_digits must be >= 1, got {digits} and {mul_digits}")


def max_digits(op: str, digits: int, mul_digits: int) -> int:
    return mul_digits if op == "*" else digits


def _operand(rng: random.Random, length: int) -> int:
    return rng.randrange(10) if length == 1 else rng.randrange(10 ** (length - 1), 10**length)


def _cell_size(length: int) -> int:
    """How many numbers have ``length`` digits (0 counts as a 1-digit number)."""
    return 10 if length == 1 else 9 * 10 ** (length - 1)


def held_out_problems(ops: str = "+", digits: int = 5, mul_digits: int = 3, per_cell: int = 32,
                      seed: int = 0) -> list[Problem]:
    """``per_cell`` distinct problems for each (op, len a, len b), capped at half the cell, in cell order."""
    _check(ops, digits, mul_digits)
    if per_cell < 1:
        raise ZooError(f"arithmetic: per_cell must be >= 1, got {per_cell}")
    rng = random.Random(f"arithmetic-test-{seed}")  # str seeds hash deterministically (random.seed version 2)
    problems = []
    for op in ops:
        top = max_digits(op, digits, mul_digits)
        for la in range(1, top + 1):
            for lb in range(1, top + 1):
                wanted, cell = min(per_cell, _cell_size(la) * _cell_size(lb) // 2), set()
                while len(cell) < wanted:
                    cell.add(Problem(_operand(rng, la), op, _operand(rng, lb)))
                problems.extend(sorted(cell, key=lambda p: (p.a, p.b)))
    return problems


def training_problems(ops: str = "+", digits: int = 5, mul_digits: int = 3, seed: int = 0,
                      exclude: frozenset | set = frozenset()) -> Iterator[Problem]:
    """An endless seeded stream: operator uniform over ``ops``, each operand's length uniform, never in ``exclude``."""
    _check(ops, digits, mul_digits)
    rng = random.Random(f"arithmetic-train-{seed}")
    while True:
        op = ops[rng.randrange(len(ops))]
        top = max_digits(op, digits, mul_digits)
        problem = Problem(_operand(rng, rng.randint(1, top)), op, _operand(rng, rng.randint(1, top)))
        if problem not in exclude:
            yield problem


class ArithmeticText(Dataset):
    """``{"text": "12+34=46", "prompt": "12+34=", "answer": "46"}`` items: a fixed train or held-out test split."""

    def __init__(self, split: str = "train", seed: int = 0, limit: int | None = None, count: int = 4096,
                 ops: str = "+", digits: int = 5, mul_digits: int = 3, per_cell: int = 32):
        if split not in _SPLITS:
            raise ZooError(f"arithmetic: split must be one of {list(_SPLITS)}, got {split!r}")
        if count < 1 or (limit is not None and limit < 1):
            raise ZooError(f"arithmetic: count and limit must be positive, got count={count}, limit={limit}")
        held_out = held_out_problems(str(ops), digits, mul_digits, per_cell, seed)
        if split == "test":
            self.problems = held_out
        else:
            stream = training_problems(str(ops), digits, mul_digits, seed, exclude=frozenset(held_out))
            self.problems = [next(stream) for _ in range(count)]
        if limit is not None:
            self.problems = self.problems[:limit]

    def __len__(self) -> int:
        return len(self.problems)

    def __getitem__(self, index: int) -> dict:
        problem = self.problems[index]
        return {"text": problem.text, "prompt": problem.prompt, "answer": problem.answer}


def arithmetic(split: str = "train", seed: int = 0, limit: int | None = None, count: int = 4096, ops: str = "+",
               digits: int = 5, mul_digits: int = 3, per_cell: int = 32) -> ArithmeticText:
    """Arithmetic problems as text (the ``arithmetic`` dataset spec); ``split="test"`` is the held-out set."""
    return ArithmeticText(split, seed, limit, count, ops, digits, mul_digits, per_cell)
