"""Zero-shot token pruning of any timm ViT at inference (Zero-TPrune, https://arxiv.org/abs/2305.17328).

    x -> patch_embed -> _pos_embed -> norm_pre -> blocks -> norm -> forward_head
                                                   |
        at a pruning layer l: h = x + attn(norm1(x))   (attention probabilities A and keys kept)
                              keep = selector(A, keys, n_keep)        (Zero-TPrune, random or top-k attention)
                              x = h[keep] + mlp(norm2(h[keep]))      (the MLP and every later block see fewer tokens)

``TokenPrunedViT(vit, keep_ratio, layers, method)`` wraps a ``timm.models.vision_transformer.VisionTransformer``
(its weights untouched, no training): ``keep_ratio`` of the patch tokens present survive each pruning layer; CLS
and register tokens always do. ``flops(batch=1)`` counts the multiply-adds of the pruned forward, selection cost
included, so accuracy can be set against compute.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.image.prune.importance import random_select, topk_attention_select, zero_tprune_select

METHODS = ("zero-tprune", "random", "topk-attention", "none")


def attention_with_probabilities(attn: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """timm ``Attention`` on ``x [B, N, C]`` computed explicitly: (output ``[B, N, C]``, probabilities ``[B, H, N, N]``,
    keys ``[B, H, N, d]``); the same output as ``attn(x)`` up to float rounding."""
    batch, n, _ = x.shape
    qkv = attn.qkv(x).reshape(batch, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    probs = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
    out = (probs @ v).transpose(1, 2).reshape(batch, n, attn.attn_dim)
    out = attn.norm(out)
    gate = getattr(attn, "gate", None)
    if gate is not None:
        out = out * gate(x).sigmoid()
    return attn.proj(out), probs, k


class TokenPrunedViT(nn.Module):
    """A timm ViT whose tokens are pruned at inference (see the module docstring)."""

    def __init__(self, vit: nn.Module, keep_ratio: float, layers: list[int] | tuple[int, ...] | None = None,
                 method: str = "zero-tprune", iterations: int = 10, similarity_share: float = 0.5,
                 cls_boost: bool = True, head_filter: tuple[float, float] | None = None, seed: int = 0):
        super().__init__()
        for name in ("patch_embed", "blocks", "norm", "forward_head", "_pos_embed"):
            if not hasattr(vit, name):
                raise ZooError(f"TokenPrunedViT: expected a timm VisionTransformer, {type(vit).__name__} has no {name}")
        if method not in METHODS:
            raise ZooError(f"TokenPrunedViT: method must be one of {METHODS}, got {method!r}")
        if not 0.0 < keep_ratio <= 1.0:
            raise ZooError(f"TokenPrunedViT: keep_ratio must lie in (0, 1], got {keep_ratio}")
        depth = len(vit.blocks)
        layers = list(range(1, depth)) if layers is None else sorted(int(i) for i in layers)
        if any(not 0 <= i < depth for i in layers):
            raise ZooError(f"TokenPrunedViT: layers must be block indices in [0, {depth}), got {layers}")
        self.vit, self.keep_ratio, self.layers, self.method = vit, float(keep_ratio), layers, method
        self.iterations, self.similarity_share = int(iterations), float(similarity_share)
        self.cls_boost, self.head_filter, self.seed = bool(cls_boost), head_filter, int(seed)
        self.prefix = int(getattr(vit, "num_prefix_tokens", 1))

    def token_schedule(self, n_patches: int) -> list[int]:
        """Patch tokens entering each block, and after the last one: ``[depth + 1]`` counts."""
        counts = [n_patches]
        for index in range(len(self.vit.blocks)):
            n = counts[-1]
            if self.method != "none" and index in self.layers:
                n = max(1, round(self.keep_ratio * n))
            counts.append(n)
        return counts

    def _select(self, probs: torch.Tensor, keys: torch.Tensor, n_keep: int, generator) -> torch.Tensor:
        if self.method == "zero-tprune":
            return zero_tprune_select(probs, keys, n_keep, self.prefix, self.iterations, self.similarity_share,
                                      self.cls_boost, self.head_filter)
        if self.method == "topk-attention":
            return topk_attention_select(probs, keys, n_keep, self.prefix)
        return random_select(probs, keys, n_keep, self.prefix, generator)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images as the wrapped ViT takes them -> its head's output (logits)."""
        vit = self.vit
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(images))))
        generator = torch.Generator().manual_seed(self.seed)
        for index, block in enumerate(vit.blocks):
            n_keep = round(self.keep_ratio * (x.shape[1] - self.prefix))
            if self.method == "none" or index not in self.layers or n_keep >= x.shape[1] - self.prefix:
                x = block(x)
                continue
            out, probs, keys = attention_with_probabilities(block.attn, block.norm1(x))
            x = x + block.ls1(out)
            keep = self._select(probs, keys, max(1, n_keep), generator)  # [B, prefix + n_keep]
            x = x.gather(1, keep[..., None].expand(-1, -1, x.shape[-1]))
            x = x + block.ls2(block.mlp(block.norm2(x)))
        return vit.forward_head(vit.norm(x))

    def flops(self, n_patches: int | None = None) -> int:
        """Multiply-adds of one image's forward: patch embedding, blocks at their token counts, selection, head."""
        vit = self.vit
        n_patches = n_patches or vit.patch_embed.num_patches
        width = vit.embed_dim
        heads = vit.blocks[0].attn.num_heads
        hidden = vit.blocks[0].mlp.fc1.out_features
        conv = vit.patch_embed.proj
        total = n_patches * conv.in_channels * conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        counts = self.token_schedule(n_patches)
        for index in range(len(vit.blocks)):
            n_in, n_out = counts[index] + self.prefix, counts[index + 1] + self.prefix
            total += 4 * n_in * width * width + 2 * n_in * n_in * width  # qkv + proj, QK^T + AV
            total += 2 * n_out * width * hidden  # the MLP, on the tokens kept
            if n_out < n_in:
                total += self._selection_flops(n_in, n_out, heads, width)
        return total + width * getattr(vit.head, "out_features", 0)

    def _selection_flops(self, n_in: int, n_out: int, heads: int, width: int) -> int:
        if self.method == "zero-tprune":
            drop = n_in - n_out
            half = (n_in - self.prefix) // 2
            similarity = half * (n_in - self.prefix - half) * width if round(self.similarity_share * drop) else 0
            return 2 * self.iterations * heads * n_in * n_in + similarity  # WPR twice (I', I) + key similarities
        if self.method == "topk-attention":
            return heads * n_in
        return 0


def pruned_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 250) -> float:
    """Top-1 accuracy of ``model(images)`` logits against ``labels``."""
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        logits = model(images[start:start + batch_size])
        correct += int((logits.argmax(-1) == labels[start:start + batch_size].to(logits.device)).sum())
    return correct / max(1, images.shape[0])

