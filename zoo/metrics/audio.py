"""How well discrete audio tokens line up with labels: purity, cluster purity and PNMI (HuBERT / fairseq).

From the joint distribution ``p(y, z)`` of labels ``y`` and tokens ``z`` over every valid token
(each token of a clip carries the clip's label; fairseq's ``examples/hubert/measure_teacher_quality.py``
pairs frame-level labels the same way):

- ``label_purity`` = sum_z max_y p(y, z): the accuracy of predicting a token's label from the token alone
  (fairseq's "ref pur", HuBERT's phone purity).
- ``cluster_purity`` = sum_y max_z p(y, z): the share of each label taken by its most common token
  (fairseq's "hyp pur").
- ``pnmi`` = I(y; z) / H(y): the fraction of label uncertainty the tokens remove (fairseq's "MI/H(ref)").

State is the joint count matrix (float64, summable across processes). Codebook usage, perplexity
and real-time factor come from the harness's ``codebook`` and ``throughput`` metrics.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from zoo.errors import ZooError
from zoo.metrics.base import EvalContext, Metric
from zoo.metrics.probe import batch_labels, check_label_range


def valid_token_labels(ctx: EvalContext, label_key: str, level: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Every valid token id of the batch ``[M]`` with its clip's label ``[M]``."""
    labels = batch_labels(ctx.batch, label_key, "token purity", "the suite's data")
    encoded = ctx.encoded
    ids = encoded.ids.cpu()
    if ids.ndim == 3:
        ids = ids[..., level]
    valid = torch.arange(ids.shape[1]).unsqueeze(0) < encoded.lengths.cpu().unsqueeze(1)  # [B, N]
    token_labels = labels.unsqueeze(1).expand_as(ids)
    return ids[valid], token_labels[valid]


def purity_scores(joint: torch.Tensor) -> dict[str, float]:
    """Label purity, cluster purity, PNMI and the entropies (nats) of a joint count matrix ``[labels, tokens]``."""
    total = joint.sum()
    if total <= 0:
        raise ZooError("token purity: no labelled tokens were seen")
    p = joint.double() / total
    p_label, p_token = p.sum(1, keepdim=True), p.sum(0, keepdim=True)  # [Y, 1], [1, Z]
    seen = p > 0
    mutual_information = (p[seen] * (p[seen] / (p_label @ p_token)[seen]).log()).sum()
    label_entropy = -(p_label[p_label > 0] * p_label[p_label > 0].log()).sum()
    token_entropy = -(p_token[p_token > 0] * p_token[p_token > 0].log()).sum()
    return {
        "label_purity": float(p.max(dim=0).values.sum()),
        "cluster_purity": float(p.max(dim=1).values.sum()),
        "pnmi": float(mutual_information / label_entropy) if label_entropy > 0 else 0.0,
        "mutual_information": float(mutual_information),
        "label_entropy": float(label_entropy),
        "token_entropy": float(token_entropy),
    }


class TokenPurity(Metric):
    """Purity, cluster purity and PNMI of a tokenizer's ids against clip labels.

    Args:
        label_key: which batch entry holds the labels (``label``, or e.g. ``program`` on gm-notes).
        num_labels: an upper bound on label values (the state is ``[num_labels, vocab_size]``).
        level: the codebook level to score for ``[B, N, q]`` ids.
    """

    name: ClassVar[str] = "token-purity"
    higher_is_better: ClassVar[bool | None] = True
    directions: ClassVar[dict[str, bool | None]] = {
        "label_purity": True,
        "cluster_purity": True,
        "pnmi": True,
        "mutual_information": True,
        "label_entropy": None,
        "token_entropy": None,
    }
    modalities: ClassVar[tuple[str, ...]] = ("audio",)

    def __init__(self, label_key: str = "label", num_labels: int = 256, level: int = 0) -> None:
        super().__init__()
        self.label_key, self.num_labels, self.level = label_key, int(num_labels), int(level)
        self.vocab_size: int | None = None

    def setup(self, tokenizer, data_key: str | None = None) -> None:
        self.vocab_size = int(tokenizer.vocab_size)
        self.add_state("joint", torch.zeros(self.num_labels, self.vocab_size, dtype=torch.float64))

    def update(self, ctx: EvalContext) -> None:
        if self.vocab_size is None:
            self.setup(ctx.tokenizer)
        ids, labels = valid_token_labels(ctx, self.label_key, self.level)
        check_label_range(labels, self.num_labels, "token purity")
        flat = labels * self.vocab_size + ids
        self.joint += torch.bincount(flat, minlength=self.joint.numel()).view_as(self.joint).double()

    def compute(self) -> dict[str, float]:
        if self.vocab_size is None:
            raise ZooError(f"{self.name}: no batch was seen")
        return purity_scores(self.joint)
