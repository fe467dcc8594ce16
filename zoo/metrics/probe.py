"""Linear-probe accuracy of frozen features, for every modality.

A frozen model is judged by how linearly separable its representation makes a labelled task: fit a
logistic regression on features of a labelled train split, then report accuracy on the suite's
(held-out) data. Features per item, chosen by ``features``:

- ``hidden``: the model's own features, ``tokenizer.features(inputs, lengths)`` for audio or
  ``tokenizer.features(inputs)`` otherwise, returning ``[B, N, D]`` (with optional lengths) or ``[B, D]``;
  mean-pooled over valid positions. SSL models and encoders offer it.
- ``histogram``: the normalised bag of token ids (one block of ``vocab_size`` per codebook level).
- ``codes``: the mean of ``tokenizer.embed(ids)`` over valid tokens.
- ``auto``: ``hidden`` when the tokenizer has ``features``, else ``histogram``.

The train split is read by the metric itself (option ``train``, a dataset spec) before the first
held-out batch; the held-out state is summable (correct, total and label counts for chance level).
``ProbeMetric`` holds that machinery once for every probe (``zoo.metrics.semantic_probe`` too).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from zoo.errors import ZooError
from zoo.metrics.base import EvalContext, Metric

FEATURES = ("auto", "hidden", "histogram", "codes")


def _inputs_and_lengths(tokenizer, batch: dict):
    key = {"image": "image", "audio": "audio", "text": "text"}[tokenizer.modality]
    if key not in batch:
        raise ZooError(f"linear probe: data yields no {key!r} entries for a {tokenizer.modality} tokenizer")
    return batch[key], batch.get("audio_lengths") if key == "audio" else None


def _valid_mask(ids: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """``[B, L]`` True at valid tokens of ids flattened to ``[B, L, q]``."""
    if lengths is None:
        return torch.ones(ids.shape[:2], dtype=torch.bool)
    return torch.arange(ids.shape[1]).unsqueeze(0) < lengths.cpu().unsqueeze(1)


def _ids_as_rows(tokenizer, inputs, lengths) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``[B, L, q]`` (padding ``-1``) and the valid mask ``[B, L]`` for any modality."""
    if tokenizer.modality == "audio":
        encoded = tokenizer.encode(inputs, lengths=lengths)
        ids, token_lengths = encoded.ids.cpu(), encoded.lengths
        ids = ids if ids.ndim == 3 else ids.unsqueeze(-1)
        return ids, _valid_mask(ids, token_lengths)
    if tokenizer.modality == "text":
        rows = tokenizer.encode(list(inputs))
        width = max((len(r) for r in rows), default=0)
        ids = torch.full((len(rows), max(width, 1), 1), -1, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row), 0] = torch.as_tensor(row, dtype=torch.long)
        return ids, ids[..., 0] >= 0
    ids = torch.as_tensor(tokenizer.encode(inputs)).cpu().long()
    ids = ids.reshape(ids.shape[0], -1, ids.shape[-1]) if ids.ndim == 4 else ids.reshape(ids.shape[0], -1, 1)
    return ids, torch.ones(ids.shape[:2], dtype=torch.bool)


def _mean_over_valid(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values [B, L, D]`` over positions where ``valid [B, L]``."""
    weights = valid.to(values.dtype).unsqueeze(-1)
    return (values * weights).sum(1) / weights.sum(1).clamp(min=1)


@torch.no_grad()
def probe_features(tokenizer, batch: dict, features: str = "auto") -> torch.Tensor:
    """One feature vector per item ``[B, D]`` (float64, CPU) for a frozen tokenizer or model."""
    if features not in FEATURES:
        raise ZooError(f"linear probe: features must be one of {FEATURES}, got {features!r}")
    if features == "auto":
        features = "hidden" if callable(getattr(tokenizer, "features", None)) else "histogram"
    inputs, lengths = _inputs_and_lengths(tokenizer, batch)
    if features == "hidden":
        if not callable(getattr(tokenizer, "features", None)):
            raise ZooError(f"linear probe: {type(tokenizer).__name__} has no features(); use features: histogram")
        was_training = getattr(tokenizer, "training", False)
        if hasattr(tokenizer, "eval"):
            tokenizer.eval()
        out = tokenizer.features(inputs, lengths) if lengths is not None else tokenizer.features(inputs)
        if was_training:
            tokenizer.train()
        hidden, hidden_lengths = out if isinstance(out, tuple) else (out, None)
        hidden = hidden.float().cpu()
        if hidden.ndim == 2:
            return hidden.double()
        return _mean_over_valid(hidden, _valid_mask(hidden, hidden_lengths)).double()
    ids, valid = _ids_as_rows(tokenizer, inputs, lengths)
    if features == "codes":
        vectors = tokenizer.embed(ids.clamp(min=0) if ids.shape[-1] > 1 else ids[..., 0].clamp(min=0)).float().cpu()
        vectors = vectors.reshape(ids.shape[0], ids.shape[1], -1)
        return _mean_over_valid(vectors, valid).double()
    vocab = int(tokenizer.vocab_size)
    levels = ids.shape[-1]
    offsets = torch.arange(levels) * vocab  # one histogram block per codebook level
    flat = (ids.clamp(min=0) + offsets).reshape(ids.shape[0], -1)
    weights = valid.unsqueeze(-1).expand_as(ids).reshape(ids.shape[0], -1).double()
    histogram = torch.zeros(ids.shape[0], levels * vocab, dtype=torch.float64).scatter_add_(1, flat, weights)
    return histogram / histogram.sum(1, keepdim=True).clamp(min=1)


def fit_linear_probe(features: np.ndarray, labels: np.ndarray, C: float = 1.0, max_iter: int = 2000):
    """The probe: a logistic regression (L-BFGS, L2 strength ``1 / C``) on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter)).fit(features, labels)


def batch_labels(batch: dict, key: str, what: str, where: str) -> torch.Tensor:
    """The labels ``[B]`` (long, CPU) of a batch; ``what`` names the metric and ``where`` the data in the error."""
    if key not in batch:
        raise ZooError(f"{what}: {where} has no {key!r} labels (keys: {sorted(batch)})")
    return torch.as_tensor(batch[key]).long().cpu()


def check_label_range(labels: torch.Tensor, num_labels: int, what: str) -> None:
    """Labels must index the metric's ``num_labels``-long count state."""
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_labels):
        raise ZooError(f"{what}: labels must lie in [0, {num_labels}), got [{int(labels.min())}, "
                       f"{int(labels.max())}]; raise num_labels")


class ProbeMetric(Metric):
    """A logistic-regression probe per view of frozen features: fitted on a labelled train split when the suite
    reaches the tokenizer, scored on the suite's (held-out) data.

    A subclass names its ``views`` and reads them in ``view_features``; this class owns the train split, the fit
    and the summable held-out state: correct counts per view, the item count and label counts (chance level).
    """

    what: ClassVar[str] = "probe"  # names the metric in its errors

    def __init__(self, train: str | dict, views: list[str], label_key: str, limit: int | None, batch_size: int,
                 C: float, max_iter: int, num_labels: int) -> None:
        super().__init__()
        self.train_spec, self.views, self.label_key = train, list(views), label_key
        self.limit, self.batch_size, self.C, self.max_iter = limit, batch_size, C, max_iter
        self.add_state("correct", torch.zeros(len(self.views), dtype=torch.float64))
        self.add_state("total", torch.zeros((), dtype=torch.float64))
        self.add_state("label_counts", torch.zeros(num_labels, dtype=torch.float64))
        self.probes: dict | None = None
        self.train_items = 0

    def view_features(self, ctx: EvalContext) -> dict[str, np.ndarray]:
        """Features ``[B, D]`` of one batch per view (``ctx.ids`` is the batch's one shared encoding)."""
        raise ZooError(f"{type(self).__name__} does not define view_features(ctx), the features it probes")

    def reset(self) -> None:
        super().reset()
        self.probes = None

    def _labels(self, batch: dict, where: str) -> np.ndarray:
        return batch_labels(batch, self.label_key, self.what, where).numpy()

    def setup(self, tokenizer, data_key: str | None = None) -> None:
        """Read the train split's features with the frozen tokenizer and fit one probe per view."""
        from zoo.data import collate, load_dataset

        dataset = load_dataset(self.train_spec)
        count = len(dataset) if self.limit is None else min(self.limit, len(dataset))
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(dataset, range(count)), batch_size=self.batch_size, collate_fn=collate
        )
        where = f"train data {self.train_spec!r}"
        features: dict[str, list] = {view: [] for view in self.views}
        labels = []
        for batch in loader:
            if tokenizer.modality not in batch:
                raise ZooError(f"{self.what}: {where} yields no {tokenizer.modality!r} entries")
            for view, values in self.view_features(EvalContext(tokenizer, batch)).items():
                features[view].append(values)
            labels.append(self._labels(batch, where))
        if not labels or len(np.unique(np.concatenate(labels))) < 2:
            raise ZooError(f"{self.what}: {where} needs items of at least two labels")
        y = np.concatenate(labels)
        self.probes = {view: fit_linear_probe(np.concatenate(features[view]), y, self.C, self.max_iter)
                       for view in self.views}
        self.train_items = count

    def update(self, ctx: EvalContext) -> None:
        if self.probes is None:
            self.setup(ctx.tokenizer)
        labels = self._labels(ctx.batch, "the suite's data")
        check_label_range(torch.as_tensor(labels), len(self.label_counts), self.what)
        features = self.view_features(ctx)
        for index, view in enumerate(self.views):
            self.correct[index] += float((self.probes[view].predict(features[view]) == labels).sum())
        self.total += float(labels.size)
        self.label_counts += torch.bincount(torch.as_tensor(labels), minlength=len(self.label_counts)).double()

    def compute(self) -> dict[str, float]:
        if float(self.total) == 0:
            raise ZooError(f"{self.what}: no held-out item was seen")
        result = {view: float(self.correct[i] / self.total) for i, view in enumerate(self.views)}
        result["chance"] = float(self.label_counts.max() / self.total)
        result["train_items"] = float(self.train_items)
        return result


class LinearProbe(ProbeMetric):
    """Accuracy of a logistic regression on frozen features, trained on ``train`` and scored on the suite data.

    Args:
        train: dataset spec of the labelled train split (e.g. ``gm-notes:split=train,label=family``).
        features: ``auto``, ``hidden``, ``histogram`` or ``codes`` (see the module docstring).
        label_key: batch entry holding the labels.
        limit: at most this many train items.
        batch_size: batch size for train-feature extraction.
        C: inverse L2 strength of the logistic regression (on standardised features).
        max_iter: L-BFGS iterations.
        num_labels: an upper bound on label values (size of the chance-level state).
    """

    name: ClassVar[str] = "linear-probe"
    what: ClassVar[str] = "linear probe"
    higher_is_better: ClassVar[bool | None] = True
    directions: ClassVar[dict[str, bool | None]] = {"accuracy": True, "chance": None, "train_items": None}

    def __init__(
        self,
        train: str | dict,
        features: str = "auto",
        label_key: str = "label",
        limit: int | None = None,
        batch_size: int = 32,
        C: float = 1.0,
        max_iter: int = 2000,
        num_labels: int = 1024,
    ) -> None:
        if features not in FEATURES:
            raise ZooError(f"linear probe: features must be one of {FEATURES}, got {features!r}")
        super().__init__(train, ["accuracy"], label_key, limit, batch_size, C, max_iter, num_labels)
        self.features = features

    def view_features(self, ctx: EvalContext) -> dict[str, np.ndarray]:
        return {"accuracy": probe_features(ctx.tokenizer, ctx.batch, self.features).numpy()}
