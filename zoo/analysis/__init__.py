"""Analyses of tokenizers: what a BPE's merges reveal about its training data (``infer_mixture``)."""

from zoo.analysis.merges import BPEMerges, load_bpe
from zoo.analysis.mixture import (
    MixtureResult,
    infer_mixture,
    log10_mse,
    mixture_mse,
    solve_mixture,
    solve_mixture_path,
)
from zoo.analysis.pair_counts import PairCountHistory, SymbolTable, count_category

__all__ = [
    "BPEMerges",
    "MixtureResult",
    "PairCountHistory",
    "SymbolTable",
    "count_category",
    "infer_mixture",
    "load_bpe",
    "log10_mse",
    "mixture_mse",
    "solve_mixture",
    "solve_mixture_path",
]
