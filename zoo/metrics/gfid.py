"""gFID: FID of a generator's samples against the held-out real images (generation quality).

RobusTok (https://arxiv.org/abs/2503.08354) asks which tokenizer metric predicts the quality of an
autoregressive generator trained on its tokens; gFID is that quality. Here it is measured exactly as
rFID and pFID are: the same feature extractor, the same preprocessing policy (``zoo.metrics.features``)
and the same reference images, so the three share one cached reference statistic and differ only in
the candidate images.

Definition. For a generator G (anything with ``sample(n, labels=, temperature=, top_k=, top_p=, seed=)``
returning images ``[n, 3, H, W]`` in ``[0, 1]``, such as ``zoo.generators.token_generator.TokenGenerator``)
and the suite's held-out images X with labels y:

1. for each batch of X, draw ``samples_per_item`` samples per real image; a class-conditional
   generator (``num_classes`` set) gets the batch's labels, so the samples follow the class mix of X;
2. ``gFID = FID(X, samples)`` with the suite's extractor (Inception by default).

So N = ``samples_per_item`` x the number of evaluated items. Sampling settings are options
(``temperature`` 1, no top-k / top-p, no classifier-free guidance: the generator's own distribution;
``guidance_scale`` is passed on to the generator when it is not 1). Each batch's sampling seed
is drawn from the suite's per-batch generator and ``seed``, so a run is reproducible and processes of a
distributed run draw different samples. The report shows the first 16 samples.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from zoo.errors import ZooError
from zoo.metrics.base import EvalContext
from zoo.metrics.fid import FrechetMetric

SHOWN_SAMPLES = 16


class GenerativeFID(FrechetMetric):
    """gFID: FID between held-out images and as many generator samples (same extractor and reference as rFID)."""

    name: ClassVar[str] = "gfid"
    needs_decoder: ClassVar[bool] = True

    def __init__(self, samples_per_item: int = 1, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, guidance_scale: float = 1.0, class_conditional: bool = True,
                 seed: int = 0, extractor: str | dict = "inception", batch_size: int = 50):
        super().__init__(extractor=extractor, batch_size=batch_size)
        if isinstance(samples_per_item, bool) or not isinstance(samples_per_item, int) or samples_per_item < 1:
            raise ZooError(f"gfid: samples_per_item must be an integer >= 1, got {samples_per_item!r}")
        if not temperature > 0:
            raise ZooError(f"gfid: temperature must be > 0, got {temperature!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ZooError(f"gfid: top_k must be an integer >= 1 or null, got {top_k!r}")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ZooError(f"gfid: top_p must lie in (0, 1] or be null, got {top_p!r}")
        if guidance_scale != 1.0 and not class_conditional:
            raise ZooError("gfid: guidance_scale != 1 (classifier-free guidance) needs class_conditional: true")
        self.samples_per_item, self.temperature, self.top_k, self.top_p = samples_per_item, temperature, top_k, top_p
        self.guidance_scale = float(guidance_scale)
        self.class_conditional, self.seed = class_conditional, seed
        self.shown: list[torch.Tensor] = []

    def setup(self, tokenizer, data_key: str | None = None) -> None:
        super().setup(tokenizer, data_key)
        self.shown = []

    def reset(self) -> None:
        super().reset()
        self.shown = []

    def candidate_images(self, ctx: EvalContext) -> torch.Tensor:
        generator = ctx.tokenizer
        if not callable(getattr(generator, "sample", None)):
            raise ZooError(f"{type(generator).__name__} is not a generator (it has no sample(n, labels, ...)); "
                           "gFID needs one, e.g. a TokenGenerator trained on this tokenizer's tokens")
        count = ctx.inputs.shape[0] * self.samples_per_item
        labels = None
        if self.class_conditional and getattr(generator, "num_classes", None):
            if ctx.labels is None:
                raise ZooError("gfid: a class-conditional generator needs labels, and the suite's data has none")
            labels = torch.as_tensor(ctx.labels).long().repeat_interleave(self.samples_per_item)
        draw = int(torch.randint(0, 2**62, (1,), generator=ctx.generator))
        seed = (self.seed * 1_000_003 + draw) % (2**62)
        options = {"guidance_scale": self.guidance_scale} if self.guidance_scale != 1.0 else {}
        with torch.no_grad():
            images = generator.sample(count, labels=labels, temperature=self.temperature, top_k=self.top_k,
                                      top_p=self.top_p, seed=seed, **options)
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] != count:
            shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ZooError(f"{type(generator).__name__}.sample({count}) returned {shape}, expected [{count}, 3, H, W]")
        images = images.float().clamp(0, 1)
        if len(self.shown) < SHOWN_SAMPLES:
            self.shown.extend(images[: SHOWN_SAMPLES - len(self.shown)].cpu())
        return images

    def figures(self) -> dict:
        """The first samples in one row, as uint8 ``[H, W, 3]``."""
        if not self.shown:
            return {}
        from torchvision.utils import make_grid

        samples = torch.stack(self.shown)  # [n, 3, H, W]
        scale = max(1, -(-64 // samples.shape[-1]))  # small images enlarged (nearest) to at least 64 px
        samples = samples.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
        grid = make_grid(samples, nrow=len(samples), padding=2, pad_value=1.0)  # [3, H', W']
        row = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        settings = f"temperature {self.temperature:g}, top-k {self.top_k or 'off'}, top-p {self.top_p or 'off'}"
        if self.guidance_scale != 1.0:
            settings += f", guidance {self.guidance_scale:g}"
        return {f"samples ({settings})": row}
