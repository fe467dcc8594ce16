"""Data mixture inference: which share of a BPE's training data came from each category.

Hayase, Liu et al. 2024, "Data Mixture Inference: What do BPE Tokenizers Reveal about their Training
Data?" (https://arxiv.org/abs/2407.16607). BPE training picks, at every step t, the most frequent pair
m_t of its training data. With sample text of each category i and c_{i,p}^{(t)} the count of pair p in
it after t merges (``pair_counts``), the training-data mixture alpha must make m_t beat every other pair:

    sum_i alpha_i (c_{i,m_t}^{(t)} - c_{i,p}^{(t)}) / d_i  + v_t + v_p >= 0      for all t, p != m_t

with alpha on the simplex, d_i the sample's total pair count, and slacks v_t (per step) and v_p (per
competing pair) >= 0 absorbing sampling noise; the LP minimises sum v_t + sum v_p. There are T x |pairs|
constraints, so they are generated lazily: solve with the constraints found so far, replay the merges
under the current mixture, add the most violated competitors (at most ``competitors_per_step`` per
step, ``max_new`` per round), repeat until nothing is violated. alpha measures shares of *pairs*;
``byte_shares`` converts them with each sample's bytes per pair (alpha_i bytes_i / pairs_i, renormalised).
Solved with HiGHS through ``scipy.optimize.linprog`` (the authors use Gurobi).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from zoo.analysis.merges import BPEMerges, load_bpe
from zoo.analysis.pair_counts import PairCountHistory, SymbolTable, count_category
from zoo.errors import ZooError

# Counts enter the LP as frequencies per million pairs, so that coefficients sit well above HiGHS's 1e-7 tolerance.
_SCALE = 1e6


@dataclass
class MixtureResult:
    """The inferred mixture and how the LP got there."""

    categories: list[str]
    byte_shares: dict[str, float]  # the answer: share of training bytes per category
    pair_shares: dict[str, float]  # the LP's alpha: share of training pairs per category
    merges_used: int
    missing_merges: int  # merges whose pair never occurs in any sample (no constraint possible)
    constraints: int
    rounds: int
    objective: float
    converged: bool

    def table(self) -> str:
        width = max(len(c) for c in self.categories)
        rows = sorted(self.categories, key=lambda c: -self.byte_shares[c])
        return "\n".join(f"{c:<{width}}  {100 * self.byte_shares[c]:6.2f}%" for c in rows)


class _CountTables:
    """All categories' pair counts on one dense pair index: the start table and each step's updates."""

    def __init__(self, histories: Mapping[str, PairCountHistory], num_steps: int):
        per_category = list(histories.values())
        merge_keys = np.array(per_category[0].merge_keys[:num_steps], dtype=np.int64)
        initial_keys = [np.fromiter(h.initial.keys(), dtype=np.int64, count=len(h.initial)) for h in per_category]
        step_keys = [keys for h in per_category for keys, _ in h.steps[:num_steps]]
        self.keys = np.unique(np.concatenate([*initial_keys, *step_keys, merge_keys]))
        self.start = np.zeros((len(per_category), len(self.keys)))  # [n, P] counts before any merge
        for i, (h, keys) in enumerate(zip(per_category, initial_keys)):
            self.start[i, self.index(keys)] = np.fromiter(h.initial.values(), dtype=np.float64, count=len(keys))
        # updates[t][i] = (pair ids, counts in category i after merge t)
        self.updates = [
            [(self.index(h.steps[t][0]), h.steps[t][1].astype(np.float64)) for h in per_category]
            for t in range(num_steps)
        ]
        self.merge_ids = self.index(merge_keys)
        self.scale = np.array([_SCALE / max(h.num_pairs, 1) for h in per_category])  # [n] per-million-pairs factor

    def index(self, keys: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.keys, keys)

    def apply(self, counts: np.ndarray, step: int) -> np.ndarray:
        """Apply merge ``step``'s updates to ``counts`` [n, P] in place; return the pair ids touched."""
        touched = []
        for i, (ids, values) in enumerate(self.updates[step]):
            counts[i, ids] = values
            touched.append(ids)
        return np.unique(np.concatenate(touched)) if touched else np.zeros(0, dtype=np.int64)


@dataclass
class _Constraint:
    step: int
    pair: int
    coefficients: np.ndarray  # [n]: (c_m - c_p) per million pairs, at the step's counts


def _find_violations(
    tables: _CountTables,
    num_steps: int,
    alpha: np.ndarray,
    step_slack: np.ndarray,
    pair_slack: np.ndarray,
    known: set[tuple[int, int]],
    competitors_per_step: int,
    max_new: int,
) -> tuple[list[_Constraint], int]:
    """Replay the merges under mixture ``alpha``; return constraints violated by the current solution.

    A pair p violates step t when its mixture-weighted frequency, less its slack, exceeds the merge's
    plus the step's slack. Also returns how many steps had a merge absent from every sample.
    """
    weights = alpha * tables.scale  # [n]
    counts = tables.start.copy()  # [n, P]
    priority = weights @ counts - pair_slack  # [P]
    found: list[_Constraint] = []
    missing = 0
    for t, merge in enumerate(tables.merge_ids[:num_steps]):
        merge_counts = counts[:, merge]
        if merge_counts.sum() == 0:
            missing += 1
        else:
            merge_score = float(weights @ merge_counts)
            cutoff = merge_score + step_slack[t] + 1e-7 * max(1.0, abs(merge_score))
            violators = np.flatnonzero(priority > cutoff)
            violators = [
                int(p) for p in violators[np.argsort(-priority[violators])] if p != merge and (t, p) not in known
            ]
            for p in violators[:competitors_per_step]:
                coefficients = (merge_counts - counts[:, p]) * tables.scale
                found.append(_Constraint(t, p, coefficients))
            if len(found) >= max_new:
                break
        touched = tables.apply(counts, t)
        priority[touched] = weights @ counts[:, touched] - pair_slack[touched]
    return found, missing


def _solve_lp(constraints: list[_Constraint], num_categories: int) -> tuple[np.ndarray, dict, dict, float]:
    """Minimise sum of slacks subject to the constraints; alpha on the simplex. Returns alpha, slacks, objective."""
    steps = sorted({c.step for c in constraints})
    pairs = sorted({c.pair for c in constraints})
    step_col = {t: num_categories + j for j, t in enumerate(steps)}
    pair_col = {p: num_categories + len(steps) + j for j, p in enumerate(pairs)}
    num_vars = num_categories + len(steps) + len(pairs)
    rows, cols, vals = [], [], []
    for r, c in enumerate(constraints):
        # -(a . alpha) - v_t - v_p <= 0
        rows.extend([r] * (num_categories + 2))
        cols.extend([*range(num_categories), step_col[c.step], pair_col[c.pair]])
        vals.extend([*(-c.coefficients), -1.0, -1.0])
    a_ub = sparse.csr_matrix((vals, (rows, cols)), shape=(len(constraints), num_vars))
    cost = np.r_[np.zeros(num_categories), np.ones(num_vars - num_categories)]
    a_eq = sparse.csr_matrix(np.r_[np.ones(num_categories), np.zeros(num_vars - num_categories)][None, :])
    bounds = [(0.0, 1.0)] * num_categories + [(0.0, None)] * (num_vars - num_categories)
    result = linprog(
        cost, A_ub=a_ub, b_ub=np.zeros(len(constraints)), A_eq=a_eq, b_eq=[1.0], bounds=bounds, method="highs"
    )
    if result.status != 0:
        raise ZooError(f"mixture LP failed: {result.message}")
    x = result.x
    alpha = np.clip(x[:num_categories], 0.0, None)
    alpha /= alpha.sum()
    return (
        alpha,
        {t: x[col] for t, col in step_col.items()},
        {p: x[col] for p, col in pair_col.items()},
        float(result.fun),
    )


def _check_histories(histories: Mapping[str, PairCountHistory]) -> int:
    if len(histories) < 2:
        raise ZooError(f"mixture inference needs at least two categories, got {len(histories)}")
    lengths = {len(h.merge_keys) for h in histories.values()}
    if len(lengths) != 1 or len({tuple(h.merge_keys[:8]) for h in histories.values()}) != 1:
        raise ZooError("pair-count histories were made with different merge lists; count every category with one BPE")
    return lengths.pop()


def solve_mixture_path(
    histories: Mapping[str, PairCountHistory],
    merge_counts: Iterable[int],
    competitors_per_step: int = 10,
    max_new: int | None = None,
    max_rounds: int = 200,
) -> list[MixtureResult]:
    """Solve the LP on growing prefixes of the merge list (e.g. 100, 300, 1000 merges), one result per prefix.

    The first ``T`` merges' constraints stay valid for every longer prefix, so each stage starts from the
    previous stage's constraints and mixture; this continuation is much cheaper than solving the longest
    prefix from a uniform start (few rounds, few constraints that are irrelevant near the answer).
    ``max_new`` caps the constraints added per round (None: every violated step adds its competitors).
    """
    available = _check_histories(histories)
    stages = sorted({min(int(t), available) for t in merge_counts})
    if not stages or stages[0] < 1:
        raise ZooError(f"merge counts must be >= 1, got {list(merge_counts)}")
    categories = list(histories)
    n = len(categories)
    tables = _CountTables(histories, stages[-1])
    alpha = np.full(n, 1.0 / n)
    step_slack = np.zeros(stages[-1])
    pair_slack = np.zeros(len(tables.keys))
    constraints: list[_Constraint] = []
    known: set[tuple[int, int]] = set()
    objective = 0.0
    pairs = np.array([histories[c].num_pairs for c in categories], dtype=np.float64)
    num_bytes = np.array([histories[c].num_bytes for c in categories], dtype=np.float64)
    results = []
    for num_steps in stages:
        converged, rounds, missing = False, 0, 0
        while rounds < max_rounds:
            rounds += 1
            new, missing = _find_violations(
                tables, num_steps, alpha, step_slack, pair_slack, known, competitors_per_step, max_new or 1 << 62
            )
            if not new:
                converged = True
                break
            constraints.extend(new)
            known.update((c.step, c.pair) for c in new)
            alpha, step_values, pair_values, objective = _solve_lp(constraints, n)
            step_slack[:] = 0.0
            step_slack[list(step_values)] = list(step_values.values())
            pair_slack[:] = 0.0
            pair_slack[list(pair_values)] = list(pair_values.values())
        shares = alpha * num_bytes / pairs  # pair shares -> byte shares
        shares /= shares.sum()
        results.append(
            MixtureResult(
                categories=categories,
                byte_shares=dict(zip(categories, shares.tolist())),
                pair_shares=dict(zip(categories, alpha.tolist())),
                merges_used=num_steps,
                missing_merges=missing,
                constraints=len(constraints),
                rounds=rounds,
                objective=objective,
                converged=converged,
            )
        )
    return results


def solve_mixture(
    histories: Mapping[str, PairCountHistory], num_merges: int | None = None, **solver_options
) -> MixtureResult:
    """Infer the mixture from pair-count histories (one per category, same merges) with lazy constraints.

    Solves on prefixes 100, 300, 1000, ... up to ``num_merges`` (see ``solve_mixture_path``) and returns the last.
    """
    available = _check_histories(histories)
    if num_merges is not None and num_merges < 1:
        raise ZooError(f"num_merges must be >= 1, got {num_merges}")
    total = available if num_merges is None else min(num_merges, available)
    stages = [t for t in (100, 300, 1000, 3000, 10000, 30000) if t < total] + [total]
    return solve_mixture_path(histories, stages, **solver_options)[-1]


def _read_category(source: str | Path | Iterable[str]) -> Iterable[str]:
    """A category sample: a text file, a folder of text files (read recursively), or an iterable of strings."""
    if isinstance(source, str) and not Path(source).exists():
        raise ZooError(f"category sample {source!r}: no such file or folder")
    if isinstance(source, (str, Path)):
        path = Path(source)
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
        if not files:
            raise ZooError(f"category sample {path}: the folder holds no files")
        return (f.read_text(encoding="utf-8", errors="replace") for f in files)
    return source


def infer_mixture(
    tokenizer: str | Path | BPEMerges,
    samples: Mapping[str, str | Path | Iterable[str]],
    num_merges: int | None = None,
    pattern: str | None = None,
    **solver_options,
) -> MixtureResult:
    """Infer a BPE tokenizer's training mixture over the categories of ``samples``.

    Args:
        tokenizer: a ``tokenizer.json``, a folder holding one, a zoo BPE registry name, a ``.tiktoken``
            file (with ``pattern``), or a ``BPEMerges``.
        samples: category name -> sample text of that category (a file, a folder of files, or strings).
            Use text *not* seen in training, drawn like the training data of that category.
        num_merges: use the first N merges (default: all; the paper's accuracy uses ~30k).
        solver_options: ``competitors_per_step``, ``max_new``, ``max_rounds`` of the lazy LP.
    """
    bpe = tokenizer if isinstance(tokenizer, BPEMerges) else load_bpe(tokenizer, pattern=pattern)
    if num_merges is not None and num_merges < 1:
        raise ZooError(f"num_merges must be >= 1, got {num_merges}")
    symbols = SymbolTable()
    histories = {
        name: count_category(_read_category(source), bpe, symbols, num_merges) for name, source in samples.items()
    }
    return solve_mixture(histories, num_merges=num_merges, **solver_options)


def mixture_mse(truth: Mapping[str, float], predicted: Mapping[str, float]) -> float:
    """Mean squared error over categories between two mixtures (the paper's score; it reports log10 of it)."""
    if set(truth) != set(predicted):
        raise ZooError(f"mixtures name different categories: {sorted(truth)} vs {sorted(predicted)}")
    return sum((predicted[c] - truth[c]) ** 2 for c in truth) / len(truth)


def log10_mse(truth: Mapping[str, float], predicted: Mapping[str, float]) -> float:
    return math.log10(max(mixture_mse(truth, predicted), 1e-30))
