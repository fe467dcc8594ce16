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
The probe itself is the generic linear probe's (``zoo.metrics.probe.fit_linear_probe``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from zoo.errors import ZooError
from zoo.metrics.base import EvalContext, Metric
from zoo.metrics.probe import fit_linear_probe, probe_features

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


class SemanticProbe(Metric):
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
    higher_is_better: ClassVar[bool | None] = True
    directions: ClassVar[dict[str, bool | None]] = {"semantic": True, "histogram": True, "chance": None,
                                                    "train_items": None}
    modalities: ClassVar[tuple[str, ...]] = ("image",)

    def __init__(self, train: str | dict, views: list | tuple = VIEWS, limit: int | None = None, batch_size: int = 64,
                 pool: str = "mean", C: float = 1.0, max_iter: int = 1000, num_labels: int = 1024) -> None:
        super().__init__()
        views = list(views)
        if not views or any(v not in VIEWS for v in views) or len(set(views)) != len(views):
            raise ZooError(f"semantic probe: views must be distinct names from {VIEWS}, got {views}")
        if pool not in POOLS:
            raise ZooError(f"semantic probe: pool must be one of {POOLS}, got {pool!r}")
        self.train_spec, self.views, self.limit, self.batch_size = train, views, limit, batch_size
        self.pool, self.C, self.max_iter = pool, C, max_iter
        self.add_state("correct", torch.zeros(len(views), dtype=torch.float64))
        self.add_state("total", torch.zeros((), dtype=torch.float64))
        self.add_state("label_counts", torch.zeros(num_labels, dtype=torch.float64))
        self.probes: dict | None = None
        self.train_items = 0

    def reset(self) -> None:
        super().reset()
        self.probes = None

    def _view(self, view: str, tokenizer, ids: torch.Tensor, batch: dict) -> np.ndarray:
        if view == "semantic":
            return semantic_features(tokenizer, ids, self.pool).numpy()
        return probe_features(tokenizer, batch, "histogram").numpy()

    @staticmethod
    def _labels(batch: dict, where: str) -> np.ndarray:
        if "label" not in batch:
            raise ZooError(f"semantic probe: {where} has no 'label' entries (keys: {sorted(batch)})")
        return torch.as_tensor(batch["label"]).long().cpu().numpy()

    def setup(self, tokenizer, data_key: str | None = None) -> None:
        """Encode the train split with the frozen tokenizer and fit one probe per view."""
        from zoo.data import collate, load_dataset

        dataset = load_dataset(self.train_spec)
        count = len(dataset) if self.limit is None else min(self.limit, len(dataset))
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, range(count)),
                                             batch_size=self.batch_size, collate_fn=collate)
        device = getattr(tokenizer, "device", torch.device("cpu"))
        features: dict[str, list] = {view: [] for view in self.views}
        labels = []
        with torch.no_grad():
            for batch in loader:
                if "image" not in batch:
                    raise ZooError(f"semantic probe: train data {self.train_spec!r} yields no images")
                ids = tokenizer.encode(batch["image"].to(device))
                for view in self.views:
                    features[view].append(self._view(view, tokenizer, ids, batch))
                labels.append(self._labels(batch, f"train data {self.train_spec!r}"))
        if not labels or len(np.unique(np.concatenate(labels))) < 2:
            raise ZooError(f"semantic probe: train data {self.train_spec!r} needs items of at least two labels")
        y = np.concatenate(labels)
        self.probes = {view: fit_linear_probe(np.concatenate(features[view]), y, self.C, self.max_iter)
                       for view in self.views}
        self.train_items = count

    def update(self, ctx: EvalContext) -> None:
        if self.probes is None:
            self.setup(ctx.tokenizer)
        labels = self._labels(ctx.batch, "the suite's data")
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.label_counts)):
            raise ZooError(f"semantic probe: labels must lie in [0, {len(self.label_counts)}); raise num_labels")
        for index, view in enumerate(self.views):
            predicted = self.probes[view].predict(self._view(view, ctx.tokenizer, ctx.ids, ctx.batch))
            self.correct[index] += float((predicted == labels).sum())
        self.total += float(labels.size)
        self.label_counts += torch.bincount(torch.as_tensor(labels), minlength=len(self.label_counts)).double()

    def compute(self) -> dict[str, float]:
        if float(self.total) == 0:
            raise ZooError("semantic probe: no held-out item was seen")
        result = {view: float(self.correct[i] / self.total) for i, view in enumerate(self.views)}
        result["chance"] = float(self.label_counts.max() / self.total)
        result["train_items"] = float(self.train_items)
        return result
