"""The codec's residual quantiser: vector-quantize-pytorch's ``ResidualVQ`` or ``ResidualFSQ``, wrapped once.

    latent [B, D, N] -> ids [B, N, q] (level 0 coarsest) and quantized [B, D, N] (sum of the q levels' codes)
    ids of the first n <= q levels [B, N, n] -> latent [B, D, N]

Residual quantisation (SoundStream, https://arxiv.org/abs/2107.03312, algorithm 1) codes what the earlier
levels left, so the first ``n`` ids of a frame are a coarser code of it: one model serves ``n`` = 1..q
codebooks, ``frame_rate * n * log2(K)`` bits per second. Training teaches the decoder every ``n`` with
*quantizer dropout* (SoundStream section 3.3; DAC, https://arxiv.org/abs/2306.06546, section 3.2): with
probability ``dropout`` a training step keeps only the first ``n`` levels, ``n`` uniform in
``[dropout_min, q]``; otherwise it uses all ``q``. The library draws ``n`` once per batch (as SoundStream
and EnCodec do; DAC draws it per item).

Kinds (``kind`` of the config mapping):

* ``rvq``: each level a ``codebook_size``-entry codebook in a ``code_dim`` space (a linear projection from
  the latent when smaller, as DAC's factorised codes), EMA updates, k-means init on the first training
  batch, dead-code restarts (EnCodec's quantiser, https://arxiv.org/abs/2210.13438).
* ``rfsq``: residual finite scalar quantisation (https://arxiv.org/abs/2309.15505): each level rounds
  ``len(fsq_levels)`` projected dimensions, ``prod(fsq_levels)`` implicit codes, level ``i`` scaled by
  ``fsq_levels ** -i``; no codebook to learn and no commitment loss.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from zoo.errors import ZooError

_COMMON = {"codebooks": 8, "dropout": 0.5, "dropout_min": 1}
_OPTIONS: dict[str, dict] = {
    "rvq": {**_COMMON, "codebook_size": 1024, "code_dim": None, "ema_decay": 0.99, "kmeans_init": True,
            "kmeans_iters": 10, "dead_code_threshold": 2.0},
    "rfsq": {**_COMMON, "fsq_levels": [8, 5, 5, 5]},
}


def residual_quantizer_options(config: dict | None) -> tuple[str, dict]:
    """The quantiser kind and its options with defaults; unknown keys and bad values are errors."""
    config = dict(config or {"kind": "rvq"})
    kind = config.pop("kind", "rvq")
    if kind not in _OPTIONS:
        raise ZooError(f"codec quantizer: unknown kind {kind!r}; expected one of {sorted(_OPTIONS)}")
    unknown = sorted(set(config) - set(_OPTIONS[kind]))
    if unknown:
        raise ZooError(f"codec quantizer kind {kind!r}: unknown option(s) {unknown}; it takes {sorted(_OPTIONS[kind])}")
    options = {**_OPTIONS[kind], **config}
    if int(options["codebooks"]) < 1:
        raise ZooError(f"codec quantizer: codebooks must be >= 1, got {options['codebooks']!r}")
    if not 0.0 <= float(options["dropout"]) <= 1.0:
        raise ZooError(f"codec quantizer: dropout is a probability in [0, 1], got {options['dropout']!r}")
    if not 1 <= int(options["dropout_min"]) <= int(options["codebooks"]):
        raise ZooError(f"codec quantizer: dropout_min must lie in [1, codebooks={options['codebooks']}], "
                       f"got {options['dropout_min']!r}")
    if kind == "rvq" and int(options["codebook_size"]) < 2:
        raise ZooError(f"codec quantizer: codebook_size must be >= 2, got {options['codebook_size']!r}")
    if kind == "rfsq":
        levels = options["fsq_levels"]
        if not isinstance(levels, list) or not levels or any(not isinstance(v, int) or v < 2 for v in levels):
            raise ZooError(f"codec quantizer kind 'rfsq': fsq_levels must be a list of integers >= 2, got {levels!r}")
    return kind, options


@dataclass
class ResidualOutput:
    """quantized ``[B, D, N]`` (straight-through to the latent), ids ``[B, N, q]`` (``-1`` for dropped levels),
    the number of levels used, and unweighted losses (``commitment`` for ``rvq``)."""

    quantized: torch.Tensor
    ids: torch.Tensor
    levels_used: int
    losses: dict[str, torch.Tensor] = field(default_factory=dict)


class ResidualQuantizer(nn.Module):
    """Residual VQ / FSQ over ``[B, D, N]`` latents with quantizer dropout (see the module docstring)."""

    def __init__(self, latent_dim: int, config: dict | None = None):
        super().__init__()
        from vector_quantize_pytorch import ResidualFSQ, ResidualVQ

        self.kind, self.options = residual_quantizer_options(config)
        self.num_levels = int(self.options["codebooks"])
        self.dropout = float(self.options["dropout"])
        common = {"num_quantizers": self.num_levels, "quantize_dropout": self.num_levels > 1,
                  "quantize_dropout_cutoff_index": int(self.options["dropout_min"]) - 1}
        if self.kind == "rvq":
            self.inner = ResidualVQ(
                dim=latent_dim, codebook_size=int(self.options["codebook_size"]),
                codebook_dim=int(self.options["code_dim"] or latent_dim), decay=float(self.options["ema_decay"]),
                kmeans_init=bool(self.options["kmeans_init"]), kmeans_iters=int(self.options["kmeans_iters"]),
                threshold_ema_dead_code=float(self.options["dead_code_threshold"]), commitment_weight=1.0,
                ema_update=True, learnable_codebook=False, **common,
            )
            self._seed_pending_kmeans()
        else:
            self.inner = ResidualFSQ(dim=latent_dim, levels=[int(v) for v in self.options["fsq_levels"]], **common)

    # -- the codebook ------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Codes per level (K)."""
        if self.kind == "rfsq":
            return int(math.prod(int(v) for v in self.options["fsq_levels"]))
        return int(self.options["codebook_size"])

    @property
    def codebook(self) -> torch.Tensor:
        """``[q, K, code_dim]``: each level's codes in the code space (FSQ's implicit grid times its level scale)."""
        if self.kind == "rfsq":
            return self.inner.codebooks * self.inner.scales[:, None, :]
        return self.inner.codebooks

    def ids_to_latent(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, N, n]`` of the first ``n <= q`` levels (``-1``: no code) -> latent ``[B, D, N]``."""
        if ids.ndim != 3 or not 1 <= ids.shape[-1] <= self.num_levels:
            raise ZooError(f"ids: expected [B, N, n] with 1 <= n <= {self.num_levels}, got {list(ids.shape)}")
        padded = F.pad(ids, (0, self.num_levels - ids.shape[-1]), value=-1)  # missing levels contribute nothing
        return rearrange(self.inner.get_output_from_indices(padded), "b n d -> b d n")

    # -- forward -----------------------------------------------------------------------------------------
    def forward(self, latent: torch.Tensor) -> ResidualOutput:
        """Quantise ``[B, D, N]``; in training, with quantizer dropout."""
        tokens = rearrange(latent, "b d n -> b n d")
        kwargs = {}
        if self.training:
            drop = self.num_levels > 1 and bool(torch.rand(()) < self.dropout)
            self.inner.quantize_dropout = drop
            # The seed that picks n comes from torch's RNG (seeded per process by the trainer), never from the
            # library's own all-reduced draw, which would block a distributed run whose processes disagree on drop.
            kwargs["rand_quantize_dropout_fixed_seed"] = int(torch.randint(0, 2**31 - 1, ()))
        with self._no_kmeans_outside_training():
            if self.kind == "rvq":
                quantized, ids, level_losses = self.inner(tokens, **kwargs)
                losses = {"commitment": level_losses.sum()}
            else:
                quantized, ids = self.inner(tokens, **kwargs)
                losses = {}
        ids = ids.long()
        used = int((ids[0, 0] >= 0).sum()) if ids.numel() else self.num_levels
        return ResidualOutput(rearrange(quantized, "b n d -> b d n"), ids, used, losses)

    # -- k-means initialisation, only ever on a training batch -------------------------------------------
    def _library_codebooks(self) -> list[nn.Module]:
        return [layer._codebook for layer in self.inner.layers] if self.kind == "rvq" else []

    def _seed_pending_kmeans(self) -> None:
        """A k-means codebook holds zeros until its first training batch; random codes instead let an untrained
        model encode sensibly (k-means still replaces them on that batch)."""
        for codebook in self._library_codebooks():
            if not bool(codebook.initted):
                codebook.embed.copy_(torch.randn_like(codebook.embed) * 0.1)

    @contextmanager
    def _no_kmeans_outside_training(self):
        """Encoding in eval mode never changes state: a codebook waiting for k-means is treated as initialised."""
        pending = [] if self.training else [cb for cb in self._library_codebooks() if not bool(cb.initted)]
        for codebook in pending:
            codebook.initted.fill_(True)
        try:
            yield
        finally:
            for codebook in pending:
                codebook.initted.fill_(False)


def choose_levels(levels: int | None, available: int, default: int) -> int:
    """``n_q`` to emit: ``levels`` when given (1..available), else ``default``."""
    levels = default if levels is None else levels
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= available:
        raise ZooError(f"n_q must be an integer in [1, {available}] (the codec's codebooks), got {levels!r}")
    return levels

