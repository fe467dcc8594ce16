"""Codebook statistics of the ids a tokenizer emits: usage, perplexity and the per-code histogram.

For ``q`` codebooks (``[B, h, w, q]`` images, ``[B, N, q]`` audio) every level is counted apart.

- usage: the fraction of the ``K`` codes emitted at least once.
- perplexity: ``exp(H)`` with ``H = -Σ p_k log p_k`` the entropy of the code frequencies; ``K`` for a
  uniformly used codebook, 1 when one code takes everything.

Works on text ids (lists), image ids and audio ids (padding frames past ``lengths`` are ignored).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

from zoo.errors import ZooError
from zoo.metrics.base import EvalContext, Metric


def flatten_ids(ctx: EvalContext) -> torch.Tensor:
    """The batch's ids as ``[M, q]`` (one row per emitted token, one column per codebook level)."""
    ids = ctx.ids
    if ctx.modality == "text":
        rows = [torch.as_tensor(list(row), dtype=torch.long) for row in ids]
        flat = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long)
        return flat.view(-1, 1)
    ids = torch.as_tensor(ids).long().cpu()
    if ctx.modality == "audio":  # [B, N] or [B, N, q]; frames past each item's length are padding
        lengths = ctx.encoded.lengths.cpu()
        valid = torch.arange(ids.shape[1])[None, :] < lengths[:, None]  # [B, N]
        return ids[valid].reshape(-1, ids.shape[2] if ids.ndim == 3 else 1)
    if ids.ndim == 4:  # [B, h, w, q]
        return ids.reshape(-1, ids.shape[-1])
    return ids.reshape(-1, 1)  # [B, h, w] or [B, L]


def _levels_hint(tokenizer) -> int | None:
    """Number of codebooks, when the tokenizer says so without encoding anything."""
    levels = getattr(tokenizer, "num_codebooks", None)
    if isinstance(levels, int) and levels > 0:
        return levels
    if tokenizer.modality == "text":
        return 1
    try:
        codebook = tokenizer.codebook
    except (ZooError, AttributeError):
        return None
    return int(codebook.shape[0]) if isinstance(codebook, torch.Tensor) and codebook.ndim == 3 else 1


class CodebookUsage(Metric):
    """Usage and perplexity per codebook level, and the per-code histogram (``figures``)."""

    name: ClassVar[str] = "codebook"
    higher_is_better: ClassVar[bool | None] = True

    def __init__(self) -> None:
        super().__init__()
        self.vocab_size: int | None = None

    def setup(self, tokenizer, data_key: str | None = None) -> None:
        self.vocab_size = int(tokenizer.vocab_size)
        levels = _levels_hint(tokenizer)
        if levels is not None:
            self.add_state("counts", torch.zeros(levels, self.vocab_size, dtype=torch.float64))

    def update(self, ctx: EvalContext) -> None:
        if self.vocab_size is None:
            self.setup(ctx.tokenizer)
        ids = flatten_ids(ctx)  # [M, q]
        levels = ids.shape[1]
        if not hasattr(self, "counts") or (self.counts.shape[0] != levels and float(self.counts.sum()) == 0):
            self.add_state("counts", torch.zeros(levels, self.vocab_size, dtype=torch.float64))
        if self.counts.shape[0] != levels:
            raise ZooError(f"codebook: ids have {levels} codebook levels, earlier batches had {self.counts.shape[0]}")
        ids = ids[(ids >= 0).all(1)]
        if ids.numel() and int(ids.max()) >= self.vocab_size:
            raise ZooError(f"codebook: id {int(ids.max())} is outside the vocabulary [0, {self.vocab_size})")
        for level in range(levels):
            self.counts[level] += torch.bincount(ids[:, level], minlength=self.vocab_size).double()

    def level_stats(self) -> list[dict[str, float]]:
        stats = []
        for counts in self.counts:
            total = float(counts.sum())
            p = counts[counts > 0] / max(total, 1.0)
            entropy = float(-(p * p.log()).sum())
            stats.append(
                {
                    "usage": float((counts > 0).sum()) / counts.numel(),
                    "perplexity": math.exp(entropy) if total else 0.0,
                    "tokens": total,
                }
            )
        return stats

    def compute(self) -> dict[str, float]:
        if not hasattr(self, "counts"):
            raise ZooError("codebook: no ids were seen")
        stats = self.level_stats()
        result = {
            "usage": sum(s["usage"] for s in stats) / len(stats),
            "perplexity": sum(s["perplexity"] for s in stats) / len(stats),
        }
        if len(stats) > 1:
            for level, s in enumerate(stats):
                result[f"usage.level{level}"] = s["usage"]
                result[f"perplexity.level{level}"] = s["perplexity"]
        return result

    def figures(self) -> dict[str, Any]:
        """The per-code histogram and the rank-frequency curve (log scale), per level (overlaid past 4 levels)."""
        if not hasattr(self, "counts") or float(self.counts.sum()) == 0:
            return {}
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        shares = [counts / max(counts.sum(), 1.0) for counts in self.counts.numpy()]
        stats = self.level_stats()
        if len(shares) > 4:  # many residual levels: one overlaid rank-frequency plot and usage per level
            fig, (left, right) = plt.subplots(1, 2, figsize=(9, 2.8))
            left.bar(range(len(stats)), [s["usage"] for s in stats], color="tab:blue")
            left.set_xlabel("level")
            left.set_ylabel("usage")
            for level, share in enumerate(shares):
                ranked = np.sort(share[share > 0])[::-1]
                right.semilogy(np.arange(1, len(ranked) + 1), ranked, label=f"level {level}", linewidth=1)
            right.set_xlabel("rank")
            right.set_ylabel("share of tokens")
            right.legend(fontsize=7, ncol=2)
            fig.tight_layout()
            return {"usage per code": fig}
        fig, axes = plt.subplots(len(shares), 2, figsize=(9, 2.4 * len(shares)), squeeze=False)
        for level, (share, level_stats) in enumerate(zip(shares, stats)):
            ax = axes[level, 0]
            if len(share) <= 64:
                ax.bar(range(len(share)), share, color="tab:blue")
            else:
                ax.fill_between(range(len(share)), share, step="mid", color="tab:blue", linewidth=0)
                ax.set_xlim(0, len(share) - 1)
            ax.set_title(
                f"level {level}: usage {level_stats['usage']:.1%}, perplexity {level_stats['perplexity']:.1f}",
                fontsize=9,
            )
            ax.set_xlabel("code id")
            ax.set_ylabel("share of tokens")
            ax = axes[level, 1]
            ranked = np.sort(share[share > 0])[::-1]
            ax.semilogy(np.arange(1, len(ranked) + 1), ranked, color="tab:orange")
            ax.axhline(1 / len(share), color="grey", linestyle=":", linewidth=1, label="uniform")
            ax.set_xlabel("rank")
            ax.legend(fontsize=8)
        fig.tight_layout()
        return {"usage per code": fig}
