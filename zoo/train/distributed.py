"""Keeping processes in step without DistributedDataParallel: averaged gradients, shared buffers, a check.

Every process starts from the same seeded weights and applies the same averaged update, so the
weights stay identical; ``weight_stats`` lets the trainer verify that at the end of a run.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast
from torch import nn


def _split_like(flat: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Views of a flat buffer shaped like ``tensors`` (the inverse of concatenating them)."""
    pieces = flat.split([t.numel() for t in tensors])
    return [piece.view_as(t) for piece, t in zip(pieces, tensors)]


def average_gradients(accelerator: Accelerator, params: list[nn.Parameter]) -> None:
    """Replace each gradient by its mean over processes, in one all-reduce of a flat buffer.

    A parameter without a gradient on one process counts as zero there; one without a gradient on
    every process keeps ``grad=None`` (so the optimiser leaves it alone, as it would in one process).
    """
    if accelerator.num_processes == 1 or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=grads[0].dtype, device=grads[0].device)
    flat = accelerator.reduce(torch.cat([g.reshape(-1) for g in grads] + [has_grad]), reduction="sum")
    *summed, counts = _split_like(flat, [*grads, has_grad])
    for p, total, count in zip(params, summed, counts.tolist()):
        if count > 0:
            p.grad = total / accelerator.num_processes


def broadcast_from_main(accelerator: Accelerator, tensors: list[torch.Tensor]) -> None:
    """Overwrite ``tensors`` in place with the main process's values (one broadcast per dtype)."""
    if accelerator.num_processes == 1:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for tensor in tensors:
        if tensor.dtype != torch.bool:  # gloo cannot broadcast bools
            by_dtype.setdefault(tensor.dtype, []).append(tensor)
    with torch.no_grad():
        for group in by_dtype.values():
            flat = broadcast(torch.cat([t.detach().reshape(-1) for t in group]), from_process=0)
            for tensor, value in zip(group, _split_like(flat, group)):
                tensor.copy_(value)


def sync_buffers(accelerator: Accelerator, model: nn.Module) -> None:
    """Copy the main process's buffers (running statistics, EMA codebooks) to the others, as DDP does."""
    broadcast_from_main(accelerator, list(model.buffers()))


def weight_stats(accelerator: Accelerator, model: nn.Module) -> list[list[float]]:
    """Per-process [sum, sum of squares, position-weighted sum] of the weights, gathered (equal when in sync)."""
    flat = torch.cat([t.detach().double().reshape(-1) for t in model.state_dict().values() if t.is_floating_point()])
    positions = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device) / flat.numel()
    local = torch.stack([flat.sum(), (flat * flat).sum(), (flat * positions).sum()])
    return accelerator.gather(local.unsqueeze(0)).tolist()
