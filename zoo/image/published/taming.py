"""taming-transformers' VQGAN tensor names -> diffusers' ``VQModel`` names, so the authors' ``.ckpt`` files load
into the maintained class (Esser et al., https://arxiv.org/abs/2012.09841).

diffusers' ``VQModel`` is the same network as taming's ``VQModel`` (``taming/modules/diffusionmodules/model.py``);
only the names differ, and two things beyond names:

- the decoder's levels: taming keeps ``decoder.up`` indexed by resolution level (``up.0`` is the full-resolution
  level, run last), diffusers keeps ``decoder.up_blocks`` in the order they run (``up_blocks.0`` is the lowest
  resolution), so level ``i`` of ``L`` becomes ``up_blocks.{L - 1 - i}``; the encoder's ``down`` levels run in
  index order in both;
- attention: taming's ``AttnBlock`` projects with 1x1 convolutions (``q``, ``k``, ``v``, ``proj_out``, weights
  ``[C, C, 1, 1]``), diffusers' ``Attention`` with linear layers (``to_q``, ``to_k``, ``to_v``, ``to_out.0``,
  weights ``[C, C]``): the same matrices, reshaped.

    taming                                    diffusers VQModel
    encoder.down.N.block.M.*                  encoder.down_blocks.N.resnets.M.*
    encoder.down.N.attn.M.{norm,q,k,v,proj_out}  encoder.down_blocks.N.attentions.M.{group_norm,to_q,to_k,to_v,to_out.0}
    encoder.down.N.downsample.conv.*          encoder.down_blocks.N.downsamplers.0.conv.*
    {encoder,decoder}.mid.block_1 / attn_1 / block_2   *.mid_block.resnets.0 / attentions.0 / resnets.1
    decoder.up.N.{block,attn}.M.*             decoder.up_blocks.(L-1-N).{resnets,attentions}.M.*
    decoder.up.N.upsample.conv.*              decoder.up_blocks.(L-1-N).upsamplers.0.conv.*
    *.nin_shortcut (1x1)                      *.conv_shortcut
    {encoder,decoder}.norm_out                *.conv_norm_out
    conv_in, conv_out, quant_conv, post_quant_conv, quantize.embedding.weight: unchanged
    loss.* (LPIPS and the discriminator)      dropped (training only)

The facts (block order, 1x1 convolutions as linear weights) are those diffusers' own conversion scripts use for
taming-layout VQ models (``scripts/convert_vq_diffusion_to_diffusers.py``); this map is written from the two
class definitions. A taming config in diffusers' arguments: ``vq_config_from_taming``.
"""

from __future__ import annotations

import re

import torch

from zoo.errors import ZooError

# Names only taming's layout has: one of them marks a state dict as taming's.
_TAMING_MARKERS = re.compile(r"^(encoder\.down\.\d+\.|decoder\.up\.\d+\.|"
                             r"(encoder|decoder)\.mid\.(block_[12]|attn_1)\.)")
_UP_LEVEL = re.compile(r"^decoder\.up\.(\d+)\.")
# Renames that keep the level index, applied in order to each name.
_RENAMES = (
    (re.compile(r"^encoder\.down\.(\d+)\.block\.(\d+)\."), r"encoder.down_blocks.\1.resnets.\2."),
    (re.compile(r"^encoder\.down\.(\d+)\.attn\.(\d+)\."), r"encoder.down_blocks.\1.attentions.\2."),
    (re.compile(r"^encoder\.down\.(\d+)\.downsample\."), r"encoder.down_blocks.\1.downsamplers.0."),
    (re.compile(r"^(encoder|decoder)\.mid\.block_1\."), r"\1.mid_block.resnets.0."),
    (re.compile(r"^(encoder|decoder)\.mid\.attn_1\."), r"\1.mid_block.attentions.0."),
    (re.compile(r"^(encoder|decoder)\.mid\.block_2\."), r"\1.mid_block.resnets.1."),
    (re.compile(r"^(encoder|decoder)\.norm_out\."), r"\1.conv_norm_out."),
    (re.compile(r"\.nin_shortcut\."), ".conv_shortcut."),
)
# Inside an attention block: taming's part -> diffusers'.
_ATTENTION_PARTS = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_ATTENTION = re.compile(r"^(.*\.attentions\.\d+)\.(norm|q|k|v|proj_out)\.(weight|bias)$")


def is_taming_layout(names) -> bool:
    """Whether tensor names (without any prefix) are taming's VQGAN layout rather than diffusers'."""
    return any(_TAMING_MARKERS.match(name) for name in names)


def taming_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A taming VQGAN state dict (prefix removed, ``loss.*`` already left out) -> diffusers ``VQModel``'s names."""
    up_levels = {int(m.group(1)) for name in state if (m := _UP_LEVEL.match(name))}
    if up_levels and up_levels != set(range(len(up_levels))):
        raise ZooError(f"taming layout: decoder.up levels {sorted(up_levels)} are not 0..{len(up_levels) - 1}")
    converted = {}
    for name, tensor in state.items():
        if m := _UP_LEVEL.match(name):  # taming indexes up levels by resolution, diffusers by run order
            name = f"decoder.up_blocks.{len(up_levels) - 1 - int(m.group(1))}.{name[m.end():]}"
            name = re.sub(r"^(decoder\.up_blocks\.\d+)\.block\.", r"\1.resnets.", name)
            name = re.sub(r"^(decoder\.up_blocks\.\d+)\.attn\.", r"\1.attentions.", name)
            name = re.sub(r"^(decoder\.up_blocks\.\d+)\.upsample\.", r"\1.upsamplers.0.", name)
        for pattern, replacement in _RENAMES:
            name = pattern.sub(replacement, name)
        if m := _ATTENTION.match(name):
            name = f"{m.group(1)}.{_ATTENTION_PARTS[m.group(2)]}.{m.group(3)}"
            if tensor.ndim == 4 and tensor.shape[2:] == (1, 1):  # a 1x1 convolution is a linear layer
                tensor = tensor[:, :, 0, 0]
        if name in converted:
            raise ZooError(f"taming layout: two tensors map to {name!r}")
        converted[name] = tensor
    return converted


def vq_config_from_taming(ddconfig: dict, n_embed: int, embed_dim: int) -> dict:
    """A taming ``VQModel``'s config (its ``ddconfig``, ``n_embed``, ``embed_dim``) as diffusers ``VQModel`` arguments.

    Attention sits at the levels whose resolution is in ``attn_resolutions`` (taming counts the encoder's
    resolution from ``resolution`` down, halving per level); those levels use diffusers' ``Attn*`` blocks. The
    mid blocks always attend. taming's GroupNorm has 32 groups and eps 1e-6, as diffusers' encoder and decoder."""
    if ddconfig.get("double_z", False):
        raise ZooError("taming ddconfig: double_z is a KL autoencoder's setting; a VQGAN has double_z: false")
    ch, ch_mult = int(ddconfig["ch"]), [int(m) for m in ddconfig["ch_mult"]]
    resolutions = [int(ddconfig["resolution"]) // 2 ** level for level in range(len(ch_mult))]
    attends = [r in set(ddconfig.get("attn_resolutions", ())) for r in resolutions]
    return {
        "in_channels": int(ddconfig["in_channels"]), "out_channels": int(ddconfig["out_ch"]), "act_fn": "silu",
        "block_out_channels": [ch * m for m in ch_mult],
        "down_block_types": ["AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in attends],
        # diffusers runs the decoder from the lowest resolution up
        "up_block_types": ["AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in reversed(attends)],
        "latent_channels": int(ddconfig["z_channels"]), "vq_embed_dim": int(embed_dim),
        "layers_per_block": int(ddconfig["num_res_blocks"]), "norm_num_groups": 32,
        "num_vq_embeddings": int(n_embed), "sample_size": int(ddconfig["resolution"]),
        "mid_block_add_attention": True, "lookup_from_codebook": False,
    }
