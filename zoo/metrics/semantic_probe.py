"""Semantic probe for image tokenizers: how linearly a labelled task can be read from the tokens.

Two views of the same ids, each scored by its own logistic regression:

- ``semantic``: the quantised semantic features, ``tokenizer.semantic_embed(ids)`` when the tokenizer
  has a semantic codebook (TokenFlow), else its code vectors ``tokenizer.embed(ids)`` (a pixel VQ's only
  quantised features), pooled over tokens (``pool: mean``, or ``flatten`` to keep positions);
- ``histogram``: the normalised bag of ids (one block of ``vocab_size`` per codebook level): what a
  model sees that only counts tokens (``zoo.metrics.probe.probe_features(..., "histogram")``).

The probes are fitted on a labelled train split read by the metric itself (option ``train``, a dataset
spec) when the suite reaches the tokenizer, and scored on the suite's data, which must be held out
from it (e.g. ``train: fashion-mnist:split=train`` and suite data ``fashion-mnist:split=test``). The
held-out state is summable: correct counts per view, the item count and label counts (for chance).
The train split, the fit and the state are the generic linear probe's (``zoo.metrics.probe.ProbeMetric``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from zoo.errors import ZooError
from zoo.metrics.base import EvalContext
from zoo.metrics.probe import ProbeMetric, probe_features

VIEWS = ("semantic", "histogram")
POOLS = ("mean", "flatten")


@torch.no_grad()
def semantic_features(tokenizer, ids: torch.Tensor, pool: str = "mean") -> torch.Tensor:
    """Quantised semantic features per image ``[B, D]`` (``[B, tokens * D]`` with ``pool="flatten"``)."""
    if pool not in POOLS:
        raise ZooError(f"semantic probe: pool must be one of {POOLS}, got {pool!r}")
    embed = getattr(tokenizer, "semantic_embed", None)
    embed = embed if callable(embed) else getattr(tokenizer, "embed", None)
    if not callable(embed):
        raise ZooError(f"semantic probe: {type(tokenizer).__name__} has neither semantic_embed(ids) nor embed(ids)")
    vectors = embed(ids).float().cpu()
    vectors = vectors.reshape(vectors.shape[0], -1, vectors.shape[-1])  # [B, tokens, D]
    pooled = vectors.mean(dim=1) if pool == "mean" else vectors.flatten(1)
    return pooled.double()


class SemanticProbe(ProbeMetric):
    """Linear-probe accuracy from quantised semantic features and from token histograms (image tokenizers).

    Args:
        train: dataset spec of the labelled train split (e.g. ``fashion-mnist:split=train,size=32``).
        views: which of ``semantic`` and ``histogram`` to report.
        limit: at most this many train items.
        batch_size: batch size for encoding the train split.
        pool: ``mean`` over tokens (default) or ``flatten`` for the semantic view.
        C: inverse L2 strength of the logistic regressions (on standardised features).
        max_iter: L-BFGS iterations.
        num_labels: an upper bound on label values (size of the chance-level state).
    """

    name: ClassVar[str] = "semantic-probe"
    what: ClassVar[str] = "semantic probe"
    higher_is_better: ClassVar[bool | None] = True
    directions: ClassVar[dict[str, bool | None]] = {"semantic": True, "histogram": True, "chance": None,
                                                    "train_items": None}
    modalities: ClassVar[tuple[str, ...]] = ("image",)

    def __init__(self, train: str | dict, views: list | tuple = VIEWS, limit: int | None = None, batch_size: int = 64,
                 pool: str = "mean", C: float = 1.0, max_iter: int = 1000, num_labels: int = 1024) -> None:
        views = list(views)
        if not views or any(v not in VIEWS for v in views) or len(set(views)) != len(views):
            raise ZooError(f"semantic probe: views must be distinct names from {VIEWS}, got {views}")
        if pool not in POOLS:
            raise ZooError(f"semantic probe: pool must be one of {POOLS}, got {pool!r}")
        super().__init__(train, views, "label", limit, batch_size, C, max_iter, num_labels)
        self.pool = pool

    def view_features(self, ctx: EvalContext) -> dict[str, np.ndarray]:
        found = {}
        for view in self.views:
            if view == "semantic":
                found[view] = semantic_features(ctx.tokenizer, ctx.ids, self.pool).numpy()
            else:
                found[view] = probe_features(ctx.tokenizer, ctx.batch, "histogram").numpy()
        return found
