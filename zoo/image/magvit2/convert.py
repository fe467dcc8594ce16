"""The authors' checkpoint layout -> this port's names.

Open-MAGVIT2's released files (``imagenet_256_L.ckpt``, ``imagenet_128_L.ckpt``) are Lightning checkpoints of
``src/Open_MAGVIT2/models/lfqgan.py:VQModel``: the tensors sit under ``state_dict`` (un-nested by
``zoo.pretrained.read_weights_only``), as

* ``encoder.*`` / ``decoder.*``: the training weights, in the module names this port keeps;
* ``model_ema.<name without dots>``: ``LitEma``'s shadow copy of every trainable parameter (its buffers cannot
  hold dots, so ``encoder.conv_in.weight`` is stored as ``model_ema.encoderconv_inweight``), plus
  ``model_ema.decay`` and ``model_ema.num_updates``;
* ``loss.*``: the discriminator and LPIPS network of training, not part of the tokenizer.

Both released configs train with ``use_ema: True`` and the authors' reconstruction and evaluation scripts run
inside ``ema_scope()``, which copies the EMA weights over the training ones: so the EMA copy is what is
converted whenever the file has one (for every encoder and decoder tensor; a partial copy is refused). The
LFQ quantiser has no saved tensors (its masks and codebook are non-persistent buffers).
"""

from __future__ import annotations

import torch

from zoo.errors import ZooError

PARTS = ("encoder.", "decoder.")
EMA_PREFIX = "model_ema."


def ema_name(name: str) -> str:
    """``encoder.down.0.block.1.conv1.weight`` -> ``model_ema.encoderdown0block1conv1weight`` (LitEma's naming)."""
    return EMA_PREFIX + name.replace(".", "")


def from_authors(state: dict[str, torch.Tensor], use_ema: bool = True) -> dict[str, torch.Tensor]:
    """An Open-MAGVIT2 state dict -> the port's (``model.encoder.*``, ``model.decoder.*``); a state already in
    the port's names passes through. ``use_ema=False`` keeps the training weights even where an EMA copy exists."""
    ours = {name: tensor for name, tensor in state.items() if name.startswith(tuple("model." + p for p in PARTS))}
    if ours:
        return ours
    trained = {name: tensor for name, tensor in state.items() if name.startswith(PARTS)}
    if not trained:
        raise ZooError(f"no Open-MAGVIT2 encoder./decoder. tensors found (the file's first keys: {sorted(state)[:6]})")
    shadows = {name: ema_name(name) for name in trained}
    present = [name for name, shadow in shadows.items() if shadow in state]
    if use_ema and present:
        missing = sorted(set(trained) - set(present))
        if missing:
            raise ZooError(f"the file's EMA copy (model_ema.*) lacks {len(missing)} of the {len(trained)} "
                           f"encoder/decoder tensors, e.g. {missing[:3]}; pass use_ema=False for the training weights")
        trained = {name: state[shadows[name]] for name in trained}
    return {"model." + name: tensor for name, tensor in trained.items()}
