"""DAC, the Descript Audio Codec (Kumar et al., https://arxiv.org/abs/2306.06546), through transformers' ``DacModel``.

    audio [b, T] -> encoder (Snake conv blocks) -> latent [b, D, T / hop]
        -> residual VQ with factorised, l2-normalised 8-d codes (section 3.2), first n_q levels -> ids [b, N, n_q]
    ids -> sum of the levels' projected codes -> decoder -> audio [b, N * hop]

DAC was trained with quantiser dropout (p = 0.5), so any ``n_q`` in 1 .. 12 (44 kHz; 32 at 24 kHz, 12 at
16 kHz) decodes. The official preprocessing pads the clip at the end to whole hops; so does this wrapper.

Weights: the hub's ``descript/dac_*`` files hold transformers' layout; descript's own ``weights.pth`` (the
``descript-audio-codec`` package's layout: ``nn.Sequential`` indices, ``torch.nn.utils.weight_norm``'s ``weight_g`` /
``weight_v``) is mapped by ``convert``: names by position (``descript_name``) and each weight-norm pair folded into
the plain weight transformers' ``DacModel`` holds, with the very op descript's forward hook runs
(``torch._weight_norm(v, g, 0)``), so the two networks compute with the same weights. ``zoo convert weights.pth --to
DIR dac-44khz`` writes a zoo folder from it once; tests/audio/test_dac_reference.py checks ids equal and audio
allclose against descript's package on recorded outputs.
"""

from __future__ import annotations

import torch

from zoo.audio.published.base import TransformersCodec
from zoo.errors import ZooError

# descript's Sequential positions -> transformers' layer names: a ResidualUnit is (Snake1d, WNConv1d k=7, Snake1d,
# WNConv1d k=1); an EncoderBlock is three residual units, a Snake1d and the strided conv; a DecoderBlock is a Snake1d,
# the transposed conv and three residual units.
RESIDUAL_LAYERS = ("snake1", "conv1", "snake2", "conv2")
BLOCK_LAYERS = {"encoder": ("block", ("res_unit1", "res_unit2", "res_unit3", "snake1", "conv1")),
                "decoder": ("model", ("snake1", "conv_t1", "res_unit1", "res_unit2", "res_unit3"))}


def descript_name(name: str, encoder_blocks: int, decoder_blocks: int) -> str:
    """One tensor name of descript's DAC -> transformers' ``DacModel`` (weight-norm suffixes kept).

        encoder.block.0 conv1 | .1 .. E  encoder.block.{i-1}.* | .E+1 snake1 | .E+2 conv2
        decoder.model.0 conv1 | .1 .. D  decoder.block.{i-1}.* | .D+1 snake1 | .D+2 conv2     quantizer.*: unchanged
    """
    parts = name.split(".")
    if parts[0] == "quantizer":
        return name
    if parts[0] not in BLOCK_LAYERS or len(parts) < 4 or parts[1] != BLOCK_LAYERS[parts[0]][0] \
            or not parts[2].isdigit():
        raise ZooError(f"DAC weights: {name!r} is not a tensor name of descript's DAC layout")
    section, index, rest = parts[0], int(parts[2]), parts[3:]
    blocks = encoder_blocks if section == "encoder" else decoder_blocks
    ends = {0: "conv1", blocks + 1: "snake1", blocks + 2: "conv2"}
    if index in ends:
        return ".".join([section, ends[index], *rest])
    try:
        if not 1 <= index <= blocks or rest[0] != "block":
            raise IndexError(index)
        layer, inner = BLOCK_LAYERS[section][1][int(rest[1])], rest[2:]
        if layer.startswith("res_unit"):  # inner: block.k.<tensor> of the unit's Sequential
            if inner[0] != "block":
                raise IndexError(inner[0])
            inner = [RESIDUAL_LAYERS[int(inner[1])], *inner[2:]]
    except (IndexError, ValueError):
        raise ZooError(f"DAC weights: {name!r} does not fit a model of {blocks} {section} blocks (descript's "
                       "layout, as the entry's downsampling / upsampling ratios give it)") from None
    return ".".join([section, "block", str(index - 1), layer, *inner])


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every ``P.weight_g`` / ``P.weight_v`` pair -> ``P.weight`` as ``torch.nn.utils.weight_norm`` computes it."""
    out = {}
    for name, tensor in state.items():
        if name.endswith(".weight_g"):
            continue
        if name.endswith(".weight_v"):
            stem = name[: -len(".weight_v")]
            if stem + ".weight_g" not in state:
                raise ZooError(f"DAC weights: {name!r} has no {stem + '.weight_g'!r} beside it")
            out[stem + ".weight"] = torch._weight_norm(tensor, state[stem + ".weight_g"], 0)
        else:
            out[name] = tensor
    orphans = sorted(n for n in state if n.endswith(".weight_g") and n[: -len("_g")] + "_v" not in state)
    if orphans:
        raise ZooError(f"DAC weights: {orphans[:3]} have no weight_v beside them")
    return out


class DacTokenizer(TransformersCodec):
    """DAC 16 / 24 / 44 kHz behind the audio contract."""

    hf_config = "transformers.models.dac.configuration_dac:DacConfig"
    hf_model = "transformers.models.dac.modeling_dac:DacModel"

    @property
    def hop(self) -> int:
        return int(self.model.config.hop_length)

    @property
    def num_levels(self) -> int:
        return int(self.model.config.n_codebooks)

    @property
    def codebook(self) -> torch.Tensor:
        """``[q, K, d]``: every level's (factorised, low-dimensional) codes."""
        return torch.stack([q.codebook.weight for q in self.model.quantizer.quantizers])

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, N, n]`` -> the latent the decoder reads ``[B, N, D]``."""
        ids = self.checked_ids(ids).clamp(min=0).to(self.device)
        return self.model.quantizer.from_codes(ids.transpose(1, 2))[0].transpose(1, 2)

    def convert(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """transformers' layout (the hub's files) by ``rename``; descript's (``decoder.model.*``) mapped and folded."""
        if not any(name.startswith("decoder.model.") for name in state):
            return super().convert(state)
        config = self.model.config
        renamed = {descript_name(name, len(config.downsampling_ratios), len(config.upsampling_ratios)): tensor
                   for name, tensor in state.items()}
        return {"model." + name: tensor for name, tensor in fold_weight_norm(renamed).items()}

    def encode_clip(self, audio, levels):
        codes = self.model.encode(audio[:, None], n_quantizers=levels).audio_codes  # [b, q_all, n]
        return codes[:, :levels].transpose(1, 2)

    def decode_clip(self, ids):
        return self.model.decode(audio_codes=ids.transpose(1, 2)).audio_values
