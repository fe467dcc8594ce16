"""A small GPT over token ids: a language model for text tokens, or a generator of image / audio tokens.

Decoder-only, pre-norm transformer (GPT-2, https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf;
layout as nanoGPT). Every sequence starts with a learned *start* embedding, one per class when the model is
class-conditional (the class token of VQGAN / LlamaGen), so ``logits[:, t]`` predicts ``ids[:, t]`` from the
start token and ``ids[:, :t]``. With ``num_classes > 0`` an extra "null class" row is learned by dropping labels
with probability ``class_dropout`` in training, which enables classifier-free guidance when sampling
(Ho & Salimans 2022, https://arxiv.org/abs/2207.12598). Sampling keeps a key/value cache per layer, so each new
token costs one position of compute.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from zoo.errors import ZooError
from zoo.pretrained import PretrainedModule
from zoo.tokenizer import check_ids


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ZooError(f"GPT: dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        """x [B, L, D] -> [B, L, D]; with ``cache``, keys and values of earlier positions are reused and extended."""
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        past = 0
        if cache is not None:
            if "k" in cache:
                past = cache["k"].shape[2]
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        length = q.shape[2]
        mask = None
        if length > 1 and past:  # new queries see every cached key and the new keys up to themselves
            mask = torch.ones(length, past + length, dtype=torch.bool, device=x.device).tril(diagonal=past)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=length > 1 and not past,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cache)
        return x + self.mlp(self.norm2(x))


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Keep the ``top_k`` largest logits and the smallest set whose probability reaches ``top_p`` (nucleus
    sampling, Holtzman et al. 2020, https://arxiv.org/abs/1904.09751); the rest become -inf. logits [B, V]."""
    if top_k is not None:
        if top_k < 1:
            raise ZooError(f"top_k must be >= 1, got {top_k}")
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise ZooError(f"top_p must lie in (0, 1], got {top_p}")
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        # drop a token when the tokens before it already reach top_p (the first token always stays)
        drop_sorted = probs.cumsum(-1) - probs >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


class GPT(PretrainedModule):
    """Causal transformer over ids in ``[0, vocab_size)``; optionally conditioned on a class label."""

    modality: ClassVar[str] = "tokens"

    def __init__(
        self,
        vocab_size: int,
        context_length: int = 256,
        dim: int = 256,
        depth: int = 6,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        num_classes: int = 0,
        class_dropout: float = 0.1,
        tie_embeddings: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        if vocab_size < 1 or context_length < 2 or depth < 1:
            raise ZooError(
                f"GPT: need vocab_size >= 1, context_length >= 2, depth >= 1; got {vocab_size}, "
                f"{context_length}, {depth}"
            )
        self.vocab_size, self.context_length, self.num_classes = vocab_size, context_length, num_classes
        self.class_dropout = class_dropout
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.start_embedding = nn.Embedding(num_classes + 1, dim)  # one row per class, then the null class
        self.position_embedding = nn.Embedding(context_length, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        if tie_embeddings:
            self.head.weight = self.token_embedding.weight
        self._init_weights(seed, depth)

    def _init_weights(self, seed: int, depth: int) -> None:
        """GPT-2 init from a private generator: N(0, 0.02), residual projections scaled by 1/sqrt(2 depth)."""
        generator = torch.Generator().manual_seed(seed)
        for name, param in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(param)
            elif param.ndim == 1:  # LayerNorm gains
                nn.init.ones_(param)
            else:
                std = 0.02 / (2 * depth) ** 0.5 if name.endswith(("attn.proj.weight", "mlp.2.weight")) else 0.02
                nn.init.normal_(param, 0.0, std, generator=generator)

    # -- inputs ------------------------------------------------------------------------------------------
    def _start_ids(self, labels: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        """Start-embedding row per sequence: the class, or the null row when unconditional."""
        if labels is None:
            return torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        if self.num_classes == 0:
            raise ZooError("GPT: labels given, but the model has num_classes=0 (unconditional)")
        labels = torch.as_tensor(labels, device=device).long()
        if labels.shape != (batch,) or labels.min() < 0 or labels.max() >= self.num_classes:
            raise ZooError(f"GPT: labels must be [B={batch}] ints in [0, {self.num_classes}), got {labels.tolist()}")
        return labels

    def _run(self, x: torch.Tensor, offset: int, caches: list[dict] | None,
             head: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings x [B, L, D] at positions offset.. -> logits [B, L, V] (over ``head`` [V', D]'s rows if given)."""
        positions = torch.arange(offset, offset + x.shape[1], device=x.device)
        h = x + self.position_embedding(positions)
        for i, block in enumerate(self.blocks):
            h = block(h, None if caches is None else caches[i])
        return self.head(self.norm(h)) if head is None else F.linear(self.norm(h), head)

    def forward_with_tables(self, ids: torch.Tensor, input_rows: torch.Tensor,
                            output_rows: torch.Tensor | None = None) -> torch.Tensor:
        """``forward`` (unconditional) with other token tables: ``input_rows`` [V', D] embed ids in [0, V'), and
        ``output_rows`` [V', D] (default: ``input_rows``, as tied) give the logits [B, T, V']. Embedding transfer
        scores a new vocabulary's rows through it without building a second model (ZeTT trains through it)."""
        start = self.start_embedding(self._start_ids(None, ids.shape[0], ids.device))  # the null class
        x = torch.cat([start[:, None], F.embedding(ids[:, :-1], input_rows)], dim=1)  # [B, T, D]
        return self._run(x, 0, None, head=input_rows if output_rows is None else output_rows)

    def forward(self, ids: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """ids [B, T] (T <= context_length) -> logits [B, T, V]; ``logits[:, t]`` predicts ``ids[:, t]``."""
        ids = check_ids(ids, self.vocab_size, "GPT ids").to(self.device)
        if ids.ndim != 2 or ids.shape[1] < 1 or ids.shape[1] > self.context_length:
            raise ZooError(f"GPT ids: expected [B, T] with 1 <= T <= {self.context_length}, got {list(ids.shape)}")
        start = self.start_embedding(self._start_ids(labels, ids.shape[0], ids.device))  # [B, D]
        x = torch.cat([start[:, None], self.token_embedding(ids[:, :-1])], dim=1)  # [B, T, D]
        return self._run(x, 0, None)

    def training_losses(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        """Next-token cross-entropy on ``batch["ids"]`` [B, T] (with ``batch["label"]`` [B] if class-conditional)."""
        if "ids" not in batch:
            raise ZooError(f"GPT: batch has no 'ids' entry (keys: {sorted(batch)})")
        ids = torch.as_tensor(batch["ids"]).to(self.device)
        labels = batch.get("label") if self.num_classes else None
        if labels is not None and self.training and self.class_dropout > 0:
            labels = torch.as_tensor(labels, device=ids.device).long()
            dropped = torch.rand(labels.shape, device=ids.device) < self.class_dropout
            logits = self._forward_with_null(ids, labels, dropped)
        else:
            logits = self(ids, labels)
        loss = F.cross_entropy(rearrange(logits, "b t v -> (b t) v"), rearrange(ids, "b t -> (b t)"))
        return {"loss": loss}

    def _forward_with_null(self, ids: torch.Tensor, labels: torch.Tensor, dropped: torch.Tensor) -> torch.Tensor:
        start_ids = self._start_ids(labels, ids.shape[0], ids.device).masked_fill(dropped, self.num_classes)
        x = torch.cat([self.start_embedding(start_ids)[:, None], self.token_embedding(ids[:, :-1])], dim=1)
        return self._run(x, 0, None)

    # -- sampling ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        num_tokens: int,
        batch_size: int = 1,
        prompt: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        guidance_scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample ``num_tokens`` ids after ``prompt`` [B, T0] -> [B, T0 + num_tokens].

        ``temperature`` 0 is greedy decoding. ``guidance_scale`` != 1 applies classifier-free guidance
        (class-conditional models): logits = null + scale * (conditional - null).
        """
        device = self.device
        if prompt is None:
            prompt = torch.zeros(batch_size, 0, dtype=torch.long, device=device)
        prompt = check_ids(prompt, self.vocab_size, "GPT prompt").to(device)
        batch = prompt.shape[0]
        if prompt.ndim != 2 or num_tokens < 1 or prompt.shape[1] + num_tokens > self.context_length:
            raise ZooError(
                f"GPT.generate: prompt [B, T0] plus num_tokens must fit context_length {self.context_length}; "
                f"got prompt {list(prompt.shape)} and num_tokens {num_tokens}"
            )
        if temperature < 0:
            raise ZooError(f"temperature must be >= 0, got {temperature}")
        guided = guidance_scale != 1.0
        if guided and (self.num_classes == 0 or labels is None):
            raise ZooError("GPT.generate: guidance_scale != 1 needs a class-conditional model and labels")
        start_ids = self._start_ids(labels, batch, device)
        if guided:  # second half of the batch runs with the null class
            start_ids = torch.cat([start_ids, torch.full_like(start_ids, self.num_classes)])
            prompt_in = torch.cat([prompt, prompt])
        else:
            prompt_in = prompt
        caches: list[dict] = [{} for _ in self.blocks]
        x = torch.cat([self.start_embedding(start_ids)[:, None], self.token_embedding(prompt_in)], dim=1)
        logits = self._run(x, 0, caches)[:, -1]  # [B(x2), V]
        out = [prompt]
        for i in range(num_tokens):
            if guided:
                conditional, null = logits.chunk(2)
                logits = null + guidance_scale * (conditional - null)
            if temperature == 0:
                next_ids = logits.argmax(-1)
            else:
                probs = filter_logits(logits / temperature, top_k, top_p).softmax(-1)
                next_ids = torch.multinomial(probs, 1, generator=generator)[:, 0]
            out.append(next_ids[:, None])
            if i + 1 < num_tokens:
                feed = torch.cat([next_ids, next_ids]) if guided else next_ids
                position = prompt.shape[1] + 1 + i
                logits = self._run(self.token_embedding(feed)[:, None], position, caches)[:, -1]
        return torch.cat(out, dim=1)
