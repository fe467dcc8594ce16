"""SEED's causal Q-Former (https://arxiv.org/abs/2307.08041, after BLIP-2's Q-Former, arXiv 2301.12597).

    queries [L, W] (learned) -> L layers of:
        q = q + causal_self_attention(LN(q))            query i attends to queries 0..i only (lower-triangular mask)
        q = q + cross_attention(LN(q), patch features)   every query reads the whole image
        q = q + MLP(LN(q))
    -> causal embeddings [B, L, W]

Because the only path between queries is the masked self-attention, output i is a function of the image and
of queries 0..i: a prefix of the tokens never depends on what comes after it (SEED's "1D causal" tokens, which
a left-to-right language model can predict one by one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import Mlp
from timm.models.vision_transformer import Attention
from torch import nn

from zoo.errors import ZooError


class CrossAttention(nn.Module):
    """Multi-head attention of queries ``[B, L, W]`` over a memory ``[B, N, W]`` (no mask)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(width, width)
        self.to_kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        q = rearrange(self.to_q(queries), "b l (h d) -> b h l d", h=self.heads)
        k, v = rearrange(self.to_kv(memory), "b n (two h d) -> two b h n d", two=2, h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))


class CausalQFormerLayer(nn.Module):
    """Causal self-attention among the queries, cross-attention to the image, MLP; pre-norm residuals."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1, self.self_attention = nn.LayerNorm(width), Attention(width, heads, qkv_bias=True)
        self.norm2, self.cross_attention = nn.LayerNorm(width), CrossAttention(width, heads)
        self.norm3, self.mlp = nn.LayerNorm(width), Mlp(width, int(width * mlp_ratio))

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        queries = queries + self.self_attention(self.norm1(queries), is_causal=True)
        queries = queries + self.cross_attention(self.norm2(queries), memory)
        return queries + self.mlp(self.norm3(queries))


class CausalQFormer(nn.Module):
    """``num_queries`` learned queries read patch features ``[B, N, W]`` -> causal embeddings ``[B, L, W]``."""

    def __init__(self, num_queries: int, width: int, depth: int, heads: int, mlp_ratio: float):
        super().__init__()
        if num_queries < 1 or depth < 1 or width % heads:
            raise ZooError(f"causal Q-Former: expected num_queries >= 1, depth >= 1 and heads dividing width, got "
                           f"num_queries={num_queries}, depth={depth}, width={width}, heads={heads}")
        self.queries = nn.Parameter(torch.randn(num_queries, width) * 0.02)  # query + position in one
        self.memory_norm = nn.LayerNorm(width)
        self.layers = nn.ModuleList([CausalQFormerLayer(width, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        memory = self.memory_norm(patches)
        queries = self.queries.expand(patches.shape[0], -1, -1)
        for layer in self.layers:
            queries = layer(queries, memory)
        return self.norm(queries)
