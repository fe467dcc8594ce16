"""X-Codec and WavTokenizer (zoo/audio/published/xcodec.py, wavtokenizer.py) on tiny random configs of the same
transformers classes: the audio contract, parity with each model's own encode / decode, save / load, the hub
layout loading strictly, and the errors. The registry-wide tests build the real-size entries."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import zoo
from zoo.audio.published.wavtokenizer import WavTokenizer
from zoo.audio.published.xcodec import XcodecTokenizer

RATE = 800  # tiny models at 800 Hz: hop 8 (6 for the odd-stride WavTokenizer)
# HuBERT's feature convs must give one frame per hop of the clip padded by hop / 2 on both sides (as X-Codec pads it):
# receptive field 16 and stride 8 give (T + 8 - 16) / 8 + 1 = T / 8 frames.
HUBERT = dict(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, conv_dim=[8, 8],
              conv_kernel=[4, 4], conv_stride=[4, 2], num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
XCODEC = dict(sample_rate=RATE, codebook_size=16, target_bandwidths=[0.4, 0.8, 1.6],  # 100 frames/s x 4 bits: 1, 2, 4
              acoustic_model_config=dict(encoder_hidden_size=4, downsampling_ratios=[2, 4], upsampling_ratios=[4, 2],
                                         decoder_hidden_size=16, hidden_size=8, sampling_rate=RATE),
              semantic_model_config=HUBERT)
WAVTOKENIZER = dict(sampling_rate=RATE, num_filters=4, upsampling_ratios=[4, 2], hidden_size=8, codebook_size=16,
                    codebook_dim=8, num_lstm_layers=1, decoder_hidden_size=8, decoder_intermediate_size=16,
                    decoder_num_layers=1, decoder_attention_num_groups=2)
WAVTOKENIZER_ODD = dict(WAVTOKENIZER, upsampling_ratios=[3, 2])  # odd strides: the asymmetric padding path

CODECS = {"xcodec": (XcodecTokenizer, XCODEC), "wavtokenizer": (WavTokenizer, WAVTOKENIZER),
          "wavtokenizer-odd": (WavTokenizer, WAVTOKENIZER_ODD)}


def _audio(batch: int = 2, samples: int = 500, seed: int = 0) -> torch.Tensor:
    return (torch.rand(batch, samples, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * 0.3


def _quantizer(tok):
    return tok.model.quantizer if isinstance(tok, XcodecTokenizer) else tok.model.encoder_model.quantizer


def _with_codes(tok):
    """Both libraries initialise their codebooks to zeros (every id 0). Seeded codes drawn from the encoder's own
    latents of a noise clip (level 0; later levels: centred and halved per level, like residuals) make the ids
    informative, as trained codebooks are."""
    quantizer, latents = _quantizer(tok), []
    library_encode = quantizer.encode
    quantizer.encode = lambda hidden, *args: latents.append(hidden[0]) or library_encode(hidden, *args)
    try:
        tok.encode(_audio(1, 1600, seed=9))
    finally:
        del quantizer.encode  # back to the class's method
    frames = latents[0].T  # [n, D]
    generator = torch.Generator().manual_seed(1)
    codebooks = [b for name, b in tok.named_buffers() if name.endswith("codebook.embed")]
    for level, codebook in enumerate(codebooks):
        rows = frames[torch.randperm(len(frames), generator=generator)[: len(codebook)]]
        codebook.copy_(rows if level == 0 else (rows - frames.mean(0)) * 0.5**level)
    return tok


def _build(name: str, **kwargs):
    cls, config = CODECS[name]
    return _with_codes(cls(config, **kwargs))


@pytest.fixture(scope="module", params=sorted(CODECS))
def codec(request):
    return _build(request.param)


def test_contract_shapes_padding_and_rates(codec):
    x = _audio()
    tokens = codec.encode(x, lengths=torch.tensor([500, 301]))
    ids, frames = tokens.ids, tokens.lengths
    assert ids.dtype == torch.long and ids.shape == (2, int(frames[0]), codec.num_codebooks)
    assert frames.tolist() == codec.frames(torch.tensor([500, 301])).tolist()
    assert (ids[1, int(frames[1]):] == -1).all() and (ids[0] >= 0).all() and ids.max() < codec.vocab_size
    assert len(ids[0].unique()) > 3  # the seeded codebooks are used, not one code everywhere
    alone = codec.encode(x[1:, :301])  # a padded item tokenizes as it does alone
    assert torch.equal(alone.ids[0], ids[1, : int(frames[1])])
    audio = codec.decode(tokens)
    assert audio.shape == (2, ids.shape[1] * codec.hop)
    assert (audio[1, int(frames[1]) * codec.hop:] == 0).all()  # silence past the item's frames
    assert torch.allclose(codec.decode(alone)[0], audio[1, : int(frames[1]) * codec.hop], atol=1e-5)
    assert codec.frame_rate == RATE / codec.hop
    bits = torch.log2(torch.tensor(float(codec.vocab_size))).item()
    assert codec.bitrate_kbps() == pytest.approx(codec.frame_rate * codec.num_codebooks * bits / 1000)
    one = codec.encode(x[:1, :1])  # the shortest clip: one frame
    assert one.ids.shape == (1, 1, codec.num_codebooks) and codec.decode(one).shape == (1, codec.hop)


def test_parity_xcodec_with_its_own_path():
    tok = _build("xcodec", bandwidth=0.8)
    x = _audio(1, 480)  # whole frames: the library path takes the clip as it is
    ids = tok.encode(x).ids
    codes = tok.model.encode(x[:, None], bandwidth=0.8).audio_codes  # [b, q, n]
    assert ids.shape == (1, 60, 2) and torch.equal(ids, codes.transpose(1, 2))
    ours, theirs = tok.decode(ids), tok.model.decode(codes).audio_values[:, 0]
    print(f"xcodec decode max abs difference {(ours - theirs).abs().max().item():.3g}")
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert (tok.n_q, tok.allowed_levels(), _build("xcodec").n_q) == (2, [1, 2, 4], 4)  # default: the top bandwidth
    assert torch.equal(tok.encode(x, n_q=4).ids[..., :2], ids)  # residual levels: coarse levels are shared
    latent = tok.embed(ids)  # the quantised latent the decoder's projection reads
    expected = tok.model.quantizer.decode(codes.transpose(0, 1)).transpose(1, 2)
    assert latent.shape == (1, 60, 16) and torch.equal(latent, expected)
    assert tok.codebook.shape == (4, 16, 16)


def test_parity_wavtokenizer_with_its_own_path():
    tok = _build("wavtokenizer")
    x = _audio(1, 480)
    ids = tok.encode(x).ids
    codes = tok.model.encode(x[:, None]).audio_codes  # [b, 1, n]
    assert ids.shape == (1, 60, 1) and torch.equal(ids, codes.transpose(1, 2))
    ours, theirs = tok.decode(ids), tok.model.decode(codes).audio_values[:, 0]
    print(f"wavtokenizer decode max abs difference {(ours - theirs).abs().max().item():.3g}")
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert torch.equal(tok.embed(ids)[0], tok.codebook[ids[0, :, 0]])
    # A clip that is not whole hops: zoo zero-pads it, the library pads inside its convs; the frame count agrees.
    assert tok.encode(x[:, :477]).ids.shape[1] == tok.model.encode(x[:, None, :477]).audio_codes.shape[-1]


def test_save_pretrained_and_zoo_load_round_trip(codec, tmp_path):
    folder = codec.save_pretrained(tmp_path / "ckpt")
    loaded = zoo.load(folder)
    assert type(loaded) is type(codec) and loaded.config == codec.config
    x = _audio(seed=3)
    assert torch.equal(loaded.encode(x).ids, codec.encode(x).ids)
    assert torch.equal(loaded.codebook, codec.codebook)  # buffers travel too


@pytest.mark.parametrize("name", ["xcodec", "wavtokenizer"])
def test_hub_layout_loads_strictly_without_ema_statistics(name, tmp_path):
    """The hub repos hold transformers' own names (no ``model.`` prefix); the codebooks' EMA counters may be absent."""
    tok = _build(name)
    cls = type(tok)
    state = {k[len("model."):]: v.clone() for k, v in tok.state_dict().items() if not k.endswith(cls.unused_buffers)}
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    fresh = cls(CODECS[name][1], seed=1)
    fresh.load_weights(path)
    own = tok.state_dict()
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, own[key]) or key.endswith(cls.unused_buffers), key
    del state[next(k for k in state if k.endswith("codebook.embed"))]
    save_file(state, str(path))
    with pytest.raises(zoo.ZooError, match="missing .*codebook.embed"):
        cls(CODECS[name][1]).load_weights(path)


def test_errors_name_what_was_wrong():
    tok = _build("xcodec")
    with pytest.raises(zoo.ZooError, match="recorded at 16000 Hz, the tokenizer takes 800 Hz"):
        tok.encode(_audio(), sample_rate=16000)
    with pytest.raises(zoo.ZooError, match="longer than 60 s at 800 Hz; split it first"):  # HuBERT's full attention
        tok.encode(torch.zeros(1, 60 * RATE + 1))
    with pytest.raises(zoo.ZooError, match=r"n_q must be one of \[1, 2, 4\]"):
        tok.encode(_audio(), n_q=3)
    with pytest.raises(zoo.ZooError, match=r"bandwidth must be one of \[0.4, 0.8, 1.6\]"):
        XcodecTokenizer(XCODEC, bandwidth=4.0)
    with pytest.raises(zoo.ZooError, match=r"semantic_model_config: model_config keys \['hiden_size'\]"):
        XcodecTokenizer({**XCODEC, "semantic_model_config": {**HUBERT, "hiden_size": 8}})
    with pytest.raises(zoo.ZooError, match="not fields of the wrapped model's config"):
        WavTokenizer({**WAVTOKENIZER, "n_codebooks": 2})
    with pytest.raises(zoo.ZooError, match=r"w in \[1\]"):
        _build("wavtokenizer").decode(torch.zeros(1, 4, 2, dtype=torch.long))
    with pytest.raises(zoo.ZooError, match=r"values must lie in \[0, 16\)"):
        _build("wavtokenizer").decode(torch.full((1, 4, 1), 16))


def test_resampling_only_when_asked():
    tok = _build("wavtokenizer", resample=True)
    x = _audio(2, 1000)
    tokens = tok.encode(x, lengths=torch.tensor([1000, 600]), sample_rate=1600)  # halved: 500 and 300 samples
    assert tokens.lengths.tolist() == tok.frames(torch.tensor([500, 300])).tolist()
    assert torch.equal(tokens.ids[1, : int(tokens.lengths[1])], tok.encode(x[1:, :600], sample_rate=1600).ids[0])


NEW_ENTRIES = ["xcodec-hubert-librispeech", "wavtokenizer-large-40token", "wavtokenizer-large-75token"]


@pytest.mark.parametrize("name", NEW_ENTRIES)
def test_entries_point_at_the_transformers_conversions(name):
    weights = zoo.registry.get(name).weights
    assert weights["path"].startswith(("hf://hf-audio/", "hf://swiss-ai/")) and weights["path"].endswith(".safetensors")
    assert "sha256" not in weights and "revision" not in weights  # none was found: the first download's is recorded
