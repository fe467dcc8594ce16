"""TokenGenerator: an autoregressive generator of images over a frozen image tokenizer's token grids.

    images --(frozen tokenizer.encode, once, cached: zoo.data.tokens)--> ids [B, h, w] --raster--> [B, L]
    training:  GPT(ids, class) -> next-token cross-entropy
    sampling:  GPT.generate(n, classes, temperature / top-k / top-p) -> [n, L] -> [n, h, w] -> tokenizer.decode

The tokenizer is named in the config (a checkpoint folder, ``stage:NAME`` in a recipe, or a registry
name) and is frozen: gradients off, always in eval mode, its weights saved with the generator's so an
export is complete. The generator also answers ``encode`` / ``decode`` / ``codebook`` with its
tokenizer's, so one evaluation suite measures both: rFID and pFID of the tokenizer, gFID of the
generator (``zoo.metrics.gfid``). This is the setting of RobusTok's benchmark
(https://arxiv.org/abs/2503.08354, section 4): one AR model per tokenizer, generation quality compared.

Grids with several codebooks (``[B, h, w, q]``) are flattened position by position, levels innermost.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from zoo.data.tokens import load_frozen_tokenizer, tokenizer_fingerprint
from zoo.errors import ZooError
from zoo.pretrained import PretrainedModule


class TokenGenerator(PretrainedModule):
    """A class-conditional (``num_classes`` > 0) or unconditional GPT over a frozen image tokenizer's tokens."""

    modality: ClassVar[str] = "image"
    has_decoder: ClassVar[bool] = True

    def __init__(self, tokenizer: str, gpt: dict | None = None, num_classes: int = 0, image_size: int = 28,
                 seed: int = 0):
        super().__init__()
        from zoo.generators.gpt import GPT

        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ZooError(f"TokenGenerator: num_classes must be an integer >= 0 (0: unconditional), "
                           f"got {num_classes!r}")
        self.tokenizer = load_frozen_tokenizer(tokenizer)
        self.num_classes, self.image_size = num_classes, int(image_size)
        with torch.no_grad():
            probe = torch.as_tensor(self.tokenizer.encode(torch.zeros(1, 3, self.image_size, self.image_size)))
        self.grid = tuple(int(n) for n in probe.shape[1:])  # (h, w) or (h, w, q) or (L,)
        self.length = math.prod(self.grid)
        options = dict(gpt or {})
        for reserved in ("vocab_size", "context_length", "num_classes", "seed"):
            if reserved in options:
                raise ZooError(f"TokenGenerator: gpt.{reserved} is set by the tokenizer and the generator's own "
                               f"num_classes / seed; remove it")
        self.gpt = GPT(vocab_size=int(self.tokenizer.vocab_size), context_length=self.length, num_classes=num_classes,
                       seed=seed, **options)
        self._fingerprint: str | None = None

    # -- the tokenizer, frozen -------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> TokenGenerator:
        super().train(mode)
        if isinstance(self.tokenizer, torch.nn.Module):
            self.tokenizer.eval()  # frozen: EMA codebooks and dropout stay as trained
        return self

    def _load_weights(self, path) -> None:
        super()._load_weights(path)
        self._fingerprint = None

    @property
    def tokenizer_fingerprint(self) -> str:
        """What ``image-tokens`` items carry as ``tokens_of``: the tokenizer's class, config and weights hash."""
        if self._fingerprint is None:
            self._fingerprint = tokenizer_fingerprint(self.tokenizer)
        return self._fingerprint

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.vocab_size)

    @property
    def codebook(self) -> torch.Tensor:
        return self.tokenizer.codebook

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.embed(ids)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The tokenizer's ``encode``: images ``[B, 3, H, W]`` -> ids ``[B, *grid]``."""
        return self.tokenizer.encode(x)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """The tokenizer's ``decode``: ids ``[B, *grid]`` -> images ``[B, 3, H, W]`` in ``[0, 1]``."""
        return self.tokenizer.decode(ids)

    # -- training ----------------------------------------------------------------------------------------------
    def flatten(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, *grid]`` -> sequences ``[B, L]`` in raster order (levels innermost)."""
        ids = torch.as_tensor(ids)
        if tuple(ids.shape[1:]) != self.grid:
            raise ZooError(f"tokens: expected grids of shape {list(self.grid)} (this tokenizer on "
                           f"{self.image_size}x{self.image_size} images), got {list(ids.shape[1:])}")
        return ids.reshape(ids.shape[0], self.length).long()

    def unflatten(self, sequences: torch.Tensor) -> torch.Tensor:
        """sequences ``[B, L]`` -> ids ``[B, *grid]``."""
        return sequences.reshape(sequences.shape[0], *self.grid)

    def _labels(self, batch: dict) -> torch.Tensor | None:
        """The batch's class labels for a class-conditional generator (the GPT checks their range)."""
        if not self.num_classes:
            return None
        if batch.get("label") is None:
            raise ZooError("TokenGenerator: class-conditional (num_classes set) but the batch has no 'label'")
        return torch.as_tensor(batch["label"], device=self.device).long()

    def training_losses(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        """Next-token cross-entropy on the batch's cached ``tokens`` (or on ``image`` encoded on the fly)."""
        if "tokens" in batch:
            owners = batch.get("tokens_of")
            if owners is not None and any(owner != self.tokenizer_fingerprint for owner in owners):
                raise ZooError("TokenGenerator: the batch holds tokens of another tokenizer (its image-tokens data "
                               "names a different tokenizer than the model's config)")
            tokens = batch["tokens"]
        elif "image" in batch:
            with torch.no_grad():
                tokens = self.tokenizer.encode(batch["image"].to(self.device))
        else:
            raise ZooError(f"TokenGenerator: batch has neither 'tokens' nor 'image' (keys: {sorted(batch)})")
        sequences = self.flatten(tokens).to(self.device)  # [B, L]
        # The GPT's own loss: next-token cross-entropy, with its class dropout (for classifier-free guidance).
        losses = self.gpt.training_losses({"ids": sequences, "label": self._labels(batch)}, step)
        return {**losses, "bits_per_token": losses["loss"].detach() / math.log(2)}

    # -- sampling ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_ids(self, n: int, labels=None, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None, seed: int = 0, guidance_scale: float = 1.0,
                   batch_size: int = 500) -> torch.Tensor:
        """``n`` token grids ``[n, *grid]``; class labels given, or drawn uniformly (seeded) when conditional.

        Samples depend on ``seed`` and ``batch_size`` (the chunks share one random stream).
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ZooError(f"sample: n must be a non-negative integer, got {n!r}")
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        if labels is not None:
            if not self.num_classes:
                raise ZooError("sample: labels given, but this generator is unconditional (num_classes 0)")
            labels = torch.as_tensor(labels).long().cpu()
            if labels.shape != (n,):
                raise ZooError(f"sample: labels must have shape [{n}], got {list(labels.shape)}")
        elif self.num_classes:
            labels = torch.randint(0, self.num_classes, (n,), generator=generator)
        was_training = self.training
        self.eval()
        try:
            chunks = []
            for start in range(0, n, batch_size):
                count = min(batch_size, n - start)
                chunk_labels = labels[start : start + count].to(self.device) if labels is not None else None
                chunks.append(self.gpt.generate(self.length, batch_size=count, labels=chunk_labels,
                                                temperature=temperature, top_k=top_k, top_p=top_p,
                                                guidance_scale=guidance_scale, generator=generator).cpu())
        finally:
            self.train(was_training)
        sequences = torch.cat(chunks) if chunks else torch.empty(0, self.length, dtype=torch.long)
        return self.unflatten(sequences)

    @torch.no_grad()
    def sample(self, n: int, labels=None, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, seed: int = 0, guidance_scale: float = 1.0,
               batch_size: int = 500) -> torch.Tensor:
        """``n`` images ``[n, 3, H, W]`` in ``[0, 1]``: sampled token grids decoded by the tokenizer."""
        ids = self.sample_ids(n, labels, temperature, top_k, top_p, seed, guidance_scale, batch_size)
        if n == 0:
            return torch.empty(0, 3, self.image_size, self.image_size)
        images = []
        for start in range(0, n, batch_size):
            images.append(torch.as_tensor(self.tokenizer.decode(ids[start : start + batch_size].to(self.device))))
        return torch.cat(images).float().clamp(0, 1).cpu()

    def extra_repr(self) -> str:
        return f"grid={list(self.grid)}, vocab_size={self.vocab_size}, num_classes={self.num_classes}"
