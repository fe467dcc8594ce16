"""The Fréchet distance family (FID, rFID, pFID, gFID) from streaming float64 sums.

FID (Heusel et al. 2017, https://arxiv.org/abs/1706.08500) fits a Gaussian to the features of each
image set and measures

    d² = ||μ₁ - μ₂||² + tr(Σ₁) + tr(Σ₂) - 2 tr((Σ₁ Σ₂)^½)

Each set is kept as three sums (count n, Σ f, Σ f fᵀ) in float64, never as the list of features,
so memory is O(D²) whatever the set size and the state sums across processes. The reference set's
sums are cached on disk under ``zoo.hub.cache_dir() / "fid-stats"``, keyed by a hash of the data
(spec, split, limit), the extractor and its preprocessing policy, so a re-run extracts features
of the generated / reconstructed images only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from zoo.errors import ZooError
from zoo.metrics.base import EvalContext, Metric

STATS_FOLDER = "fid-stats"


class FeatureMoments:
    """Streaming first and second moments of feature vectors: ``n``, ``Σ f`` [D], ``Σ f fᵀ`` [D, D], float64."""

    def __init__(self, dim: int):
        self.count = torch.zeros((), dtype=torch.float64)
        self.total = torch.zeros(dim, dtype=torch.float64)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)

    @classmethod
    def from_features(cls, features: torch.Tensor) -> FeatureMoments:
        moments = cls(features.shape[1])
        moments.update(features)
        return moments

    def update(self, features: torch.Tensor) -> None:
        """Add features ``[B, D]``."""
        f = features.detach().to("cpu", torch.float64)
        if f.ndim != 2 or f.shape[1] != self.total.shape[0]:
            raise ZooError(f"features: expected shape [B, {self.total.shape[0]}], got {list(f.shape)}")
        self.count += f.shape[0]
        self.total += f.sum(0)
        self.outer += f.T @ f  # [D, B] @ [B, D]

    def mean(self) -> np.ndarray:
        return (self.total / self.count).numpy()

    def covariance(self) -> np.ndarray:
        """Unbiased sample covariance ``(Σ f fᵀ - n μ μᵀ) / (n - 1)``."""
        n = float(self.count)
        if n < 2:
            raise ZooError(f"Fréchet distance needs at least 2 images per set, got {int(n)}")
        mu = self.total / n
        return ((self.outer - n * torch.outer(mu, mu)) / (n - 1)).numpy()


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(μ₁, Σ₁) and N(μ₂, Σ₂).

    ``tr((Σ₁Σ₂)^½)`` is computed as the sum of square roots of the eigenvalues of the symmetric
    matrix ``Σ₁^½ Σ₂ Σ₁^½`` (same spectrum as ``Σ₁Σ₂``), which stays real and stable for the
    singular covariances of sets smaller than the feature dimension.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ZooError(
            f"frechet_distance: shapes differ: μ {mu1.shape} vs {mu2.shape}, Σ {sigma1.shape} vs {sigma2.shape}"
        )
    sigma1, sigma2 = (sigma1 + sigma1.T) / 2, (sigma2 + sigma2.T) / 2
    values, vectors = np.linalg.eigh(sigma1)
    root1 = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T  # Σ₁^½
    middle = root1 @ sigma2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    distance = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt
    return float(max(distance, 0.0))


def moments_distance(a: FeatureMoments, b: FeatureMoments) -> float:
    return frechet_distance(a.mean(), a.covariance(), b.mean(), b.covariance())


# -- cached reference statistics -------------------------------------------------------------------


def reference_key(data_key: str, extractor_policy: dict) -> str:
    """Hash of (data, extractor, preprocessing policy): the cache file's name."""
    record = json.dumps({"data": data_key, "extractor": extractor_policy}, sort_keys=True)
    return hashlib.sha256(record.encode()).hexdigest()[:32]


def reference_path(key: str) -> Path:
    from zoo.hub import cache_dir

    return cache_dir() / STATS_FOLDER / f"{key}.safetensors"


def load_reference(key: str) -> FeatureMoments | None:
    """Cached moments for ``key``, or None when absent (a corrupt file is ignored and rebuilt)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = reference_path(key)
    if not path.is_file():
        return None
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError):
        return None
    moments = FeatureMoments(tensors["total"].shape[0])
    moments.count, moments.total, moments.outer = tensors["count"], tensors["total"], tensors["outer"]
    return moments


def save_reference(key: str, moments: FeatureMoments, description: dict) -> Path:
    """Write moments atomically, with what they describe in the file's metadata."""
    from safetensors.torch import save

    from zoo.pretrained import atomic_write_bytes

    tensors = {"count": moments.count.clone(), "total": moments.total.contiguous(), "outer": moments.outer.contiguous()}
    path = reference_path(key)
    atomic_write_bytes(path, save(tensors, metadata={"description": json.dumps(description, sort_keys=True)}))
    return path


# -- metrics ---------------------------------------------------------------------------------------------


class FrechetMetric(Metric):
    """Base of FID-like metrics: reference images vs. images the tokenizer produces, through one extractor.

    Subclasses implement ``candidate_images(ctx)`` (the reconstruction for rFID, a perturbed decode for
    pFID, samples for gFID) and may override ``reference_images(ctx)`` (default: the batch's images).
    State is two sets of float64 moments; when the runner gives a ``data_key`` and the reference
    moments of that data are cached, reference features are not extracted again.
    """

    higher_is_better: ClassVar[bool | None] = False
    modalities: ClassVar[tuple[str, ...]] = ("image",)

    def __init__(self, extractor: str | dict = "inception", batch_size: int = 50):
        super().__init__()
        from zoo.metrics.features import build_extractor

        self.extractor = build_extractor(extractor)
        self.batch_size = batch_size
        dim = self.extractor.dim
        for prefix in ("ref", "gen"):
            self.add_state(f"{prefix}_count", torch.zeros((), dtype=torch.float64))
            self.add_state(f"{prefix}_total", torch.zeros(dim, dtype=torch.float64))
            self.add_state(f"{prefix}_outer", torch.zeros(dim, dim, dtype=torch.float64))
        self.cache_key: str | None = None
        self.cached_reference: FeatureMoments | None = None
        self.notes: list[str] = []

    def setup(self, tokenizer, data_key: str | None = None) -> None:
        self.cache_key = reference_key(data_key, self.reference_policy()) if data_key else None
        self.cached_reference = load_reference(self.cache_key) if self.cache_key else None
        if self.cached_reference is not None:
            self.notes.append(f"reference statistics from cache {reference_path(self.cache_key)}")

    def reference_policy(self) -> dict:
        """What decides the reference features besides the data: the extractor and its preprocessing.

        Every metric whose reference is the suite's own images shares this key, so rFID and pFID reuse
        one cache; a subclass with other reference images must add what makes them different.
        """
        return dict(self.extractor.policy)

    def reference_images(self, ctx: EvalContext) -> torch.Tensor:
        return ctx.inputs

    def candidate_images(self, ctx: EvalContext) -> torch.Tensor:
        raise ZooError(f"{type(self).__name__} does not define candidate_images(ctx)")

    def _add(self, prefix: str, images: torch.Tensor) -> None:
        moments = self._moments(prefix)
        for start in range(0, images.shape[0], self.batch_size):
            moments.update(self.extractor(images[start : start + self.batch_size]))
        setattr(self, f"{prefix}_count", moments.count)
        setattr(self, f"{prefix}_total", moments.total)
        setattr(self, f"{prefix}_outer", moments.outer)

    def _moments(self, prefix: str) -> FeatureMoments:
        moments = FeatureMoments(self.extractor.dim)
        moments.count = getattr(self, f"{prefix}_count")
        moments.total = getattr(self, f"{prefix}_total")
        moments.outer = getattr(self, f"{prefix}_outer")
        return moments

    def update(self, ctx: EvalContext) -> None:
        if self.cached_reference is None:
            self._add("ref", self.reference_images(ctx))
        self._add("gen", self.candidate_images(ctx))

    def reference_moments(self) -> FeatureMoments:
        """The reference statistics: from the cache, or accumulated this run (and then cached)."""
        reference = self.cached_reference
        if reference is None:
            reference = self._moments("ref")
            if self.cache_key is not None and float(reference.count) >= 2:
                save_reference(self.cache_key, reference, self.reference_policy())
                self.cached_reference = reference
        return reference

    def compute(self) -> float:
        return moments_distance(self.reference_moments(), self._moments("gen"))
