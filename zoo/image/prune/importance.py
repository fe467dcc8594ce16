"""Zero-TPrune's token selection (Wang, Dedhia, Jha, CVPR 2024, https://arxiv.org/abs/2305.17328) and two baselines.

All selectors take one layer's attention probabilities ``attn [B, H, N, N]`` (rows sum to 1; token 0 and the other
``prefix`` tokens are CLS / registers, always kept) and keys ``[B, H, N, d]``, and return the indices
``[B, prefix + n_keep]`` of the tokens to keep, in their original order.

* **Weighted PageRank** (``weighted_pagerank``): each head's attention matrix is the adjacency matrix of a complete
  directed graph; a token's score is the attention it receives, weighted by its senders' scores,
  ``s <- A^T s`` from ``s_0 = 1/N`` (CLS starts at ``sqrt(N)`` times that in the default "Zero-TPrune"; uniform in
  "Zero-TPrune-uni").
* **EIR** (emphasising informative regions): heads are combined by root mean square, not the mean, so a token
  strong in one or two heads survives; **VHF** (variance-based head filter, optional): heads whose score variance
  lies outside a range are left out.
* **I' -> S -> I** (``zero_tprune_select``): a ranking pass (I'), then the similarity stage S: sort the patches by
  importance, split them into halves (the less important half is group A, "Sequential-U"), match every A token to
  its most cosine-similar B token on the keys and drop the ``r`` best-matched A tokens; then the importance stage I
  re-ranks the survivors by WPR on their own sub-graph (rows renormalised) and keeps the top ``n_keep``. Ranking
  again after S avoids "the overwhelming of the major group", where many similar background tokens vote each
  other up.

Baselines: ``random_select`` (uniform, seeded) and ``topk_attention_select`` (the mean over heads of the
attention CLS pays each patch, as EViT keeps its attentive tokens).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from zoo.errors import ZooError


def weighted_pagerank(attn: torch.Tensor, iterations: int, cls_boost: bool = True, prefix: int = 1) -> torch.Tensor:
    """Per-head WPR scores ``[B, H, N]`` (each head's scores sum to 1) of attention ``[B, H, N, N]``."""
    if attn.ndim != 4 or attn.shape[-1] != attn.shape[-2]:
        raise ZooError(f"attention: expected [B, H, N, N], got {list(attn.shape)}")
    if iterations < 1:
        raise ZooError(f"WPR iterations: expected at least 1, got {iterations}")
    n = attn.shape[-1]
    scores = attn.new_full(attn.shape[:-1], 1.0 / n)  # [B, H, N]
    if cls_boost and prefix > 0:
        scores[..., :prefix] *= math.sqrt(n)
        scores = scores / scores.sum(dim=-1, keepdim=True)
    for _ in range(iterations):
        scores = torch.einsum("bhij,bhi->bhj", attn, scores)  # s_j <- sum_i A_ij s_i
    return scores


def combine_heads(scores: torch.Tensor, head_filter: tuple[float, float] | None = None) -> torch.Tensor:
    """Heads' scores ``[B, H, N]`` -> one importance ``[B, N]`` by root mean square (EIR), over the heads VHF keeps.

    ``head_filter`` (low, high) bounds the variance of ``N * s`` (scores rescaled to mean 1) per head; when no head
    of an item passes, all of its heads are used.
    """
    if head_filter is None:
        return scores.square().mean(dim=1).sqrt()
    low, high = head_filter
    variance = (scores * scores.shape[-1]).var(dim=-1)  # [B, H]
    keep = (variance >= low) & (variance <= high)
    keep = torch.where(keep.any(dim=1, keepdim=True), keep, torch.ones_like(keep))
    weights = keep.to(scores.dtype).unsqueeze(-1)  # [B, H, 1]
    return ((scores.square() * weights).sum(dim=1) / weights.sum(dim=1)).sqrt()


def _with_prefix(patch_index: torch.Tensor, prefix: int) -> torch.Tensor:
    """Patch positions (0-based among patches) -> sorted token indices with the prefix tokens in front."""
    front = torch.arange(prefix, device=patch_index.device).expand(patch_index.shape[0], -1)
    return torch.cat([front, patch_index.sort(dim=1).values + prefix], dim=1)


def _check_keep(n_patches: int, n_keep: int) -> None:
    if not 0 < n_keep <= n_patches:
        raise ZooError(f"keep: expected between 1 and {n_patches} patch tokens, got {n_keep}")


def zero_tprune_select(attn: torch.Tensor, keys: torch.Tensor, n_keep: int, prefix: int = 1, iterations: int = 10,
                       similarity_share: float = 0.5, cls_boost: bool = True,
                       head_filter: tuple[float, float] | None = None) -> torch.Tensor:
    """Zero-TPrune's I' -> S -> I selection (module docstring): indices ``[B, prefix + n_keep]``.

    ``similarity_share`` of the tokens to drop go in the S stage (at most the size of group A), the rest in I.
    """
    batch, _, n, _ = attn.shape
    n_patches = n - prefix
    _check_keep(n_patches, n_keep)
    if not 0.0 <= similarity_share <= 1.0:
        raise ZooError(f"similarity_share: expected a fraction in [0, 1], got {similarity_share}")
    drop = n_patches - n_keep
    # I': one ranking pass over the whole graph.
    importance = combine_heads(weighted_pagerank(attn, iterations, cls_boost, prefix), head_filter)[:, prefix:]
    # S: the less important half (A) against the more important half (B), cosine similarity of the keys.
    order = importance.argsort(dim=1)  # ascending: A first
    half = n_patches // 2
    r = min(round(similarity_share * drop), half)
    survivors = torch.arange(n_patches, device=attn.device).expand(batch, -1)
    if r > 0:
        group_a, group_b = order[:, :half], order[:, half:]
        flat_keys = F.normalize(keys[:, :, prefix:].transpose(1, 2).flatten(2), dim=-1)  # [B, P, H*d]
        keys_a = flat_keys.gather(1, group_a[..., None].expand(-1, -1, flat_keys.shape[-1]))
        keys_b = flat_keys.gather(1, group_b[..., None].expand(-1, -1, flat_keys.shape[-1]))
        best = (keys_a @ keys_b.transpose(1, 2)).amax(dim=-1)  # [B, |A|]: each A token's closest B token
        kept_a = group_a.gather(1, best.argsort(dim=1)[:, : half - r])  # drop the r best-matched A tokens
        survivors = torch.cat([kept_a, group_b], dim=1)  # [B, P - r] patch positions
    if survivors.shape[1] == n_keep:
        return _with_prefix(survivors, prefix)
    # I: WPR again on the survivors' sub-graph (prefix included), rows renormalised; keep the top n_keep.
    tokens = torch.cat([torch.arange(prefix, device=attn.device).expand(batch, -1), survivors + prefix], dim=1)
    index = tokens[:, None, :, None].expand(-1, attn.shape[1], -1, n)
    sub = attn.gather(2, index).gather(3, tokens[:, None, None, :].expand(-1, attn.shape[1], tokens.shape[1], -1))
    sub = sub / sub.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    again = combine_heads(weighted_pagerank(sub, iterations, cls_boost, prefix), head_filter)[:, prefix:]
    top = again.topk(n_keep, dim=1).indices
    return _with_prefix(survivors.gather(1, top), prefix)


def topk_attention_select(attn: torch.Tensor, keys: torch.Tensor, n_keep: int, prefix: int = 1) -> torch.Tensor:
    """The patches CLS attends to most (mean over heads): indices ``[B, prefix + n_keep]``."""
    _check_keep(attn.shape[-1] - prefix, n_keep)
    cls_attention = attn[:, :, 0, prefix:].mean(dim=1)  # [B, P]
    return _with_prefix(cls_attention.topk(n_keep, dim=1).indices, prefix)


def random_select(attn: torch.Tensor, keys: torch.Tensor, n_keep: int, prefix: int = 1,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniformly random patches (seeded by ``generator``): indices ``[B, prefix + n_keep]``."""
    batch, n = attn.shape[0], attn.shape[-1]
    _check_keep(n - prefix, n_keep)
    noise = torch.rand(batch, n - prefix, generator=generator).to(attn.device)
    return _with_prefix(noise.topk(n_keep, dim=1).indices, prefix)
