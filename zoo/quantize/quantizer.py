"""One adapter over vector-quantize-pytorch: VQ, FSQ, LFQ and residual VQ behind one return type.

The library's quantisers each return a different tuple (``(q, ids, loss)``, ``(q, ids)``,
``Return(q, ids, aux)``, ``(q, ids, losses[q])``) and hide their codebooks in different places
(``_codebook.embed``, ``implicit_codebook``, ``codebook``, ``codebooks``). ``Quantizer`` wraps
them once, so model code, latent perturbation (``zoo.quantize.perturb``) and metrics see:

* ``forward(z [B, D, h, w]) -> QuantizerOutput`` (quantized, indices, named unweighted losses,
  the continuous latent the codes were chosen for, and per-level queries for neighbourhoods);
* ``codebook``: ``[K, D]`` (``[q, K, D]`` for residual VQ), explicit or implicit (FSQ, LFQ);
* ``indices_to_codes(ids) -> [B, D, h, w]``: the code vectors a decoder consumes.

Every quantiser works in its own *code space* of dimension ``code_dim``: the model maps encoder
features into it with a 1x1 conv (as VQGAN's ``quant_conv``), so no library projection is used and
the codebook, the latent and the quantized output are directly comparable.

Kinds (the ``kind`` key of the config mapping):

* ``vq``  -- VQ-VAE (https://arxiv.org/abs/1711.00937) with l2-normalised codes (cosine
  distance, https://arxiv.org/abs/2110.04627), EMA updates, k-means init and dead-code replacement.
* ``fsq`` -- Finite Scalar Quantization (https://arxiv.org/abs/2309.15505): per-dimension levels,
  the implicit codebook is the grid of all level combinations.
* ``lfq`` -- Lookup-Free Quantization (MAGVIT-v2, https://arxiv.org/abs/2310.05737): the sign of
  each of ``bits`` dimensions, implicit codebook ``{-1, 1}^bits``, entropy loss.
* ``rvq`` -- residual VQ (SoundStream, https://arxiv.org/abs/2107.03312): ``levels`` VQs each
  quantising what the previous ones left; ids ``[B, h, w, q]``.
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

QUANTIZER_KINDS = ("vq", "fsq", "lfq", "rvq")

# Options each kind accepts (with defaults); anything else in the config mapping is an error.
_OPTIONS: dict[str, dict] = {
    "vq": {
        "codebook_size": 512,
        "code_dim": 8,
        "l2_normalize": True,
        "ema": True,
        "ema_decay": 0.95,
        "kmeans_init": True,
        "kmeans_iters": 10,
        "dead_code_threshold": 2.0,
        "rotation_trick": False,
    },
    "fsq": {"levels": [8, 5, 5, 5]},
    "lfq": {"bits": 10, "diversity_gamma": 1.0, "inv_temperature": 100.0},
    "rvq": {
        "codebook_size": 256,
        "code_dim": 8,
        "levels": 2,
        "ema": True,
        "ema_decay": 0.95,
        "kmeans_init": True,
        "kmeans_iters": 10,
        "dead_code_threshold": 2.0,
    },
}


@dataclass
class QuantizerOutput:
    """What every quantiser returns.

    Attributes:
        quantized: ``[B, D, h, w]`` code vectors with a gradient estimator back to ``latent``.
        indices: ``[B, h, w]`` (``[B, h, w, q]`` for residual VQ) long ids.
        losses: unweighted named terms (``commitment``; ``entropy`` for LFQ); weights are the model's.
        latent: ``[B, D, h, w]`` the continuous code-space vectors the codes were chosen for
            (l2-normalised for cosine VQ, tanh-bounded for FSQ), carrying gradients to the encoder.
        queries: ``[B, h, w, q, D]`` detached vectors whose nearest code at level ``q`` is the chosen
            id (the latent itself, or the residual left by earlier levels): what latent perturbation
            takes neighbourhoods around.
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    latent: torch.Tensor
    queries: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)


def quantizer_options(config: dict) -> tuple[str, dict]:
    """Validate a quantiser config mapping and fill defaults; errors name the bad key."""
    if not isinstance(config, dict):
        raise ZooError(f"quantizer: expected a mapping with a 'kind' key, got {type(config).__name__}")
    kind = config.get("kind", "vq")
    if kind not in QUANTIZER_KINDS:
        raise ZooError(f"quantizer: unknown kind {kind!r}; expected one of {QUANTIZER_KINDS}")
    defaults = _OPTIONS[kind]
    unknown = sorted(set(config) - set(defaults) - {"kind"})
    if unknown:
        raise ZooError(f"quantizer kind {kind!r}: unknown option(s) {unknown}; it takes {sorted(defaults)}")
    options = {**defaults, **{k: v for k, v in config.items() if k != "kind"}}
    if kind in ("vq", "rvq") and (int(options["codebook_size"]) < 2 or int(options["code_dim"]) < 1):
        raise ZooError(f"quantizer kind {kind!r}: codebook_size must be >= 2 and code_dim >= 1, got {options}")
    if kind == "fsq":
        levels = options["levels"]
        if not isinstance(levels, list) or not levels or any(not isinstance(v, int) or v < 3 for v in levels):
            raise ZooError(f"quantizer kind 'fsq': levels must be a list of integers >= 3, got {levels!r}")
    if kind == "lfq" and not (1 <= int(options["bits"]) <= 20):
        raise ZooError(f"quantizer kind 'lfq': bits must lie in [1, 20], got {options['bits']!r}")
    if kind == "rvq" and int(options["levels"]) < 1:
        raise ZooError(f"quantizer kind 'rvq': levels must be >= 1, got {options['levels']!r}")
    return kind, options


def _codebook_arguments(options: dict) -> dict:
    """vector-quantize-pytorch arguments shared by the learned-codebook kinds (VQ and residual VQ)."""
    return {
        "dim": int(options["code_dim"]),
        "codebook_size": int(options["codebook_size"]),
        "decay": float(options["ema_decay"]),
        "ema_update": bool(options["ema"]),
        "learnable_codebook": not options["ema"],
        "kmeans_init": bool(options["kmeans_init"]),
        "kmeans_iters": int(options["kmeans_iters"]),
        "threshold_ema_dead_code": float(options["dead_code_threshold"]),
        "commitment_weight": 1.0,
    }


class Quantizer(nn.Module):
    """A vector-quantize-pytorch quantiser with zoo's one return type (see the module docstring)."""

    def __init__(self, config: dict):
        super().__init__()
        from vector_quantize_pytorch import FSQ, LFQ, ResidualVQ, VectorQuantize

        self.kind, options = quantizer_options(config)
        self.options = options
        if self.kind == "vq":
            self.code_dim = int(options["code_dim"])
            self.num_levels = 1
            self.inner = VectorQuantize(
                **_codebook_arguments(options),
                use_cosine_sim=bool(options["l2_normalize"]),
                rotation_trick=bool(options["rotation_trick"]),
                accept_image_fmap=True,
            )
            self._seed_kmeans_codebooks()
        elif self.kind == "fsq":
            levels = [int(v) for v in options["levels"]]
            self.code_dim = len(levels)
            self.num_levels = 1
            self.inner = FSQ(levels=levels, dim=self.code_dim)
        elif self.kind == "lfq":
            self.code_dim = int(options["bits"])
            self.num_levels = 1
            self.inner = LFQ(
                dim=self.code_dim,
                codebook_size=2**self.code_dim,
                entropy_loss_weight=1.0,
                commitment_loss_weight=1.0,
                diversity_gamma=float(options["diversity_gamma"]),
            )
        else:
            self.code_dim = int(options["code_dim"])
            self.num_levels = int(options["levels"])
            self.inner = ResidualVQ(**_codebook_arguments(options), num_quantizers=self.num_levels,
                                    rotation_trick=False)
            self._seed_kmeans_codebooks()

    def _library_codebooks(self) -> list[nn.Module]:
        if self.kind == "vq":
            return [self.inner._codebook]
        if self.kind == "rvq":
            return [layer._codebook for layer in self.inner.layers]
        return []

    def _seed_kmeans_codebooks(self) -> None:
        """A k-means-initialised codebook starts as zeros until its first training batch; give it random
        codes instead so an untrained model still encodes sensibly (k-means still runs on that batch)."""
        for codebook in self._library_codebooks():
            if not bool(codebook.initted):
                codes = torch.randn_like(codebook.embed)
                codebook.embed.copy_(F.normalize(codes, dim=-1) if codebook.use_cosine_sim else codes)

    @contextmanager
    def _no_kmeans_outside_training(self):
        """k-means init runs on the first *training* batch only: in eval mode encoding never changes state."""
        pending = [] if self.training else [cb for cb in self._library_codebooks() if not bool(cb.initted)]
        for codebook in pending:
            codebook.initted.fill_(True)
        try:
            yield
        finally:
            for codebook in pending:
                codebook.initted.fill_(False)

    # -- the codebook, explicit or implicit ----------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of codes per level (K)."""
        if self.kind == "fsq":
            return int(math.prod(int(v) for v in self.options["levels"]))
        if self.kind == "lfq":
            return 2**self.code_dim
        return int(self.options["codebook_size"])

    @property
    def codebook(self) -> torch.Tensor:
        """Code vectors ``[K, D]`` (``[q, K, D]`` for residual VQ), in the space of ``latent``."""
        if self.kind == "vq":
            codes = self.inner.codebook  # [K, D]
            return F.normalize(codes, dim=-1) if self.options["l2_normalize"] else codes
        if self.kind == "fsq":
            return self.inner.implicit_codebook  # [K, d]: every combination of levels, scaled to [-1, 1]
        if self.kind == "lfq":
            return self.inner.codebook  # [K, bits]: {-1, 1}^bits, most significant bit first
        return self.inner.codebooks  # [q, K, D]

    def level_codebooks(self) -> torch.Tensor:
        """The codebook with a level axis always present: ``[q, K, D]``."""
        codebook = self.codebook
        return codebook if codebook.ndim == 3 else codebook.unsqueeze(0)

    def indices_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, h, w]`` (or ``[B, h, w, q]``) -> code vectors ``[B, D, h, w]`` (summed over levels)."""
        codebooks = self.level_codebooks()  # [q, K, D]
        if ids.ndim == 3:
            ids = ids.unsqueeze(-1)
        if ids.ndim != 4 or ids.shape[-1] != codebooks.shape[0]:
            expected = "[B, h, w]" if self.num_levels == 1 else f"[B, h, w, {self.num_levels}]"
            raise ZooError(f"ids: expected shape {expected} for a {self.kind} quantizer, got {list(ids.shape)}")
        codes = sum(codebooks[level][ids[..., level]] for level in range(codebooks.shape[0]))  # [B, h, w, D]
        return rearrange(codes, "b h w d -> b d h w")

    # -- forward -------------------------------------------------------------------------------------
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantise code-space features ``z [B, D, h, w]``."""
        if z.ndim != 4 or z.shape[1] != self.code_dim:
            raise ZooError(f"quantizer input: expected [B, {self.code_dim}, h, w], got {list(z.shape)}")
        if z.shape[0] == 0:
            # The library's reshapes fail on an empty batch: quantise one blank item and keep none of it.
            if self.training:
                raise ZooError("quantizer input: an empty batch cannot train the codebook")
            one = self.forward(z.new_zeros(1, *z.shape[1:]))
            return QuantizerOutput(one.quantized[:0], one.indices[:0], one.latent[:0], one.queries[:0], {})
        with self._no_kmeans_outside_training():
            return getattr(self, f"_forward_{self.kind}")(z)

    def _forward_vq(self, z: torch.Tensor) -> QuantizerOutput:
        quantized, ids, _, breakdown = self.inner(z, return_loss_breakdown=True)
        latent = F.normalize(z, dim=1) if self.options["l2_normalize"] else z  # what the codes are compared with
        queries = rearrange(latent.detach(), "b d h w -> b h w 1 d")
        return QuantizerOutput(quantized, ids.long(), latent, queries, {"commitment": breakdown.commitment})

    def _forward_fsq(self, z: torch.Tensor) -> QuantizerOutput:
        quantized, ids = self.inner(z)
        latent = self.fsq_bounded(z)
        queries = rearrange(latent.detach(), "b d h w -> b h w 1 d")
        return QuantizerOutput(quantized, ids.long(), latent, queries, {})

    def fsq_bounded(self, z: torch.Tensor) -> torch.Tensor:
        """FSQ's tanh bound before rounding, in the implicit codebook's scale: rounding it gives the code.

        Mirrors ``FSQ.bound`` (https://arxiv.org/abs/2309.15505, appendix A.1) without its round.
        """
        levels = self.inner._levels.to(z.dtype).view(1, -1, 1, 1)  # [1, d, 1, 1]
        half_l = (levels - 1) * (1 + 1e-3) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        bounded = torch.tanh(z + shift) * half_l - offset
        return bounded / torch.div(levels, 2, rounding_mode="floor")

    def _forward_lfq(self, z: torch.Tensor) -> QuantizerOutput:
        ret, breakdown = self.inner(z, inv_temperature=float(self.options["inv_temperature"]),
                                    return_loss_breakdown=True)
        losses = {}
        if self.training:
            # Entropy penalty of MAGVIT-v2: confident per-token choices, uniform use over the batch.
            gamma = float(self.options["diversity_gamma"])
            losses["entropy"] = breakdown.per_sample_entropy - gamma * breakdown.batch_entropy
            losses["commitment"] = breakdown.commitment
        queries = rearrange(z.detach(), "b d h w -> b h w 1 d")
        return QuantizerOutput(ret.quantized, ret.indices.long(), z, queries, losses)

    def _forward_rvq(self, z: torch.Tensor) -> QuantizerOutput:
        height, width = z.shape[-2:]
        # Tokens as a sequence: the library's image-map path of ResidualVQ mis-shapes its residual buffer.
        tokens = rearrange(z, "b d h w -> b (h w) d")
        quantized, ids, level_losses = self.inner(tokens)  # [B, N, D], ids [B, N, q], level_losses [q]
        quantized = rearrange(quantized, "b (h w) d -> b d h w", h=height, w=width)
        ids = rearrange(ids.long(), "b (h w) q -> b h w q", h=height, w=width)
        codebooks = self.level_codebooks()
        # Residual each level quantised: the input minus the codes of the levels before it.
        residual = rearrange(z.detach(), "b d h w -> b h w d")
        queries = []
        for level in range(self.num_levels):
            queries.append(residual)
            residual = residual - codebooks[level][ids[..., level]]
        queries = torch.stack(queries, dim=3)  # [B, h, w, q, D]
        return QuantizerOutput(quantized, ids, z, queries, {"commitment": level_losses.sum()})


def codebook_perplexity(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """exp(entropy) of the empirical code distribution of ``ids`` (per level when ``ids`` is [..., q])."""
    flat = ids.reshape(-1, ids.shape[-1]) if ids.ndim == 4 else ids.reshape(-1, 1)
    counts = torch.stack([torch.bincount(flat[:, q], minlength=vocab_size) for q in range(flat.shape[1])]).float()
    probs = counts / counts.sum(dim=1, keepdim=True).clamp_min(1)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=1)
    return entropy.exp().mean()
