"""The arithmetic probe of "Tokenization counts": one small GPT per number format, trained from scratch on sums.

    python -m zoo.studies.arithmetic_probe --out eval/results/arithmetic-probe

Singh & Strouse 2024 (https://arxiv.org/abs/2402.14903) find GPT-3.5 adds far better when numbers are cut into
3-digit groups from the right (``r2l3``, aligned with place value) than from the left (``l2r3``, GPT's own
``\\p{N}{1,3}``), and that left-to-right errors concentrate where the answer is longer than the operands: the
answer's groups are then shifted by one digit against the operands' groups. Here the same question is asked
of models trained from scratch: for each format of ``zoo.text.numbers`` (``1``, ``l2r3``, ``r2l3``) and each
seed, the zoo GPT (``zoo.generators.gpt``) learns the same problems (``zoo.data.arithmetic``) in the same
order, for the same optimizer steps of the same batch size; only the token sequences differ, so the token
counts (reported) differ by format. The loss is next-token cross-entropy on the answer and its end token.
Each model then answers the fixed held-out set by greedy decoding; exact match is counted by operand
lengths and by whether the answer is longer than the longer operand.

Writes ``arithmetic.json``, ``arithmetic.md`` and ``arithmetic.png`` under ``--out``, each atomically.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import shlex
import statistics
import sys
import time
from itertools import islice
from pathlib import Path

import torch
import torch.nn.functional as F

from zoo.data.arithmetic import Problem, held_out_problems, max_digits, training_problems
from zoo.errors import ZooError
from zoo.generators.gpt import GPT
from zoo.pretrained import atomic_write_bytes, atomic_write_text
from zoo.text.numbers import GROUPINGS, NumberTokenizer

# Sized to run 3 formats x 3 seeds in about 15 minutes on one busy CPU core (docs/arithmetic-probe.md).
SETTINGS = {"dim": 64, "depth": 2, "heads": 4, "steps": 1500, "batch": 64, "lr": 6e-3, "warmup": 100}


class FormatVocabulary:
    """The ids of ``NumberTokenizer(grouping)`` that arithmetic over ``ops`` can use, renumbered 0..size-1.

    The GPT's embedding and softmax span only these (14 ids for single-digit addition, 1114 with 3-digit groups):
    the tokenizer's other ids (bytes of other text) never occur, and on a shared CPU an output layer over all
    1368 ids would double the cost of the single-digit models.
    """

    def __init__(self, grouping: str, ops: str):
        self.tokenizer, self.ops = NumberTokenizer(grouping), ops
        widths = (1,) if grouping == "1" else (1, 2, 3)
        texts = [f"{value:0{width}d}" for width in widths for value in range(10**width)] + [*ops, "="]
        used = {i for text in texts for i in self.tokenizer.encode(text)}
        self.ids = sorted(used | {self.tokenizer.pad_id, self.tokenizer.eos_id})
        self._local = {i: local for local, i in enumerate(self.ids)}
        self.size = len(self.ids)
        self.pad_id, self.eos_id = self._local[self.tokenizer.pad_id], self._local[self.tokenizer.eos_id]

    def encode(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text)
        if not self._local.keys() >= set(ids):
            raise ZooError(f"{text!r}: holds characters outside this study's arithmetic ({self.ops!r} and '=')")
        return [self._local[i] for i in ids]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode([self.ids[i] for i in ids])


def problem_ids(vocabulary: FormatVocabulary, problem: Problem) -> tuple[list[int], int]:
    """The training sequence (prompt, answer, end token) and the prompt's length in tokens."""
    prompt = vocabulary.encode(problem.prompt)
    return prompt + vocabulary.encode(problem.answer) + [vocabulary.eos_id], len(prompt)


def batch_tensors(rows: list[tuple[list[int], int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ids [B, T] right-padded with ``pad_id``, and a mask [B, T] that is True on answer and end tokens."""
    length = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    scored = torch.zeros(len(rows), length, dtype=torch.bool)
    for row, (sequence, prompt_length) in enumerate(rows):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        scored[row, prompt_length : len(sequence)] = True
    return ids, scored


def train_model(vocabulary: FormatVocabulary, batches: list[list[Problem]], settings: dict, seed: int,
                context: int) -> tuple[GPT, int]:
    """A GPT trained on ``batches`` (one optimizer step each); returns it and the tokens it was fed."""
    torch.manual_seed(seed)
    model = GPT(vocabulary.size, context, settings["dim"], settings["depth"], settings["heads"], seed=seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=0.01, betas=(0.9, 0.98))
    steps, warmup = len(batches), settings["warmup"]
    # Linear warmup, then cosine decay to a tenth of the peak (nanoGPT's schedule).
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(s / steps, 1.0)))))
    model.train()
    tokens = 0
    for problems in batches:
        rows = [problem_ids(vocabulary, problem) for problem in problems]
        tokens += sum(len(ids) for ids, _ in rows)
        ids, scored = batch_tensors(rows, vocabulary.pad_id)
        logits = model(ids)  # logits[:, t] predicts ids[:, t]
        loss = F.cross_entropy(logits[scored], ids[scored])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
    model.eval()
    return model, tokens


@torch.no_grad()
def greedy_answers(model: GPT, vocabulary: FormatVocabulary, problems: list[Problem]) -> list[str | None]:
    """Each problem's greedy answer: the text before the first end token (None when none came in time).

    Problems of one (op, len a, len b) cell have prompts of one token length in every format, so each cell
    decodes as one batch; the budget is the cell's longest true answer plus the end token."""
    cells: dict[tuple, list[int]] = {}
    for index, problem in enumerate(problems):
        cells.setdefault((problem.op, *problem.lengths), []).append(index)
    answers: list[str | None] = [None] * len(problems)
    for indices in cells.values():
        prompts = torch.tensor([vocabulary.encode(problems[i].prompt) for i in indices])
        budget = max(len(vocabulary.encode(problems[i].answer)) for i in indices) + 1
        out = model.generate(budget, prompt=prompts, temperature=0)[:, prompts.shape[1] :].tolist()
        for i, row in zip(indices, out):
            if vocabulary.eos_id in row:
                answers[i] = vocabulary.decode(row[: row.index(vocabulary.eos_id)])
    return answers


def differing_digits(predicted: str | None, answer: str) -> list[int] | None:
    """1-based positions (from the left) where a wrong answer of the right length differs, else None."""
    if predicted is None or len(predicted) != len(answer) or predicted == answer:
        return None
    return [i + 1 for i, (p, a) in enumerate(zip(predicted, answer)) if p != a]


def score(problems: list[Problem], answers: list[str | None]) -> dict:
    """Exact match overall, by cell ``"op la lb"``, by ``"op longer-operand-digits longer|same"`` answer length,
    and where wrong answers of the right length differ."""
    def rate(pairs):
        pairs = list(pairs)
        return {"n": len(pairs), "exact": sum(ok for _, ok in pairs) / len(pairs)} if pairs else None

    marks = [(problem, answer == problem.answer) for problem, answer in zip(problems, answers)]
    cells: dict[str, list] = {}
    for problem, ok in marks:
        cells.setdefault(f"{problem.op} {problem.lengths[0]} {problem.lengths[1]}", []).append((problem, ok))
    by_longer: dict[str, list] = {}
    for problem, ok in marks:
        kind = "longer" if problem.answer_is_longer else "same"
        by_longer.setdefault(f"{problem.op} {max(problem.lengths)} {kind}", []).append((problem, ok))
    positions: dict[str, dict[str, int]] = {"longer": {}, "not_longer": {}}
    for problem, answer in zip(problems, answers):
        for digit in differing_digits(answer, problem.answer) or []:
            bucket = positions["longer" if problem.answer_is_longer else "not_longer"]
            bucket[str(digit)] = bucket.get(str(digit), 0) + 1
    return {
        "exact": rate(marks)["exact"],
        "answer_longer": rate((p, ok) for p, ok in marks if p.answer_is_longer),
        "answer_not_longer": rate((p, ok) for p, ok in marks if not p.answer_is_longer),
        "cells": {cell: rate(pairs) for cell, pairs in cells.items()},
        "by_longer_operand": {key: rate(pairs) for key, pairs in by_longer.items()},
        "wrong_digit_positions": positions,
    }


def run_study(args: argparse.Namespace, command: str) -> dict:
    from zoo.provenance import git_state

    settings = {key: getattr(args, key) for key in SETTINGS}
    held_out = held_out_problems(args.ops, args.digits, args.mul_digits, args.per_cell, seed=args.test_seed)
    longest = max(max_digits(op, args.digits, args.mul_digits) for op in args.ops)
    # prompt "a op b =" and answer (at most 2 * longest digits) with its end token, in single digits: the longest
    context = 4 * longest + 3
    runs = []
    for seed in args.seeds:
        stream = training_problems(args.ops, args.digits, args.mul_digits, seed, exclude=frozenset(held_out))
        batches = [list(islice(stream, args.batch)) for _ in range(args.steps)]  # the same problems for every format
        for grouping in args.formats:
            vocabulary = FormatVocabulary(grouping, args.ops)
            started = time.perf_counter()
            model, tokens = train_model(vocabulary, batches, settings, seed, context)
            trained = time.perf_counter() - started
            found = score(held_out, greedy_answers(model, vocabulary, held_out))
            runs.append({"format": grouping, "seed": seed, "vocabulary": vocabulary.size, "train_tokens": tokens,
                         "parameters": sum(p.numel() for p in model.parameters()),
                         "tokens_per_problem": tokens / (args.steps * args.batch),
                         "train_seconds": round(trained, 1), **found})
            print(f"{grouping:>5} seed {seed}: exact {found['exact']:.3f} ({trained:.0f} s)", file=sys.stderr)
    return {"command": command, "git": git_state(), "ops": args.ops, "digits": args.digits,
            "mul_digits": args.mul_digits, "test_seed": args.test_seed, "held_out": len(held_out),
            "per_cell": args.per_cell, "seeds": args.seeds, "gpt": {**settings, "context": context},
            "runs": runs}


# -- the report ------------------------------------------------------------------------------------------------


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.fmean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def _top(study: dict, op: str) -> int:
    return max_digits(op, study["digits"], study["mul_digits"])


def _by_format(study: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for run in study["runs"]:
        found.setdefault(run["format"], []).append(run)
    return found


def _cell_exact(runs: list[dict], cell: str) -> float | None:
    values = [run["cells"][cell]["exact"] for run in runs if run["cells"].get(cell)]
    return statistics.fmean(values) if values else None


def markdown(study: dict) -> str:
    gpt = study["gpt"]
    problems = ", ".join(f"`a{op}b` with operands of 1-{_top(study, op)} digits" for op in study["ops"])
    lines = ["# The arithmetic probe of \"Tokenization counts\"", "", f"Command: `{study['command']}`", "",
             f"Problems {problems}; "
             f"held-out set of {study['held_out']} problems (up to {study['per_cell']} per length cell, seed "
             f"{study['test_seed']}), training seeds {', '.join(map(str, study['seeds']))}. GPT {gpt['dim']}-dim, "
             f"{gpt['depth']} layers, {gpt['heads']} heads, tied embeddings; {gpt['steps']} steps "
             f"of {gpt['batch']} problems (the same problems in the same order for every format), lr {gpt['lr']}, "
             "greedy decoding. Exact match in %, mean ± sd over seeds.", "",
             "| format | exact match | answer longer than operands | answer not longer | tokens / problem "
             "| ids | parameters | train s / seed |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    groups = _by_format(study)
    for grouping, runs in groups.items():
        longer = [r["answer_longer"]["exact"] for r in runs if r["answer_longer"]]
        shorter = [r["answer_not_longer"]["exact"] for r in runs if r["answer_not_longer"]]
        lines.append(f"| `{grouping}` | {_mean_sd([r['exact'] for r in runs])} | "
                     f"{_mean_sd(longer) if longer else '–'} | {_mean_sd(shorter) if shorter else '–'} | "
                     f"{statistics.fmean(r['tokens_per_problem'] for r in runs):.2f} | {runs[0]['vocabulary']} | "
                     f"{runs[0]['parameters']:,} | "
                     f"{statistics.fmean(r['train_seconds'] for r in runs):.0f} |")
    for op in study["ops"]:
        top = _top(study, op)
        lines += ["", f"Exact match (%) of `a{op}b` by digits of the longer operand, answer longer than it or not "
                  "(mean over seeds; n per seed):", "",
                  "| format | " + " | ".join(f"{length}: {kind}" for length in range(1, top + 1)
                                              for kind in ("not longer", "longer")) + " |",
                  "|---|" + "---:|" * (2 * top)]
        for grouping, runs in groups.items():
            cells = []
            for length in range(1, top + 1):
                for kind in ("same", "longer"):
                    value, found = _pooled(runs, f"{op} {length} {kind}"), runs[0]["by_longer_operand"].get(
                        f"{op} {length} {kind}")
                    cells.append("–" if value is None else f"{100 * value:.1f} (n {found['n']})")
            lines.append(f"| `{grouping}` | " + " | ".join(cells) + " |")
    lines += ["", "Each seed (overall exact match, %):", "", "| format | " + " | ".join(
        f"seed {s}" for s in study["seeds"]) + " |", "|---|" + "---:|" * len(study["seeds"])]
    for grouping, runs in groups.items():
        lines.append(f"| `{grouping}` | " + " | ".join(f"{100 * r['exact']:.1f}" for r in runs) + " |")
    for op in study["ops"]:
        top = _top(study, op)
        lines += ["", f"Exact match (%) by operand lengths, `a{op}b`, mean over seeds (rows: digits of a; "
                  "columns: digits of b):", "",
                  "| format | len a | " + " | ".join(str(lb) for lb in range(1, top + 1)) + " |",
                  "|---|---:|" + "---:|" * top]
        for grouping, runs in groups.items():
            for la in range(1, top + 1):
                values = [_cell_exact(runs, f"{op} {la} {lb}") for lb in range(1, top + 1)]
                lines.append(f"| `{grouping}` | {la} | " + " | ".join(
                    "–" if v is None else f"{100 * v:.0f}" for v in values) + " |")
    lines += ["", "Wrong answers of the right length, by which digit (from the left) is wrong, summed over seeds:",
              "", "| format | answer longer: wrong digit -> count | answer not longer |", "|---|---|---|"]
    for grouping, runs in groups.items():
        cells = []
        for bucket in ("longer", "not_longer"):
            total: dict[int, int] = {}
            for run in runs:
                for digit, count in run["wrong_digit_positions"][bucket].items():
                    total[int(digit)] = total.get(int(digit), 0) + count
            cells.append(", ".join(f"{d}: {total[d]}" for d in sorted(total)) or "–")
        lines.append(f"| `{grouping}` | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def plot_png(study: dict) -> bytes:
    """Per operator: exact match against the longer operand's digits, per format, answer longer (dashed) or not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _by_format(study)
    fig, axes = plt.subplots(1, len(study["ops"]), figsize=(5.4 * len(study["ops"]), 3.9), squeeze=False)
    for ax, op in zip(axes[0], study["ops"]):
        top = _top(study, op)
        for (grouping, runs), colour in zip(groups.items(), ("tab:grey", "tab:red", "tab:blue", "tab:green")):
            for kind, style in (("same", "o-"), ("longer", "s--")):
                points = [(length, _pooled(runs, f"{op} {length} {kind}")) for length in range(1, top + 1)]
                points = [(x, y) for x, y in points if y is not None]
                ax.plot([x for x, _ in points], [y for _, y in points], style, color=colour, markersize=4,
                        label=f"{grouping}, answer {'longer' if kind == 'longer' else 'not longer'}")
        ax.set(title=f"a{op}b (mean over seeds)", xlabel="digits of the longer operand", ylabel="exact match",
               ylim=(-0.03, 1.03), xticks=range(1, top + 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _pooled(runs: list[dict], key: str) -> float | None:
    """Exact match of one ``by_longer_operand`` bucket, mean over the runs that have it."""
    values = [run["by_longer_operand"][key]["exact"] for run in runs if run["by_longer_operand"].get(key)]
    return statistics.fmean(values) if values else None


def write_study(out_dir: Path, study: dict) -> dict[str, Path]:
    paths = {"json": out_dir / "arithmetic.json", "markdown": out_dir / "arithmetic.md",
             "plot": out_dir / "arithmetic.png"}
    atomic_write_text(paths["json"], json.dumps(study, indent=2, allow_nan=False) + "\n")
    atomic_write_text(paths["markdown"], markdown(study))
    atomic_write_bytes(paths["plot"], plot_png(study))
    return paths


def parser() -> argparse.ArgumentParser:
    found = argparse.ArgumentParser(prog="python -m zoo.studies.arithmetic_probe",
                                    description=__doc__.splitlines()[0])
    found.add_argument("--out", required=True, help="folder for arithmetic.json, arithmetic.md and arithmetic.png")
    found.add_argument("--formats", nargs="*", default=list(GROUPINGS), choices=GROUPINGS,
                       help="number groupings (zoo.text.numbers)")
    found.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds (data order and init)")
    found.add_argument("--ops", default="+", help="operators: '+', '*' or '+*' (mixed in one model)")
    found.add_argument("--digits", type=int, default=3, help="addition operands have 1..DIGITS digits")
    found.add_argument("--mul-digits", type=int, default=2, help="multiplication operands have 1..MUL_DIGITS digits")
    found.add_argument("--per-cell", type=int, default=40, help="held-out problems per (op, len a, len b) cell")
    found.add_argument("--test-seed", type=int, default=0, help="seed of the held-out set")
    for name, default in SETTINGS.items():
        found.add_argument(f"--{name}", type=type(default), default=default, help=f"GPT {name} (default {default})")
    found.add_argument("--threads", type=int, default=1, help="torch intra-op threads (one is fastest on a busy CPU)")
    return found


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python -m zoo.studies.arithmetic_probe " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        if not args.formats:
            raise ZooError("--formats: name at least one of " + ", ".join(GROUPINGS))
        study = run_study(args, command)
        paths = write_study(Path(args.out), study)
    except ZooError as error:
        print(f"arithmetic_probe: error: {error}", file=sys.stderr)
        return 2
    print(paths["markdown"].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
