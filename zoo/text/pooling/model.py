"""The networks of the pooling tokenizer: a byte encoder pooled into one vector per segment, a byte decoder that
spells a segment from its vector, and a boundary predictor over a whole text.

Shapes: ``N`` segments, ``S`` = ``max_bytes`` byte slots per segment, ``D`` model width, ``C`` code width,
``B`` texts of ``L`` bytes.

* ``SegmentEncoder`` (eTok's word encoder, https://arxiv.org/abs/2310.11628): byte embeddings plus positions, a
  small bidirectional transformer *inside* each segment (a padding mask keeps other slots out), then one vector per
  segment: the masked ``mean`` of the outputs (the hourglass / MAGNET downsampling) or ``attention`` of a learned
  query over them (Byte2Word's cross-attention pooling, https://arxiv.org/abs/2211.12677). A segment's vector
  depends on its own bytes only, so a segment always gets the same code whatever surrounds it.
* ``SegmentDecoder``: a small causal transformer over ``[code, b_0, ..., b_{S-1}]`` that predicts
  ``b_0, ..., b_{S-1}, END``; the code is the first position and is also added to every position, so a two-layer
  decoder does not lose it.
* ``BoundaryPredictor`` (MAGNET's predictor, https://arxiv.org/abs/2407.08818: Linear -> GELU -> Linear -> a logit
  per byte) on top of a few 1-D convolutions over byte embeddings, so each byte sees a few neighbours either side:
  what the word rule needs to tell where a segment begins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from zoo.errors import ZooError

END = 256  # the decoder's end-of-segment class, after the 256 byte values
POOLINGS = ("mean", "attention")


class Block(nn.Module):
    """Pre-norm transformer block; ``mask`` [.., L, L] (True = may attend) or ``causal``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        if dim % heads:
            raise ZooError(f"pooling tokenizer: dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(self.norm1(x)), "n l (three h d) -> three n h l d", three=3, h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        x = x + self.proj(rearrange(out, "n h l d -> n l (h d)"))
        return x + self.mlp(self.norm2(x))


class SegmentEncoder(nn.Module):
    """Bytes of segments ``[N, S]`` (padding anywhere ``lengths`` says) -> one code-space vector each ``[N, C]``."""

    def __init__(self, max_bytes: int, dim: int, depth: int, heads: int, code_dim: int, pooling: str):
        super().__init__()
        if pooling not in POOLINGS:
            raise ZooError(f"pooling tokenizer: pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.byte_embedding = nn.Embedding(256, dim)
        self.position = nn.Parameter(torch.randn(max_bytes, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.query = nn.Parameter(torch.randn(dim) * 0.02) if pooling == "attention" else None
        self.norm = nn.LayerNorm(dim)
        self.to_code = nn.Linear(dim, code_dim)

    def forward(self, data: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        slots = data.shape[1]
        valid = torch.arange(slots, device=data.device)[None, :] < lengths[:, None]  # [N, S]
        x = self.byte_embedding(data) + self.position[:slots]
        mask = rearrange(valid, "n s -> n 1 1 s")  # every slot attends to the segment's bytes only
        for block in self.blocks:
            x = block(x, mask=mask)
        x = self.norm(x)
        if self.pooling == "mean":
            weights = valid.to(x.dtype) / lengths.clamp_min(1)[:, None].to(x.dtype)  # [N, S]
        else:  # one learned query's softmax attention over the segment's bytes
            scores = torch.einsum("nsd,d->ns", x, self.query) / x.shape[-1] ** 0.5
            weights = scores.masked_fill(~valid, float("-inf")).softmax(dim=-1)
        pooled = torch.einsum("ns,nsd->nd", weights, x)
        return self.to_code(pooled)


class SegmentDecoder(nn.Module):
    """Code vectors ``[N, C]`` and the bytes so far ``[N, T]`` -> logits ``[N, T + 1, 257]`` for each next byte
    (or ``END``)."""

    def __init__(self, max_bytes: int, dim: int, depth: int, heads: int, code_dim: int):
        super().__init__()
        self.from_code = nn.Linear(code_dim, dim)
        self.byte_embedding = nn.Embedding(256, dim)
        self.position = nn.Parameter(torch.randn(max_bytes + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 257)

    def forward(self, codes: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        condition = self.from_code(codes)[:, None, :]  # [N, 1, D]
        x = torch.cat([condition, self.byte_embedding(data)], dim=1)
        x = x + self.position[: x.shape[1]] + condition
        for block in self.blocks:
            x = block(x, causal=True)
        return self.head(self.norm(x))

    @torch.no_grad()
    def spell(self, codes: torch.Tensor, max_bytes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy spelling of each code: bytes ``[N, max_bytes]`` (zero after the end) and lengths ``[N]``."""
        count = codes.shape[0]
        data = torch.zeros(count, 0, dtype=torch.long, device=codes.device)
        lengths = torch.full((count,), max_bytes, dtype=torch.long, device=codes.device)
        for step in range(max_bytes):
            choice = self(codes, data)[:, -1].argmax(dim=-1)  # [N]
            ended = (choice == END) & (lengths == max_bytes)
            lengths = torch.where(ended, torch.full_like(lengths, step), lengths)
            data = torch.cat([data, choice.clamp_max(255)[:, None]], dim=1)
            if bool((lengths < max_bytes).all()):
                break
        data = F.pad(data, (0, max_bytes - data.shape[1]))
        data = data.masked_fill(torch.arange(max_bytes, device=codes.device)[None, :] >= lengths[:, None], 0)
        return data, lengths


class BoundaryPredictor(nn.Module):
    """Bytes ``[B, L]`` -> a logit per byte ``[B, L]``: does a segment begin here?

    A byte's logit depends on the ``reach`` bytes either side of it only (each convolution adds ``kernel // 2``).
    ``valid`` ``[B, L]`` marks the bytes of the text: the others are zeroed before every convolution, exactly as the
    convolutions' own zero padding past a text's ends, so a window of a text with ``reach`` bytes of context either
    side gives its middle bytes the logits the whole text gives them."""

    def __init__(self, dim: int, layers: int = 3, kernel: int = 5):
        super().__init__()
        self.reach = layers * (kernel // 2)
        self.byte_embedding = nn.Embedding(256, dim)
        self.convs = nn.ModuleList(nn.Conv1d(dim, dim, kernel, padding=kernel // 2) for _ in range(layers))
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 1))

    def forward(self, data: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        x = rearrange(self.byte_embedding(data), "b l d -> b d l")
        keep = None if valid is None else rearrange(valid, "b l -> b 1 l").to(x.dtype)
        for conv in self.convs:
            if keep is not None:
                x = x * keep
            x = x + F.gelu(conv(x))
        return self.head(rearrange(x, "b d l -> b l d")).squeeze(-1)
