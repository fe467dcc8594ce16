"""An exponential moving average of a model's weights, used for export when the recipe asks for it.

EMA weights (Polyak averaging, https://doi.org/10.1137/0330046) are often better tokenizers than
the last iterate; the VQ-GAN and diffusion literature export them. Only floating-point parameters
are averaged; buffers (codebook statistics, norms' running stats) are taken from the live model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class EMA:
    """Shadow copies of the floating-point parameters, updated by ``update(model, step)``."""

    def __init__(self, model: nn.Module, decay: float, start_step: int = 0):
        self.decay, self.start_step = decay, start_step
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters() if p.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Blend in the weights after optimiser step ``step``; before ``start_step`` simply copy them."""
        copy = step < self.start_step or self.decay == 0.0
        for name, p in model.named_parameters():
            if name in self.shadow:
                if copy:  # exact, where lerp with weight 1 would round
                    self.shadow[name].copy_(p.detach())
                else:
                    self.shadow[name].lerp_(p.detach(), 1.0 - self.decay)

    @contextlib.contextmanager
    @torch.no_grad()
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily put the EMA weights into ``model`` (for export or evaluation)."""
        params = dict(model.named_parameters())
        saved = {name: params[name].detach().clone() for name in self.shadow}
        for name, value in self.shadow.items():
            params[name].copy_(value)
        try:
            yield model
        finally:
            for name, value in saved.items():
                params[name].copy_(value)

    # the trainer's checkpoints save these as ema.safetensors (zoo.train.checkpoint), never as a pickle
    def state_dict(self) -> dict:
        return {name: value.cpu() for name, value in self.shadow.items()}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != set(self.shadow):
            raise ValueError(f"EMA state holds {sorted(state)[:4]}..., the model has {sorted(self.shadow)[:4]}...")
        for name, value in state.items():
            self.shadow[name].copy_(value)
