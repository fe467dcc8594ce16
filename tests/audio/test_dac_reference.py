"""DAC against descript's own package (``descript-audio-codec``) through recorded outputs: the package stays out of
zoo's environment (its audiotools pins break Ray and onnx), so tests/fixtures/dac_reference/make_fixture.py, run in a
separate venv, saved a tiny random ``dac.DAC``'s state dict in descript's layout, an input, its codes at n_q = 1, 2, 3
and its reconstructions (versions.json: the packages and arguments). Here that state dict goes through the zoo's
converter (``DacTokenizer.convert``: names by position, weight norm folded) into transformers' ``DacModel``; ids must
equal descript's and audio be allclose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import zoo
from zoo.audio.published.convert import convert_checkpoint
from zoo.audio.published.dac import DacTokenizer, descript_name, fold_weight_norm

FIXTURE = Path(__file__).parents[1] / "fixtures" / "dac_reference"
# descript's DAC(encoder_dim=4, encoder_rates=[2, 4], latent_dim=16, decoder_dim=16, decoder_rates=[4, 2],
# n_codebooks=3, codebook_size=16, codebook_dim=4, sample_rate=800) in transformers' DacConfig names.
DAC = dict(sampling_rate=800, encoder_hidden_size=4, downsampling_ratios=[2, 4], upsampling_ratios=[4, 2],
           decoder_hidden_size=16, n_codebooks=3, codebook_size=16, codebook_dim=4, hidden_size=16, hop_length=8)


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE / "reference.safetensors"))


@pytest.fixture(scope="module")
def tok() -> DacTokenizer:
    tok = DacTokenizer(DAC, seed=7)  # other random weights first: every tensor must come from the file
    tok.load_weights(FIXTURE / "descript_state.safetensors")  # descript's layout, detected and converted
    return tok


def test_the_fixture_matches_this_config_and_is_small():
    recorded = json.loads((FIXTURE / "versions.json").read_text())
    kwargs = recorded["dac_kwargs"]
    assert kwargs["encoder_rates"] == DAC["downsampling_ratios"] and kwargs["decoder_rates"] == DAC["upsampling_ratios"]
    assert (kwargs["encoder_dim"], kwargs["decoder_dim"], kwargs["latent_dim"]) == (4, 16, DAC["hidden_size"])
    assert sum(path.stat().st_size for path in FIXTURE.iterdir()) < 1_000_000
    assert all(count == 0 for count in recorded["saturated_samples"].values())  # tanh off +-1: allclose means something


def test_descript_names_map_by_position():
    assert descript_name("encoder.block.0.weight_v", 2, 2) == "encoder.conv1.weight_v"
    assert descript_name("encoder.block.1.block.2.block.3.weight_g", 2, 2) == "encoder.block.0.res_unit3.conv2.weight_g"
    assert descript_name("encoder.block.2.block.3.alpha", 2, 2) == "encoder.block.1.snake1.alpha"
    assert descript_name("encoder.block.2.block.4.bias", 2, 2) == "encoder.block.1.conv1.bias"
    assert descript_name("encoder.block.3.alpha", 2, 2) == "encoder.snake1.alpha"
    assert descript_name("encoder.block.4.weight_v", 2, 2) == "encoder.conv2.weight_v"
    assert descript_name("decoder.model.1.block.1.weight_v", 2, 2) == "decoder.block.0.conv_t1.weight_v"
    assert descript_name("decoder.model.2.block.4.block.0.alpha", 2, 2) == "decoder.block.1.res_unit3.snake1.alpha"
    assert descript_name("decoder.model.4.bias", 2, 2) == "decoder.conv2.bias"
    assert descript_name("quantizer.quantizers.1.codebook.weight", 2, 2) == "quantizer.quantizers.1.codebook.weight"
    with pytest.raises(zoo.ZooError, match="does not fit a model of 2 encoder blocks"):
        descript_name("encoder.block.5.alpha", 2, 2)  # a deeper encoder's file: index 5 is past conv2 (4)
    with pytest.raises(zoo.ZooError, match="not a tensor name of descript's DAC layout"):
        descript_name("generator.block.0.weight", 2, 2)


def test_weight_norm_is_folded_as_descripts_forward_computes_it():
    v, g = torch.randn(5, 3, 7), torch.rand(5, 1, 1) + 0.5
    folded = fold_weight_norm({"conv.weight_v": v, "conv.weight_g": g, "conv.bias": torch.zeros(5)})
    assert set(folded) == {"conv.weight", "conv.bias"}
    expected = g * v / v.flatten(1).norm(dim=1)[:, None, None]  # w = g v / ||v||, the norm over all but dim 0
    torch.testing.assert_close(folded["conv.weight"], expected, rtol=1e-6, atol=1e-7)
    with pytest.raises(zoo.ZooError, match="has no 'conv.weight_g' beside it"):
        fold_weight_norm({"conv.weight_v": v})


@pytest.mark.parametrize("n_q", [1, 2, 3])
def test_codes_equal_and_audio_allclose_with_descripts_package(tok, reference, n_q):
    codes = reference[f"codes_nq{n_q}"]  # [B, q, N], from descript's encode(preprocess(x), n_quantizers)
    x = reference["audio"]  # 475 samples: not whole hops, both sides pad the end to 480
    tokens = tok.encode(x, n_q=n_q)
    assert tokens.ids.shape == (2, 60, n_q) and len(tokens.ids.unique()) > 3
    assert torch.equal(tokens.ids, codes.transpose(1, 2))
    audio = tok.decode(tokens)
    expected = reference[f"reconstruction_nq{n_q}"]  # descript's decode(quantizer.from_codes(codes))
    difference = (audio - expected).abs().max().item()
    print(f"dac vs descript-audio-codec, n_q={n_q}: codes equal, reconstruction max abs difference {difference:.3g}")
    torch.testing.assert_close(audio, expected, rtol=0, atol=1e-5)


def test_descripts_weights_pth_converts_once_into_a_zoo_folder(tmp_path, reference):
    # descript's release file is {"state_dict": ..., "metadata": {"kwargs": ...}} (audiotools' BaseModel.save with
    # package=False), read here with weights_only=True.
    state = load_file(str(FIXTURE / "descript_state.safetensors"))
    source = tmp_path / "weights.pth"
    kwargs = json.loads((FIXTURE / "versions.json").read_text())["dac_kwargs"]
    torch.save({"state_dict": state, "metadata": {"kwargs": kwargs}}, source)
    folder = convert_checkpoint(source, tmp_path / "dac", DacTokenizer(DAC))
    loaded = zoo.load(folder)
    assert torch.equal(loaded.encode(reference["audio"]).ids, reference["codes_nq3"].transpose(1, 2))
    missing = dict(state)
    del missing["decoder.model.4.weight_g"]
    with pytest.raises(zoo.ZooError, match="'decoder.conv2.weight_v' has no 'decoder.conv2.weight_g' beside it"):
        DacTokenizer(DAC).convert(missing)
