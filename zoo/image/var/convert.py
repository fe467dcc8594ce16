"""The authors' VQVAE state dict (``vae_ch160v4096z32.pth``) -> ``VARTokenizer``'s names.

The file is ``torch.save(vae.state_dict())`` of VAR's ``VQVAE``: its encoder, decoder, ``quant_conv`` and
``post_quant_conv`` carry the names the port keeps (``network.py``), so only the quantiser's residual convs move:

    quantize.quant_resi.qresi_ls.{k}.*   (PhiPartiallyShared, share_quant_resi >= 2)  -> quantize.phi.{k}.*
    quantize.quant_resi.qresi.*          (PhiShared, share_quant_resi = 1)            -> quantize.phi.0.*
    quantize.quant_resi.{k}.*            (PhiNonShared, share_quant_resi = 0)         -> quantize.phi.{k}.*
    quantize.ema_vocab_hit_SV            (codebook-usage statistics of training)      -> dropped

and everything goes under ``model.``. Reading the pickle is ``zoo.image.published.convert``'s job
(``torch.load(weights_only=True)`` only): ``zoo convert SRC var-vqvae --to DIR`` writes a folder, and a pinned
download in ``$ZOO_CACHE`` is converted once into ``FILE.zoo.safetensors`` on its first ``zoo.load``.
"""

from __future__ import annotations

import re

import torch

from zoo.image.published.base import vq_tensors

# Tensors of training only (the quantiser's per-scale EMA of code hits), not read by encode or decode.
TRAINING_ONLY = ("quantize.ema_vocab_hit_SV",)

_PHI_RENAMES = (
    (re.compile(r"^quantize\.quant_resi\.qresi_ls\.(\d+)\."), r"quantize.phi.\1."),
    (re.compile(r"^quantize\.quant_resi\.qresi\."), "quantize.phi.0."),
    (re.compile(r"^quantize\.quant_resi\.(\d+)\."), r"quantize.phi.\1."),
)


def rename(name: str) -> str:
    """One tensor name of VAR's ``VQVAE`` -> the port's (identity outside the quantiser's phi convs)."""
    for pattern, replacement in _PHI_RENAMES:
        name, count = pattern.subn(replacement, name)
        if count:
            break
    return name


def convert_state(state: dict[str, torch.Tensor],
                  prefixes: tuple[str, ...] = ("model.", "")) -> dict[str, torch.Tensor]:
    """A VQVAE state dict under the first of ``prefixes`` that holds one -> ``{"model." + port name: tensor}``."""
    _, tensors = vq_tensors(state, prefixes)
    return {"model." + rename(name): tensor for name, tensor in tensors.items() if name not in TRAINING_ONLY}
