"""Training a ZeTT hypernetwork for a frozen zoo GPT over sampled tokenizers (https://arxiv.org/abs/2405.07883 §3.3).

Each step draws a Unigram tokenizer (``zett_sampling.TokenizerSampler``), tokenizes a batch of text with it, spells
the vocabulary with the base tokenizer, predicts its embedding rows with the hypernetwork, and runs the *frozen*
base GPT with those rows as its input embeddings and output head. The loss is the GPT's next-token cross-entropy
plus the paper's auxiliary *lexical* loss (``lexical_weight``, 0.5 in the paper): for tokens whose spelling is one
base token, the squared distance of the predicted row to that token's base row, divided by the base rows' mean
norm. As in the paper, the softmax runs over a subsample of the vocabulary when it is large (every token of the
batch plus random others, ``max_tokens``), and optional *identity* steps first teach the network to give base
tokens their own rows (needed by ``residual=False``; a residual network starts there).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from zoo.analysis.vocab import Vocabulary
from zoo.errors import ZooError
from zoo.transfer.zett import PAD, ZettHypernet, surface_forms


@dataclass
class ZettTraining:
    steps: int = 600
    batch: int = 16
    context: int = 64
    lr: float = 1e-3
    warmup: int = 30
    lexical_weight: float = 0.5
    identity_steps: int = 0
    max_tokens: int = 2048
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 50


def gpt_tables(gpt) -> tuple[torch.Tensor, list[str]]:
    """The rows a hypernetwork predicts for a zoo GPT, [V, D] (tied) or [V, 2D] (input | output), and their names."""
    tied = gpt.head.weight is gpt.token_embedding.weight
    if tied:
        return gpt.token_embedding.weight.detach(), ["token_embedding.weight"]
    rows = torch.cat([gpt.token_embedding.weight.detach(), gpt.head.weight.detach()], dim=1)
    return rows, ["token_embedding.weight", "head.weight"]


def lm_logits(gpt, ids: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The GPT's forward pass with ``rows`` [V', D] (tied) or [V', 2D] (input | output) as its token table(s):
    ids [B, T] in [0, V') -> [B, T, V'] (``GPT.forward_with_tables``)."""
    dim = gpt.token_embedding.weight.shape[1]
    if rows.shape[1] == dim:
        return gpt.forward_with_tables(ids, rows)
    return gpt.forward_with_tables(ids, rows[:, :dim], rows[:, dim:])


@torch.no_grad()
def stream_nll(gpt, ids: torch.Tensor, rows: torch.Tensor, context: int, chunk: int = 64) -> tuple[float, int]:
    """Total next-token NLL (nats) of a token stream cut into ``context`` windows, and the tokens scored."""
    usable = ids[: len(ids) // context * context].view(-1, context)
    if not len(usable):
        raise ZooError(f"the held-out stream has {len(ids)} tokens, fewer than one window of {context}")
    total = 0.0
    for part in usable.split(chunk):
        logits = lm_logits(gpt, part, rows)
        total += F.cross_entropy(logits.flatten(0, 1).float(), part.flatten(), reduction="sum").item()
    return total, usable.numel()


def _windows(tokenizer, texts: list[str], batch: int, context: int, rng: np.random.Generator) -> torch.Tensor:
    """``batch`` windows of ``context`` tokens from random texts joined in a random order, encoded by ``tokenizer``."""
    ids: list[int] = []
    while len(ids) < batch * context + 1:
        picked = rng.integers(len(texts), size=4 * batch)
        ids += tokenizer.encode("".join(texts[i] for i in picked), add_special_tokens=False).ids
    starts = rng.integers(0, len(ids) - context, size=batch)
    return torch.tensor([ids[s : s + context] for s in starts.tolist()], dtype=torch.long)


def lexical_loss(rows: torch.Tensor, forms: torch.Tensor, base: torch.Tensor, base_norm: float) -> torch.Tensor:
    """Mean squared distance (summed over dimensions) of the rows of single-piece tokens to their base rows,
    over the base rows' mean norm; 0 when no token in ``forms`` is a single base token."""
    single = forms[:, 1] == PAD if forms.shape[1] > 1 else torch.ones(len(forms), dtype=torch.bool)
    if not single.any():
        return rows.sum() * 0.0
    return (rows[single] - base[forms[single, 0]]).square().sum(-1).mean() / base_norm


def softmax_subset(present: torch.Tensor, has_form: torch.Tensor, max_tokens: int, rng: np.random.Generator):
    """The vocabulary ids a step's softmax runs over: all of them when they fit in ``max_tokens``, else the batch's
    tokens (``present``) plus random others up to ``max_tokens`` (the paper's ``n_token_subsample``)."""
    candidates = torch.nonzero(has_form).flatten()
    if len(candidates) <= max_tokens:
        return candidates
    if len(present) >= max_tokens:
        return present
    others = np.setdiff1d(candidates.numpy(), present.numpy())
    extra = rng.choice(others, min(len(others), max_tokens - len(present)), replace=False)
    return torch.cat([present, torch.from_numpy(extra).long()]).sort().values


def train_hypernet(
    hypernet: ZettHypernet,
    gpt,
    base_vocab: Vocabulary,
    texts: list[str],
    sampler,
    config: ZettTraining,
    log=print,
) -> list[dict]:
    """Train ``hypernet`` (in place) against ``gpt``, which is put in eval mode and frozen; returns the records."""
    if config.context > gpt.context_length:
        raise ZooError(f"ZeTT training: context {config.context} exceeds the GPT's context_length {gpt.context_length}")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    gpt.eval().requires_grad_(False)
    base = gpt_tables(gpt)[0].float()
    hypernet.fit_scale(base)
    base_norm = float(base.norm(dim=1).mean())
    optimiser = torch.optim.AdamW(hypernet.parameters(), lr=config.lr, weight_decay=0.01, betas=(0.9, 0.95))
    total = config.identity_steps + config.steps
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda s: min(1.0, (s + 1) / config.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s / total, 1)))),
    )
    cache: dict[bytes, list[int]] = {}
    identity_forms = None
    if config.identity_steps:
        identity_forms, has = surface_forms(base_vocab, base_vocab, hypernet.max_pieces, cache)
        identity_ids = torch.nonzero(has).flatten()
    records, started, running = [], time.perf_counter(), {}
    hypernet.train()
    for step in range(total):
        record = {"step": step}
        if step < config.identity_steps:  # the paper's warm-up: base tokens, spelled by the base tokenizer
            count = min(config.max_tokens, len(identity_ids))
            ids = identity_ids[torch.from_numpy(rng.choice(len(identity_ids), count, replace=False))]
            rows = hypernet(identity_forms[ids], base)
            loss = (rows - base[ids]).square().sum(-1).mean() / base_norm
            record.update(phase="identity", identity=float(loss.detach()))
        else:
            tokenizer = sampler.sample(rng)
            vocab = Vocabulary.from_hf(tokenizer, "sampled")
            forms, has_form = surface_forms(base_vocab, vocab, hypernet.max_pieces, cache)
            batch = _windows(tokenizer, texts, config.batch, config.context, rng)
            subset = softmax_subset(torch.unique(batch), has_form, config.max_tokens, rng)
            index = torch.full((vocab.size,), -1, dtype=torch.long)
            index[subset] = torch.arange(len(subset))
            rows = hypernet(forms[subset], base)
            logits = lm_logits(gpt, index[batch], rows)
            cross_entropy = F.cross_entropy(logits.flatten(0, 1), index[batch].flatten())
            lexical = lexical_loss(rows, forms[subset], base, base_norm)
            loss = cross_entropy + config.lexical_weight * lexical
            record.update(phase="lm", ce=float(cross_entropy.detach()), lexical=float(lexical.detach()),
                          vocab=vocab.size, softmax=len(subset))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hypernet.parameters(), config.grad_clip)
        optimiser.step()
        schedule.step()
        record["loss"] = float(loss.detach())
        for key in ("loss", "ce", "lexical", "identity"):
            if key in record:
                running[key] = record[key] if key not in running else 0.9 * running[key] + 0.1 * record[key]
        if step % config.log_every == 0 or step == total - 1:
            record["seconds"] = round(time.perf_counter() - started, 1)
            record["smoothed"] = {k: round(v, 4) for k, v in running.items()}
            log(record)
        records.append(record)
    hypernet.eval()
    return records


def training_summary(config: ZettTraining, records: list[dict], seconds: float) -> dict:
    """What the hypernetwork folder's metadata records about its training run."""
    lm = [r for r in records if r.get("phase") == "lm"]
    tail = lm[-max(1, len(lm) // 10):] if lm else []
    return {
        "training": asdict(config),
        "seconds": round(seconds, 1),
        "final_ce": round(sum(r["ce"] for r in tail) / len(tail), 4) if tail else None,
        "final_lexical": round(sum(r["lexical"] for r in tail) / len(tail), 4) if tail else None,
    }
