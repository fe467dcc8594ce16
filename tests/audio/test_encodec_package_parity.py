"""``encodec-24khz`` (transformers' EncodecModel behind zoo's contract) against Meta's own ``encodec`` package, the
reference implementation, on a tiny random config: the package's network is built with the same hyperparameters,
seeded, its weights mapped into zoo's names (``package_to_zoo``) and loaded strictly; ids must be equal and audio
allclose at every bandwidth.

The package's published checkpoints are pickles named with a sha256 prefix (``encodec_24khz-d7cc33bc.th``,
checked by ``torch.hub``); the registry pins the hub's safetensors conversion, a different file, so the two hashes
are not comparable (docs/audio-published.md, Pins)."""

from __future__ import annotations

import re

import pytest
import torch

from zoo.audio.published.base import WEIGHT_NORM_RENAMES
from zoo.audio.published.encodec import EncodecTokenizer

encodec = pytest.importorskip("encodec", reason="the encodec package (pip install encodec==0.1.1)")
from encodec import modules as seanet  # noqa: E402
from encodec import quantization  # noqa: E402

RATE = 800
ENCODEC = dict(sampling_rate=RATE, hidden_size=16, num_filters=4, codebook_size=16, codebook_dim=16, num_lstm_layers=1,
               upsampling_ratios=[4, 2], target_bandwidths=[0.4, 0.8, 1.6])  # 100 frames/s x 4 bits: 1, 2, 4 levels
# The package's names -> transformers' (zoo prefixes "model."): SEANet's `model.i` lists are `layers.i`, the
# package's double-wrapped convs (`conv.conv`, `convtr.convtr`: a norm wrapper around the torch conv) are one
# `conv`, and its RVQ keeps its levels under `vq.layers.i._codebook`.
PACKAGE_NAMES = ((r"^(encoder|decoder)\.model\.", r"\1.layers."), (r"\.(conv\.conv|convtr\.convtr)\.", ".conv."),
                 (r"^quantizer\.vq\.layers\.(\d+)\._codebook\.", r"quantizer.layers.\1.codebook."))


def package_to_zoo(name: str) -> str:
    """One tensor name of the ``encodec`` package's EncodecModel -> EncodecTokenizer's."""
    for pattern, replacement in PACKAGE_NAMES:
        name = re.sub(pattern, replacement, name)
    for old, new in WEIGHT_NORM_RENAMES:  # the package uses torch.nn.utils.weight_norm's weight_g / weight_v
        if name.endswith(old):
            name = name[: -len(old)] + new
    return "model." + name


def _package_model(seed: int = 0) -> torch.nn.Module:
    """The package's 24 kHz recipe (EncodecModel._get_model: causal, weight norm, unnormalised, unchunked) at the tiny
    config's size, with seeded codebooks on the latents' scale (the package starts them at zeros for k-means)."""
    torch.manual_seed(seed)
    sizes = dict(channels=1, dimension=16, n_filters=4, ratios=[4, 2], lstm=1, causal=True, norm="weight_norm")
    model = encodec.EncodecModel(seanet.SEANetEncoder(**sizes), seanet.SEANetDecoder(**sizes),
                                 quantization.ResidualVectorQuantizer(dimension=16, n_q=4, bins=16),
                                 target_bandwidths=[0.4, 0.8, 1.6], sample_rate=RATE, channels=1, normalize=False,
                                 segment=None)
    with torch.no_grad():
        latent = model.encoder(_audio(1, 1600, seed=9)[:, None])[0].T  # [n, D]
        for level, layer in enumerate(model.quantizer.vq.layers):
            rows = latent[torch.randperm(len(latent))[:16]]
            layer._codebook.embed.copy_(rows if level == 0 else (rows - latent.mean(0)) * 0.5**level)
            layer._codebook.inited.fill_(1)
    return model.eval()


def _audio(batch: int = 2, samples: int = 480, seed: int = 0) -> torch.Tensor:
    return (torch.rand(batch, samples, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * 0.3


@pytest.fixture(scope="module")
def pair():
    reference = _package_model()
    tok = EncodecTokenizer(ENCODEC, seed=1)
    tok.load_converted({package_to_zoo(k): v for k, v in reference.state_dict().items()}, "encodec package")  # strict
    return tok, reference


def test_the_key_map_covers_every_tensor_both_ways(pair):
    tok, reference = pair
    mapped = {package_to_zoo(k) for k in reference.state_dict()}
    assert mapped == set(tok.state_dict())  # nothing missing, nothing left over (EMA buffers included)
    assert package_to_zoo("decoder.model.3.convtr.convtr.weight_g") == \
        "model.decoder.layers.3.conv.parametrizations.weight.original0"
    assert package_to_zoo("quantizer.vq.layers.2._codebook.embed") == "model.quantizer.layers.2.codebook.embed"


@pytest.mark.parametrize("bandwidth", [0.4, 0.8, 1.6])
def test_ids_equal_and_audio_allclose_with_the_encodec_package(pair, bandwidth):
    tok, reference = pair
    x = _audio()  # whole frames (480 = 60 x 8): the package takes the clip as it is
    reference.set_target_bandwidth(bandwidth)
    with torch.no_grad():
        frames = reference.encode(x[:, None])
        audio = reference.decode(frames)[:, 0]
    (codes, scale), = frames  # one frame: unchunked; no scale: unnormalised
    assert scale is None
    tokens = tok.encode(x, n_q=tok.levels_for(bandwidth))
    assert tokens.ids.shape == (2, 60, codes.shape[1]) and len(tokens.ids.unique()) > 3
    assert torch.equal(tokens.ids, codes.transpose(1, 2))
    ours = tok.decode(tokens)
    difference = (ours - audio).abs().max().item()
    print(f"encodec package parity at {bandwidth} kbps ({codes.shape[1]} levels): ids equal, "
          f"audio max abs difference {difference:.3g}")
    torch.testing.assert_close(ours, audio, rtol=0, atol=1e-5)
