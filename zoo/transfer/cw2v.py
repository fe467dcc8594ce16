"""CW2V, constrained word2vec: rows for added tokens as convex mixes of the frozen old rows.

Mundra et al. 2024, "An Empirical Comparison of Vocabulary Expansion and Initialization Approaches for
Language Models", https://arxiv.org/abs/2407.05841 (code: ``AI4Bharat/VocabAdaptation_LLM``, ``word2vec/``).
Each added token's row is ``softmax(A) @ E`` with E the old rows [V, D] kept frozen, so it stays in their
convex hull; only A [N, V] is learned, factorised as P [N, r] @ Q [r, V] (the authors use r = 1024). A is
trained by skip-gram with negative sampling on text encoded with the expanded tokenizer: the centre token's
input row against the context token's output row, 5 negatives per pair drawn from unigram^0.75, window 5,
Adam. The input embeddings and the output head get their own A; a model with tied embeddings has one table
and one A.

Choices of this implementation (the authors' scripts differ among themselves):
- P and Q start small (N(0, 0.1)), so softmax(A) starts near uniform and every new row near the old mean; the
  GPU script starts both from U(0, 1), which makes the first mixes peak on a few arbitrary old rows.
- each negative has its own log-sigmoid (the GPU script sums the 5 dot products first).
- pairs whose centre and context are both old tokens are skipped: their only gradient to A would come
  through sampled negatives, and they are most of the pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ZooError


def skipgram_pairs(sequences: Sequence[Sequence[int]], window: int = 5) -> torch.Tensor:
    """Every (centre, context) pair within ``window`` positions of each other in each sequence -> [P, 2]."""
    pairs = []
    for seq in sequences:
        ids = torch.as_tensor(list(seq), dtype=torch.long)
        for offset in range(1, window + 1):
            if len(ids) > offset:
                left, right = ids[:-offset], ids[offset:]
                pairs += [torch.stack([left, right], 1), torch.stack([right, left], 1)]
    return torch.cat(pairs) if pairs else torch.zeros(0, 2, dtype=torch.long)


def noise_distribution(sequences: Sequence[Sequence[int]], vocab_size: int, power: float = 0.75) -> torch.Tensor:
    """Negative-sampling distribution ∝ unigram count^power over ``vocab_size`` ids (Mikolov et al. 2013)."""
    counts = torch.zeros(vocab_size, dtype=torch.float64)
    for seq in sequences:
        counts += torch.bincount(torch.as_tensor(list(seq), dtype=torch.long), minlength=vocab_size).double()
    weights = counts.pow(power)
    if weights.sum() == 0:
        raise ZooError("CW2V: the text has no tokens to learn from")
    return (weights / weights.sum()).float()


class ConvexRows(nn.Module):
    """New rows softmax(P Q) @ E for a frozen table E [V, D]; P [N, r], Q [r, V]."""

    def __init__(self, old: torch.Tensor, count: int, rank: int, generator: torch.Generator):
        super().__init__()
        self.register_buffer("old", old.detach().float().clone())
        self.p = nn.Parameter(0.1 * torch.randn(count, rank, generator=generator))
        self.q = nn.Parameter(0.1 * torch.randn(rank, old.shape[0], generator=generator))

    def forward(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """New rows [n, D] (all N, or those indexed by ``rows`` [n])."""
        p = self.p if rows is None else self.p[rows]
        return F.softmax(p @ self.q, dim=-1) @ self.old  # https://arxiv.org/abs/2407.05841 §3: softmax(A)·E


@dataclass
class CW2VResult:
    input_rows: torch.Tensor  # [N, D] rows for the added ids of the input table
    output_rows: torch.Tensor | None  # [N, D] for the output head (None when tied)
    losses: list[float] = field(default_factory=list)  # mean loss per epoch
    mixes: dict[str, torch.Tensor] = field(default_factory=dict)  # softmax(A) [N, V] per table


def _gather(old: torch.Tensor, convex: ConvexRows, ids: torch.Tensor) -> torch.Tensor:
    """Rows [..., D] of the expanded table (old rows for ids < V, convex mixes for the added ids)."""
    flat = ids.flatten()
    out = old[flat.clamp_max(len(old) - 1)].clone()
    added = flat >= len(old)
    if added.any():
        unique, inverse = flat[added].unique(return_inverse=True)
        out[added] = convex(unique - len(old))[inverse]
    return out.view(*ids.shape, old.shape[1])


def cw2v_rows(
    input_table: torch.Tensor,
    sequences: Sequence[Sequence[int]],
    new_count: int,
    output_table: torch.Tensor | None = None,
    window: int = 5,
    negatives: int = 5,
    epochs: int = 5,
    rank: int = 1024,
    lr: float = 5e-3,
    batch_size: int = 1024,
    max_pairs: int | None = None,
    seed: int = 0,
) -> CW2VResult:
    """Train CW2V rows for ``new_count`` added ids V..V+N-1 of ids in ``sequences`` (text under the expanded tokenizer).

    ``input_table`` [V, D]: the old input embeddings; ``output_table`` [V, D]: the old output head, None when tied.
    ``max_pairs`` caps the (centre, context) pairs used per epoch (a seeded sample) for quick runs."""
    old_in = input_table.detach().float()
    old_out = None if output_table is None else output_table.detach().float()
    vocab, total = old_in.shape[0], old_in.shape[0] + new_count
    if new_count < 1:
        raise ZooError(f"CW2V: need at least one added token, got new_count={new_count}")
    if old_out is not None and old_out.shape != old_in.shape:
        raise ZooError(f"CW2V: output head {list(old_out.shape)} differs from input table {list(old_in.shape)}")
    if min(window, negatives, epochs, rank, batch_size) < 1:
        raise ZooError("CW2V: window, negatives, epochs, rank and batch_size must all be >= 1")
    for seq in sequences:
        if len(seq) and (min(seq) < 0 or max(seq) >= total):
            raise ZooError(f"CW2V: ids must lie in [0, {total}) (old {vocab} + added {new_count}), got {max(seq)}")
    generator = torch.Generator().manual_seed(seed)
    rank = min(rank, vocab)
    convex_in = ConvexRows(old_in, new_count, rank, generator)
    convex_out = None if old_out is None else ConvexRows(old_out, new_count, rank, generator)
    pairs = skipgram_pairs(sequences, window)
    pairs = pairs[(pairs >= vocab).any(1)]  # pairs of two old tokens carry no gradient to A but by negatives
    if not len(pairs):
        raise ZooError("CW2V: no added token occurs in the text; pass text the added tokens come from")
    noise = noise_distribution(sequences, total)
    params = [*convex_in.parameters(), *([] if convex_out is None else convex_out.parameters())]
    optimiser = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(pairs), generator=generator)
        if max_pairs is not None:
            order = order[:max_pairs]
        total_loss, seen = 0.0, 0
        for batch in pairs[order].split(batch_size):
            centre, context = batch[:, 0], batch[:, 1]
            negative = torch.multinomial(noise, len(batch) * negatives, replacement=True, generator=generator)
            u = _gather(old_in, convex_in, centre)  # [B, D] input rows
            out_old, out_convex = (old_in, convex_in) if convex_out is None else (old_out, convex_out)
            v = _gather(out_old, out_convex, context)  # [B, D] output rows
            n = _gather(out_old, out_convex, negative.view(len(batch), negatives))  # [B, K, D]
            # skip-gram negative sampling: -log σ(u·v) - Σ_k log σ(-u·n_k)
            loss = -F.logsigmoid((u * v).sum(-1)) - F.logsigmoid(-torch.einsum("bd,bkd->bk", u, n)).sum(-1)
            loss = loss.mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total_loss += loss.item() * len(batch)
            seen += len(batch)
        losses.append(total_loss / max(seen, 1))
    with torch.no_grad():
        mixes = {"input": F.softmax(convex_in.p @ convex_in.q, -1)}
        input_rows = convex_in()
        output_rows = None
        if convex_out is not None:
            mixes["output"] = F.softmax(convex_out.p @ convex_out.q, -1)
            output_rows = convex_out()
    return CW2VResult(input_rows, output_rows, losses, mixes)
