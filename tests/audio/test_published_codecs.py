"""Published audio codecs (zoo/audio/published/): the contract on tiny random configs of the same library classes,
parity with each wrapped model's own encode / decode path (and with the snac package, the reference), weights in the
official layouts, save / load, pins and the offline error. The registry-wide tests build the real-size entries."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import zoo
from zoo.audio.published.base import WEIGHT_NORM_RENAMES
from zoo.audio.published.convert import convert_checkpoint
from zoo.audio.published.dac import DacTokenizer
from zoo.audio.published.encodec import EncodecTokenizer
from zoo.audio.published.mimi import MimiTokenizer
from zoo.audio.published.snac import SnacTokenizer
from zoo.hub import cached_path

snac = pytest.importorskip("snac", reason="the snac package (pip install snac==1.2.1)")

RATE = 800  # tiny models at 800 Hz: hop 8 or 16 samples
ENCODEC = dict(sampling_rate=RATE, hidden_size=16, num_filters=4, codebook_size=16, codebook_dim=16, num_lstm_layers=1,
               upsampling_ratios=[4, 2], target_bandwidths=[0.4, 0.8, 1.6])  # 100 frames/s x 4 bits: 1, 2, 4 levels
DAC = dict(sampling_rate=RATE, encoder_hidden_size=4, downsampling_ratios=[2, 4], upsampling_ratios=[4, 2],
           decoder_hidden_size=16, n_codebooks=3, codebook_size=16, codebook_dim=4, hidden_size=32, hop_length=8)
MIMI = dict(sampling_rate=RATE, hidden_size=16, num_filters=4, upsampling_ratios=[4, 2], codebook_size=16,
            codebook_dim=8, num_quantizers=4, vector_quantization_hidden_dimension=8, upsample_groups=16,
            num_hidden_layers=1, intermediate_size=16, num_attention_heads=2, num_key_value_heads=2, head_dim=8,
            sliding_window=8, max_position_embeddings=256)
SNAC = dict(sampling_rate=RATE, encoder_dim=4, encoder_rates=[2, 2], decoder_dim=16, decoder_rates=[2, 2],
            attn_window_size=None, codebook_size=16, codebook_dim=4, vq_strides=[4, 2, 1])
SNAC_ATTN = dict(SNAC, encoder_dim=16, decoder_dim=64, attn_window_size=8)  # local attention: pads to 32 samples

CODECS = {"encodec": (EncodecTokenizer, ENCODEC), "dac": (DacTokenizer, DAC), "mimi": (MimiTokenizer, MIMI),
          "snac": (SnacTokenizer, SNAC), "snac-attn": (SnacTokenizer, SNAC_ATTN)}


def _audio(batch: int = 2, samples: int = 500, seed: int = 0) -> torch.Tensor:
    return (torch.rand(batch, samples, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * 0.3


@pytest.fixture(scope="module", params=sorted(CODECS))
def codec(request):
    cls, config = CODECS[request.param]
    return cls(config)


def test_contract_shapes_padding_and_rates(codec):
    x = _audio()
    tokens = codec.encode(x, lengths=torch.tensor([500, 301]))
    ids, frames = tokens.ids, tokens.lengths
    assert ids.dtype == torch.long and ids.shape == (2, int(frames[0]), codec.num_codebooks)
    assert frames.tolist() == codec.frames(torch.tensor([500, 301])).tolist()
    assert (ids[1, int(frames[1]):] == -1).all() and (ids[0] >= 0).all() and ids.max() < codec.vocab_size
    alone = codec.encode(x[1:, :301])  # a padded item tokenizes as it does alone
    assert torch.equal(alone.ids[0], ids[1, : int(frames[1])])
    audio = codec.decode(tokens)
    assert audio.shape == (2, ids.shape[1] * codec.hop)
    assert (audio[1, int(frames[1]) * codec.hop:] == 0).all()  # silence past the item's frames
    assert torch.allclose(codec.decode(alone)[0], audio[1, : int(frames[1]) * codec.hop], atol=1e-5)
    assert codec.frame_rate == RATE / codec.hop
    bits = torch.log2(torch.tensor(float(codec.vocab_size))).item()
    assert codec.bitrate_kbps() == pytest.approx(codec.frame_rate * codec.num_codebooks * bits / 1000)


def test_parity_encodec_with_its_own_path():
    tok = EncodecTokenizer(ENCODEC, bandwidth=0.8)
    x = _audio(1, 480)  # whole frames: the library path takes the clip as it is
    ids = tok.encode(x).ids
    out = tok.model.encode(x[:, None], bandwidth=0.8)
    assert torch.equal(ids, out.audio_codes[0].transpose(1, 2))
    ours, theirs = tok.decode(ids), tok.model.decode(out.audio_codes, out.audio_scales).audio_values[:, 0]
    print(f"encodec decode max abs difference {(ours - theirs).abs().max().item():.3g}")
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert ids.shape[-1] == 2 and tok.encode(x, n_q=4).ids.shape[-1] == 4
    assert torch.equal(tok.encode(x, n_q=4).ids[..., :2], ids)  # residual levels: coarse levels are shared


def test_parity_dac_and_mimi_with_their_own_paths():
    x = _audio(1, 480)
    dac = DacTokenizer(DAC)
    codes = dac.model.encode(x[:, None], n_quantizers=2).audio_codes[:, :2]
    ids = dac.encode(x, n_q=2).ids
    assert torch.equal(ids, codes.transpose(1, 2))
    difference = (dac.decode(ids) - dac.model.decode(audio_codes=codes).audio_values).abs().max().item()
    mimi = MimiTokenizer(MIMI)
    codes = mimi.model.encode(x[:, None], num_quantizers=3).audio_codes
    ids = mimi.encode(x, n_q=3).ids
    assert torch.equal(ids, codes.transpose(1, 2))
    reference = mimi.model.decode(codes).audio_values[:, 0]
    mimi_difference = (mimi.decode(ids) - reference).abs().max().item()
    print(f"dac max abs difference {difference:.3g}, mimi {mimi_difference:.3g}")
    assert difference <= 1e-6 and mimi_difference <= 1e-6


@pytest.mark.parametrize("config", [SNAC, SNAC_ATTN], ids=["no-attention", "local-attention"])
def test_parity_snac_with_the_reference_package_and_its_layout(config):
    tok = SnacTokenizer(config)
    reference = snac.SNAC(**config).eval()
    reference.load_state_dict({name[len("model."):]: value for name, value in tok.state_dict().items()})
    x = _audio(1, 500)
    with torch.no_grad():
        codes = reference.encode(x[:, None])
        torch.manual_seed(tok.seed)
        audio = reference.decode(codes)[:, 0]
    ids = tok.encode(x).ids
    # one row per coarsest frame: [c0[t], c1[2t], c1[2t+1], c2[4t .. 4t+3]]
    assert ids.shape == (1, codes[0].shape[1], 7)
    assert torch.equal(ids[0, :, 0], codes[0][0]) and torch.equal(ids[0, :, 1:3].flatten(), codes[1][0])
    assert torch.equal(ids[0, :, 3:].flatten(), codes[2][0])
    ours = tok.decode(ids)
    print(f"snac max abs difference {(ours - audio).abs().max().item():.3g}")
    torch.testing.assert_close(ours, audio, rtol=0, atol=1e-6)
    assert torch.equal(tok.decode(ids), ours)  # the decoder's noise is seeded per item: decoding is deterministic


def test_save_pretrained_and_zoo_load_round_trip(codec, tmp_path):
    folder = codec.save_pretrained(tmp_path / "ckpt")
    loaded = zoo.load(folder)
    assert type(loaded) is type(codec) and loaded.config == codec.config
    x = _audio(seed=3)
    assert torch.equal(loaded.encode(x).ids, codec.encode(x).ids)


def test_official_layout_with_old_weight_norm_names_and_no_ema_statistics(tmp_path):
    tok = EncodecTokenizer(ENCODEC)
    state = {}
    for name, value in tok.state_dict().items():
        name = name[len("model."):]
        if name.endswith(EncodecTokenizer.unused_buffers):
            continue  # a file without the codebooks' EMA counters still computes the same
        for old, new in WEIGHT_NORM_RENAMES:
            name = name.replace(new, old)
        state[name] = value.clone().half() if name.endswith("embed") else value.clone()
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    fresh = EncodecTokenizer(ENCODEC, seed=1)
    fresh.load_weights(path)
    own = tok.state_dict()
    for name, value in fresh.state_dict().items():
        expected = own[name].half().float() if name.endswith("codebook.embed") else own[name]
        assert torch.equal(value, expected), name
    del state["encoder.layers.0.conv.weight_g"]
    save_file(state, str(path))
    with pytest.raises(zoo.ZooError, match="missing .*layers.0.conv.parametrizations.weight.original0"):
        EncodecTokenizer(ENCODEC).load_weights(path)


def test_errors_name_what_was_wrong():
    tok = DacTokenizer(DAC)
    with pytest.raises(zoo.ZooError, match="recorded at 16000 Hz, the tokenizer takes 800 Hz"):
        tok.encode(_audio(), sample_rate=16000)
    with pytest.raises(zoo.ZooError, match=r"n_q must be one of \[1, 2, 3\]"):
        tok.encode(_audio(), n_q=4)
    with pytest.raises(zoo.ZooError, match="bandwidth must be one of"):
        EncodecTokenizer(ENCODEC, bandwidth=3.0)
    with pytest.raises(zoo.ZooError, match="not fields of the wrapped model's config"):
        DacTokenizer({**DAC, "n_codebook": 3})
    with pytest.raises(zoo.ZooError, match="-1 \\(padding\\) inside"):
        tok.decode(torch.full((1, 4, 3), -1))
    with pytest.raises(zoo.ZooError, match=r"w in \[7\]"):
        SnacTokenizer(SNAC).decode(torch.zeros(1, 4, 3, dtype=torch.long))


def test_resampling_only_when_asked():
    tok = DacTokenizer(DAC, resample=True)
    x = _audio(2, 1000)
    tokens = tok.encode(x, lengths=torch.tensor([1000, 600]), sample_rate=1600)  # halved: 500 and 300 samples
    assert tokens.lengths.tolist() == tok.frames(torch.tensor([500, 300])).tolist()
    assert torch.equal(tokens.ids[1, : int(tokens.lengths[1])],
                       tok.encode(x[1:, :600], sample_rate=1600).ids[0])


def test_offline_missing_weights_name_the_cache_path(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    entry = zoo.registry.get("dac-16khz")
    expected = cached_path(entry.weights["path"], entry.weights.get("revision"))
    with pytest.raises(zoo.ZooError, match="not cached") as err:
        zoo.load("dac-16khz", pretrained=True)
    assert str(expected) in str(err.value)


def test_snac_pickle_is_refused_on_load_and_converted_once(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    tok = zoo.load("snac-24khz")  # the real-size network (random weights), as the official file fits it
    state = {}
    for name, value in tok.state_dict().items():
        for old, new in WEIGHT_NORM_RENAMES:  # the pickle's weight-norm names are the old ones
            name = name.replace(new, old)
        state[name[len("model."):]] = value + 0.01 if name.endswith("alpha") else value
    local = cached_path(zoo.registry.get("snac-24khz").weights["path"])
    local.parent.mkdir(parents=True)
    torch.save(state, local)
    with pytest.raises(zoo.ZooError, match="pickled checkpoint, which zoo.load never reads"):
        zoo.load("snac-24khz", pretrained=True)
    folder = convert_checkpoint(local, tmp_path / "snac", "snac-24khz")
    loaded = zoo.load(folder)
    own = tok.state_dict()
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, own[name] + 0.01 if name.endswith("alpha") else own[name]), name
    assert loaded.config == tok.config
