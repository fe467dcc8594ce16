"""SentinelLMs' model side: apply a passkey to a model's embedding matrix, so it runs on encrypted ids.

Mishra, Li and Deo, AAAI 2024 (https://arxiv.org/abs/2312.17342; ``llm_converter.py`` of
``abhijitmishra/sentinellm-aaai2024``). The input embeddings get the paper's "glide" (``glide``: repeated
``T`` times, reflect every row across the hyperplane normal to ``l = a * 1``, then add ``t = b * 1``) and then their
rows move to the encrypted ids; an LM's output head only needs its rows moved (``encrypt_gpt``,
``encrypt_transformers``). The key comes from a ``zoo.text.sentinel.SentinelTokenizer``.

What holds, exactly, and why (measured in ``docs/sentinel.md``):

- ``l`` and ``t`` both lie along the all-ones vector, so with ``R = I - 2 u u^T`` (``u = 1 / sqrt(D)``) one step is
  ``v -> R v + b 1``, and since ``R 1 = -1`` two steps give ``v + (b2 - b1) 1``: ``T`` steps are a shift along 1
  (``T`` even) or one reflection of each row's mean plus a shift (``T`` odd). Every row keeps its mean-centred part
  ``v - mean(v) 1`` unchanged, so pairwise distances are preserved and the centred rows *are* the original rows.
- A LayerNorm subtracts the mean over features, so ``LayerNorm(v + c 1) = LayerNorm(v)``: in pre-norm GPTs (zoo's GPT,
  GPT-2) the shift rides the residual stream and every norm removes it; in BERT / RoBERTa the embedding LayerNorm
  removes it at once. Outputs on encrypted ids equal the original's on plain ids up to float error, with no
  first-layer change. RMSNorm (T5, Llama) does not centre, so there the glide changes outputs.
- A tied output head must not get the glide: its logits would move by ``c_j * sum(LayerNorm(h))`` per token ``j``,
  zero only while the norm's gain is constant and its bias zero. ``untie=True`` (the default) gives the head the
  permuted original rows.
- Consequence: whoever has the original embedding matrix (a public base model) recovers the permutation by
  matching centred rows (``recovery_rate``); the glide adds no secrecy against that reader.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.generators.gpt import GPT
from zoo.text.sentinel import SentinelTokenizer


def glide(weight: torch.Tensor, steps) -> torch.Tensor:
    """The paper's embedding transform: per ``(a, b)`` step, reflect across the hyperplane normal to ``a * 1``, then
    add ``b * 1``. weight [V, D] -> [V, D], computed in float64 and returned in the input's dtype."""
    out = weight.detach().to(torch.float64)
    ones = torch.ones(out.shape[1], dtype=torch.float64, device=out.device)
    for a, b in steps:
        line = ones * a
        out = out - 2 * (out @ line / (line @ line))[:, None] * line  # Householder: v - 2 (v.l)/(l.l) l
        out = out + ones * b
    return out.to(weight.dtype)


def permute_rows(table: torch.Tensor, permutation) -> torch.Tensor:
    """Move row ``i`` to row ``permutation[i]`` (rows past the permutation stay): table [V, ...] -> [V, ...]."""
    permutation = torch.as_tensor(list(permutation), dtype=torch.long, device=table.device)
    if table.shape[0] < permutation.numel():
        raise ZooError(f"sentinel: the table has {table.shape[0]} rows, fewer than the key's vocabulary of "
                       f"{permutation.numel()} ids; expected a table with a row per token")
    out = table.detach().clone()
    out[permutation] = table.detach()[: permutation.numel()]
    return out


def encrypt_embeddings(weight: torch.Tensor, tokenizer: SentinelTokenizer, transform: bool = True) -> torch.Tensor:
    """Input embeddings for encrypted ids: the glide (when ``transform``) and then the key's row permutation."""
    _check_tokenizer(tokenizer)
    moved = glide(weight, tokenizer.sentinel_key.glide) if transform else weight.detach()
    return permute_rows(moved, tokenizer.permutation)


def encrypt_gpt(model: GPT, tokenizer: SentinelTokenizer, transform: bool = True, untie: bool = True) -> GPT:
    """A copy of a zoo GPT that reads and predicts encrypted ids: ``logits_new[..., perm[j]]`` on encrypted input
    equals ``logits[..., j]`` on plain input.

    ``untie``: a tied head gets its own weights (the permuted original rows; the copy has ``tie_embeddings=False``).
    With ``untie=False`` a tied head shares the glided rows, which changes logits once LayerNorm is trained."""
    if not isinstance(model, GPT):
        raise ZooError(f"encrypt_gpt: expected a zoo GPT, got {type(model).__name__}")
    _check_tokenizer(tokenizer)
    if model.vocab_size < tokenizer.vocab_size:
        raise ZooError(f"encrypt_gpt: the model reads {model.vocab_size} ids, fewer than the tokenizer's "
                       f"{tokenizer.vocab_size}; expected a model trained on that tokenizer's ids")
    tied = model.head.weight is model.token_embedding.weight
    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    original = state["token_embedding.weight"]
    state["token_embedding.weight"] = encrypt_embeddings(original, tokenizer, transform)
    if tied and not untie:
        state["head.weight"] = state["token_embedding.weight"]
    else:
        state["head.weight"] = permute_rows(state["head.weight"], tokenizer.permutation)
    config = {**model.config, "tie_embeddings": tied and not untie}
    out = GPT(**config).to(device=original.device, dtype=original.dtype)
    out.load_state_dict(state, strict=True)
    return out.train(model.training)


def encrypt_transformers(model: nn.Module, tokenizer: SentinelTokenizer, transform: bool = True) -> nn.Module:
    """A copy of a transformers model for encrypted ids: glided and permuted input embeddings; an output head (LM or
    MLM) gets its rows and bias permuted, untied from the input (``config.tie_word_embeddings = False``)."""
    if not (hasattr(model, "get_input_embeddings") and hasattr(model, "get_output_embeddings")):
        raise ZooError(f"encrypt_transformers: expected a transformers PreTrainedModel, got {type(model).__name__}")
    _check_tokenizer(tokenizer)
    model = copy.deepcopy(model)
    inputs, head = model.get_input_embeddings(), model.get_output_embeddings()
    plain = inputs.weight.detach().clone()
    tied = head is not None and head.weight is inputs.weight
    with torch.no_grad():
        if head is not None:
            rows = permute_rows(head.weight, tokenizer.permutation)
            if tied:  # a new parameter: the head keeps the plain geometry, the input gets the glide
                head.weight = nn.Parameter(rows, requires_grad=head.weight.requires_grad)
                model.config.tie_word_embeddings = False
                if hasattr(model.config, "get_text_config"):
                    model.config.get_text_config().tie_word_embeddings = False
            else:
                head.weight.copy_(rows)
            if getattr(head, "bias", None) is not None:  # in place: BERT's MLM ties decoder.bias to predictions.bias
                head.bias.copy_(permute_rows(head.bias, tokenizer.permutation))
        inputs.weight.copy_(encrypt_embeddings(plain, tokenizer, transform))
    return model


def centred(weight: torch.Tensor) -> torch.Tensor:
    """Rows minus their mean over features: the part of every row the glide leaves unchanged. [V, D] -> [V, D]."""
    weight = weight.detach().to(torch.float64)
    return weight - weight.mean(dim=1, keepdim=True)


def geometry_report(plain: torch.Tensor, encrypted: torch.Tensor, tokenizer: SentinelTokenizer,
                    sample: int = 2048) -> dict[str, float]:
    """How far ``encrypted`` (rows at encrypted ids) is from ``plain``, the row permutation undone.

    ``max_row_change``: largest |entry| change per row, relative to the largest |entry| of ``plain``;
    ``max_distance_change``: largest change of a pairwise distance (first ``sample`` rows), relative to the largest
    distance; ``max_centred_change``: the same as the first after mean-centring each row; ``recovery_rate``: the share
    of encrypted rows whose nearest centred plain row is their own token (an attacker who has the plain matrix)."""
    back = encrypted.detach().to(torch.float64)[list(tokenizer.permutation)]  # row i: token i's encrypted row
    plain = plain.detach().to(torch.float64)[: back.shape[0]]
    scale = plain.abs().max().clamp_min(1e-30)
    rows = slice(0, min(sample, plain.shape[0]))
    distances = torch.cdist(plain[rows], plain[rows])
    moved = torch.cdist(back[rows], back[rows])
    return {
        "max_row_change": float((back - plain).abs().max() / scale),
        "max_distance_change": float((moved - distances).abs().max() / distances.max().clamp_min(1e-30)),
        "max_centred_change": float((centred(back) - centred(plain)).abs().max() / scale),
        "recovery_rate": recovery_rate(plain, encrypted, tokenizer),
    }


def recovery_rate(plain: torch.Tensor, encrypted: torch.Tensor, tokenizer: SentinelTokenizer,
                  chunk: int = 4096) -> float:
    """Share of tokens an attacker with the plain matrix identifies: each encrypted row's nearest plain row after
    mean-centring both, compared with the key's permutation."""
    guess_plain, truth = centred(plain), torch.as_tensor(tokenizer.sentinel_key.inverse)
    rows = centred(encrypted)[: truth.numel()]
    hits = 0
    for start in range(0, rows.shape[0], chunk):
        nearest = torch.cdist(rows[start : start + chunk], guess_plain).argmin(dim=1)
        hits += int((nearest == truth[start : start + chunk]).sum())
    return hits / max(1, truth.numel())


def _check_tokenizer(tokenizer) -> None:
    if not isinstance(tokenizer, SentinelTokenizer):
        raise ZooError(f"sentinel: expected a SentinelTokenizer (it holds the key), got {type(tokenizer).__name__}")
