"""The metric protocol: torchmetrics-style ``update / compute / reset`` over an ``EvalContext``.

State is declared with ``add_state`` and is always a tensor that *sums* across processes (FID keeps
float64 sums of features and outer products, never the features), so a metric computed over
shards equals the one computed at once. ``compute`` returns a float or a dict of named floats.

The suite runner hands every metric the same ``EvalContext`` per batch; a metric pulls what it
needs (``ctx.ids``, ``ctx.reconstruction``, ...) and shared work such as encoding is done once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import torch

from zoo.errors import ZooError


@dataclass
class EvalContext:
    """One batch of a suite for one tokenizer; expensive views are computed once and cached.

    Attributes:
        tokenizer: the tokenizer under evaluation.
        batch: the collated dataset batch (``image`` / ``audio`` + ``audio_lengths`` / ``text``, ``label``).
        generator: a seeded ``torch.Generator`` for metrics that sample (pFID's perturbation).
        measurements: wall time and peak memory of the shared ``encode`` / ``decode`` calls, keyed by
            ``"encode"`` / ``"decode"`` (filled when they run; throughput metrics read them).
    """

    tokenizer: Any
    batch: dict
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))
    measurements: dict = field(default_factory=dict)

    @property
    def modality(self) -> str:
        return self.tokenizer.modality

    @property
    def inputs(self):
        key = {"image": "image", "audio": "audio", "text": "text"}[self.modality]
        if key not in self.batch:
            raise ZooError(f"suite data yields no {key!r} entries for a {self.modality} tokenizer")
        return self.batch[key]

    @property
    def labels(self) -> torch.Tensor | None:
        return self.batch.get("label")

    @property
    def device(self) -> torch.device:
        return getattr(self.tokenizer, "device", None) or torch.device("cpu")

    def _measured(self, key: str, fn):
        from zoo.metrics.measure import measure_call

        with torch.no_grad():
            result, self.measurements[key] = measure_call(fn, self.device)
        return result

    @cached_property
    def encoded(self):
        """What ``encode`` returns: ids (image), ``AudioTokens`` (audio), lists of ids (text)."""
        if self.modality == "audio":
            return self._measured(
                "encode", lambda: self.tokenizer.encode(self.inputs, lengths=self.batch.get("audio_lengths"))
            )
        return self._measured("encode", lambda: self.tokenizer.encode(self.inputs))

    @property
    def ids(self):
        encoded = self.encoded
        return encoded.ids if self.modality == "audio" else encoded

    @cached_property
    def reconstruction(self):
        """``decode(encode(x))``; tokenizers without a decoder raise a clear error here."""
        encoded = self.encoded
        return self._measured("decode", lambda: self.tokenizer.decode(encoded))


class Metric:
    """Base metric. Subclasses declare state in ``__init__`` with ``add_state`` and implement
    ``update(ctx)`` and ``compute()``.

    Class attributes:
        name: the registry name (``psnr``, ``rfid``).
        higher_is_better: direction for leaderboards (None when neither, e.g. throughput detail).
        directions: for a metric whose ``compute`` returns a dict, the direction of each key
            (keys not named fall back to ``higher_is_better``).
        modalities: modalities the metric applies to.
        needs_decoder: True when ``update`` uses ``ctx.reconstruction``; the runner skips the metric,
            with a note, for tokenizers that have no decoder.
    """

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool | None] = None
    directions: ClassVar[dict[str, bool | None]] = {}
    modalities: ClassVar[tuple[str, ...]] = ("text", "image", "audio")
    needs_decoder: ClassVar[bool] = False

    def __init__(self) -> None:
        self._defaults: dict[str, torch.Tensor] = {}

    def add_state(self, name: str, default: torch.Tensor) -> None:
        """Register summable state; ``reset`` restores ``default``."""
        if not hasattr(self, "_defaults"):
            self._defaults = {}
        self._defaults[name] = default.clone()
        setattr(self, name, default.clone())

    def reset(self) -> None:
        for name, default in self._defaults.items():
            setattr(self, name, default.clone())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in self._defaults}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        for name in self._defaults:
            setattr(self, name, state[name])

    def merge_state(self, other: Metric) -> None:
        """Add another instance's state into this one (what a cross-process sum does)."""
        for name in self._defaults:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def sync(self, accelerator=None) -> None:
        """Sum state over processes (a no-op in a single process)."""
        if accelerator is None or accelerator.num_processes == 1:
            return
        for name in self._defaults:
            value = getattr(self, name)
            setattr(self, name, accelerator.reduce(value.to(accelerator.device), reduction="sum").cpu())

    def setup(self, tokenizer, data_key: str | None = None) -> None:
        """Called by the suite runner once per tokenizer, before the first ``update``.

        ``data_key`` identifies the evaluated data (dataset spec, split, limit), so a metric can cache
        statistics of the data itself (FID's reference statistics). The default does nothing.
        """

    def direction(self, key: str | None = None) -> bool | None:
        """Whether higher is better for the whole value (``key=None``) or one key of a dict value."""
        return self.directions.get(key, self.higher_is_better) if key is not None else self.higher_is_better

    def update(self, ctx: EvalContext) -> None:
        raise ZooError(f"metric {type(self).__name__} does not implement update(ctx)")

    def compute(self) -> float | dict[str, float]:
        raise ZooError(f"metric {type(self).__name__} does not implement compute()")

    def figures(self) -> dict[str, Any]:
        """Pictures for the HTML report (name -> matplotlib Figure or uint8 array [H, W, 3])."""
        return {}
