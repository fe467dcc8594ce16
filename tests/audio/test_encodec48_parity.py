"""``encodec-48khz``'s family (ChunkedEncodecTokenizer: stereo, chunked, normalised EnCodec) on a tiny random config:
the chunk layout and its scales (``AudioTokens.scales``), parity with transformers' own ``EncodecModel.encode`` /
``decode`` and with Meta's ``encodec`` package built with the same random weights, save / load, and the errors.

Tiny config: 800 Hz, hop 8, chunks of 160 samples (20 rows) every 144 (overlap 0.1 = 16 samples), so chunk offsets
are not whole hops, as at 48 kHz (47520 = 148.5 hops)."""

from __future__ import annotations

import re

import pytest
import torch

import zoo
from zoo.audio.published.encodec import EncodecTokenizer
from zoo.audio.published.encodec_chunked import ChunkedEncodecTokenizer
from zoo.tokenizer import AudioTokens

RATE = 800
CHUNKED = dict(sampling_rate=RATE, audio_channels=2, normalize=True, chunk_length_s=0.2, overlap=0.1, hidden_size=16,
               num_filters=4, codebook_size=16, codebook_dim=16, num_lstm_layers=1, upsampling_ratios=[4, 2],
               target_bandwidths=[0.4, 0.8, 1.6], norm_type="time_group_norm", use_causal_conv=False)
CHUNK, STRIDE, HOP, ROWS = 160, 144, 8, 20
BANDWIDTHS = [0.4, 0.8, 1.6]  # 1, 2, 4 levels


def _audio(batch: int = 2, samples: int = 432, seed: int = 0) -> torch.Tensor:
    # Each item at its own level, so the per-chunk scales differ between items and chunks.
    x = torch.rand(batch, samples, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return x * torch.linspace(0.1, 0.5, batch)[:, None] * torch.linspace(0.5, 1.0, samples)[None]


def _seed_codebooks(encoder, embeds: list[torch.Tensor]) -> None:
    """Codebooks drawn from the latents of a normalised chunk, each level on its residual's scale: random
    initial codebooks sit far from the latents and give one id everywhere, so equal ids would mean little."""
    x = _audio(1, CHUNK, seed=9)
    latent = encoder((x / x.pow(2).mean().sqrt())[:, None].expand(-1, 2, -1))[0].T  # [n, D]
    generator = torch.Generator().manual_seed(0)
    for level, embed in enumerate(embeds):
        rows = latent[torch.randperm(len(latent), generator=generator)[: len(embed)]]
        embed.copy_(rows if level == 0 else (rows - latent.mean(0)) * 0.5**level)


@pytest.fixture(scope="module")
def tok():
    tok = ChunkedEncodecTokenizer(CHUNKED, bandwidth=1.6)
    with torch.no_grad():
        _seed_codebooks(tok.model.encoder, [layer.codebook.embed for layer in tok.model.quantizer.layers])
    return tok


def _library_codes(tok, x, bandwidth):
    """transformers' own encode of ``x`` duplicated to both channels -> (ids [b, N, q], its output)."""
    out = tok.model.encode(x[:, None].expand(-1, 2, -1), bandwidth=bandwidth)
    codes = torch.cat(list(out.audio_codes), dim=-1)  # chunks one after another: [b, q, n * rows]
    return codes[..., : codes.shape[-1] - out.last_frame_pad_length].transpose(1, 2), out


def test_chunk_layout_rows_samples_and_scales_by_hand(tok):
    # 1 sample: 1 chunk of 1 row; 160: one whole chunk; 161: chunks at 0 and 144 (17 samples left, padded to 24 = 3
    # rows); 304: two chunks, the last 160 samples; 305: three chunks, the last 17 samples (3 rows).
    lengths = torch.tensor([0, 1, 8, 160, 161, 304, 305])
    assert tok.chunks_for_samples(lengths).tolist() == [0, 1, 1, 1, 2, 2, 3]
    assert tok.frames(lengths).tolist() == [0, 1, 1, 20, 23, 40, 43]
    assert tok.chunks(tok.frames(lengths)).tolist() == [0, 1, 1, 1, 2, 2, 3]
    assert tok.samples(tok.frames(lengths)).tolist() == [0, 8, 8, 160, 168, 304, 312]
    assert [tok.padded_length(int(n)) for n in lengths] == [0, 8, 8, 160, 168, 304, 312]
    assert tok.frame_rate == pytest.approx(ROWS * RATE / STRIDE)  # 111.1 rows/s: 20 rows every 144 samples
    assert tok.bitrate_kbps() == pytest.approx(tok.frame_rate * 4 * 4 / 1000)
    x = _audio(1, 305)
    tokens = tok.encode(x)
    assert tokens.ids.shape == (1, 43, 4) and tokens.scales.shape == (1, 3)
    for index, start in enumerate(range(0, 305, STRIDE)):  # each scale is the RMS of its chunk (mono = both channels)
        piece = x[0, start: start + CHUNK]
        piece = torch.nn.functional.pad(piece, (0, 312 - 305)) if index == 2 else piece  # the last chunk, hop-padded
        assert tokens.scales[0, index].item() == pytest.approx(piece.pow(2).mean().sqrt().item() + 1e-8, rel=1e-5)


@pytest.mark.parametrize(("samples", "bandwidth"), [(120, 0.4), (200, 0.8), (288, 1.6), (432, 1.6)],
                         ids=["1-chunk", "2-chunks", "last-chunk-a-stride", "3-chunks"])
def test_ids_and_audio_equal_transformers_own_encode_and_decode(tok, samples, bandwidth):
    # Lengths whose last chunk holds more than the overlap and at most a stride: transformers cuts the same chunks.
    x = _audio(1, samples)
    n_q = tok.levels_for(bandwidth)
    tokens = tok.encode(x, n_q=n_q)
    ids, out = _library_codes(tok, x, bandwidth)
    assert len(out.audio_codes) == int(tok.chunks(tokens.lengths)) and len(tokens.ids.unique()) > 3
    assert torch.equal(tokens.ids, ids)
    torch.testing.assert_close(tokens.scales, torch.cat(out.audio_scales, dim=1), rtol=0, atol=0)
    theirs = tok.model.decode(out.audio_codes, out.audio_scales,
                              last_frame_pad_length=out.last_frame_pad_length).audio_values.mean(1)
    ours = tok.decode(tokens)
    assert ours.shape == theirs.shape
    difference = (ours - theirs).abs().max().item()
    print(f"encodec-48khz family vs transformers at {bandwidth} kbps, T={samples}: ids equal, "
          f"audio max abs difference {difference:.3g}")
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_a_tail_shorter_than_the_overlap_is_left_out(tok):
    # 152 samples: transformers also encodes the 8 samples past 144 as a second chunk (1 row); ours is one chunk.
    x = _audio(1, 152)
    tokens = tok.encode(x)
    ids, out = _library_codes(tok, x, 1.6)
    assert len(out.audio_codes) == 2 and tokens.scales.shape == (1, 1)
    assert torch.equal(tokens.ids, ids[:, :19])  # theirs is ours plus the tail chunk's row


def package_to_zoo_48(name: str) -> str:
    """The package's names with time-group norm (``conv.norm`` / ``convtr.norm`` beside the conv) -> zoo's, through
    the 24 kHz parity test's key map."""
    from tests.audio.test_encodec_package_parity import package_to_zoo  # skips there without the encodec package

    return package_to_zoo(re.sub(r"\.(conv|convtr)\.norm\.", ".norm.", name))


@pytest.fixture(scope="module")
def pair():
    """Meta's package's 48 kHz recipe (EncodecModel.encodec_model_48khz: stereo, non-causal, time-group norm,
    normalised, segments with overlap) at the tiny size, seeded codebooks on the latents' scale (the package starts
    them at zeros for k-means); its weights loaded strictly into the zoo family."""
    encodec = pytest.importorskip("encodec", reason="the encodec package (pip install encodec==0.1.1)")
    from encodec import modules as seanet
    from encodec import quantization

    torch.manual_seed(0)
    sizes = dict(channels=2, dimension=16, n_filters=4, ratios=[4, 2], lstm=1, causal=False, norm="time_group_norm")
    model = encodec.EncodecModel(seanet.SEANetEncoder(**sizes), seanet.SEANetDecoder(**sizes),
                                 quantization.ResidualVectorQuantizer(dimension=16, n_q=4, bins=16),
                                 target_bandwidths=BANDWIDTHS, sample_rate=RATE, channels=2, normalize=True,
                                 segment=0.2, overlap=0.1)
    with torch.no_grad():
        _seed_codebooks(model.encoder, [layer._codebook.embed for layer in model.quantizer.vq.layers])
        for layer in model.quantizer.vq.layers:
            layer._codebook.inited.fill_(1)
    model.eval()
    tok = ChunkedEncodecTokenizer(CHUNKED, seed=1)
    tok.load_converted({package_to_zoo_48(k): v for k, v in model.state_dict().items()}, "encodec package")  # strict
    return tok, model


def test_the_package_key_map_covers_every_tensor(pair):
    tok, model = pair
    assert {package_to_zoo_48(k) for k in model.state_dict()} == set(tok.state_dict())
    assert package_to_zoo_48("decoder.model.3.convtr.norm.weight") == "model.decoder.layers.3.norm.weight"


@pytest.mark.parametrize("bandwidth", [0.4, 1.6])
def test_ids_scales_and_audio_equal_the_encodec_package(pair, bandwidth):
    tok, model = pair
    x = _audio(2, 432)  # three chunks, the last 144 samples: the package cuts the same ones
    model.set_target_bandwidth(bandwidth)
    with torch.no_grad():
        frames = model.encode(x[:, None].expand(-1, 2, -1))
        audio = model.decode(frames).mean(1)
    tokens = tok.encode(x, n_q=tok.levels_for(bandwidth))
    assert len(frames) == 3 and len(tokens.ids.unique()) > 3
    assert torch.equal(tokens.ids, torch.cat([codes for codes, _ in frames], dim=-1).transpose(1, 2))
    torch.testing.assert_close(tokens.scales, torch.cat([scale for _, scale in frames], dim=1), rtol=0, atol=0)
    ours = tok.decode(tokens)
    difference = (ours - audio).abs().max().item()
    print(f"encodec package (48 kHz recipe) parity at {bandwidth} kbps: ids and scales equal, "
          f"audio max abs difference {difference:.3g}")
    torch.testing.assert_close(ours, audio, rtol=0, atol=1e-5)


def test_with_the_packages_extra_tail_chunk_only_the_tail_differs(pair):
    tok, model = pair
    x = _audio(1, 296)  # chunks at 0 and 144 (152 samples, more than a stride): the package adds one at 288
    model.set_target_bandwidth(1.6)
    with torch.no_grad():
        frames = model.encode(x[:, None].expand(-1, 2, -1))
        audio = model.decode(frames).mean(1)
    tokens = tok.encode(x, n_q=4)
    assert len(frames) == 3 and tokens.scales.shape == (1, 2)
    assert torch.equal(tokens.ids, torch.cat([codes for codes, _ in frames[:2]], dim=-1).transpose(1, 2))
    ours = tok.decode(tokens)
    assert ours.shape == (1, 296) and audio.shape == (1, 296)
    torch.testing.assert_close(ours[:, : 2 * STRIDE], audio[:, : 2 * STRIDE], rtol=0, atol=1e-5)


def test_batches_lengths_and_padding_are_per_item(tok):
    x = _audio(3, 500)
    lengths = torch.tensor([500, 161, 40])
    tokens = tok.encode(x, lengths=lengths)
    assert tokens.lengths.tolist() == tok.frames(lengths).tolist() == [69, 23, 5]
    assert tokens.scales.shape == (3, 4) and (tokens.scales[1, 2:] == 0).all() and (tokens.scales[2, 1:] == 0).all()
    assert (tokens.ids[1, 23:] == -1).all() and (tokens.ids[0] >= 0).all()
    alone = tok.encode(x[1:2, :161])  # an item tokenizes as it does alone
    assert torch.equal(alone.ids[0], tokens.ids[1, :23]) and torch.equal(alone.scales[0], tokens.scales[1, :2])
    audio = tok.decode(tokens)
    assert audio.shape == (3, 504)
    assert (audio[1, 168:] == 0).all() and (audio[2, 40:] == 0).all()  # silence past each item's samples
    torch.testing.assert_close(tok.decode(alone)[0], audio[1, :168], rtol=0, atol=1e-6)
    forward = tok(x[:1])
    assert forward.output.shape == (1, 500) and torch.equal(forward.indices, tok.encode(x[:1]).ids)
    empty = tok.encode(torch.zeros(2, 0))
    assert empty.ids.shape == (2, 0, 4) and empty.scales.shape == (2, 0) and tok.decode(empty).shape == (2, 0)


def test_scales_carry_the_level(tok):
    # Normalised chunks: a clip 4x louder gives the same ids and 4x the scales, and decodes 4x louder.
    x = _audio(1, 400)
    quiet, loud = tok.encode(x), tok.encode(x * 4)
    assert torch.equal(quiet.ids, loud.ids)
    torch.testing.assert_close(loud.scales, quiet.scales * 4, rtol=1e-5, atol=0)
    torch.testing.assert_close(tok.decode(loud), tok.decode(quiet) * 4, rtol=1e-4, atol=1e-6)


def test_save_pretrained_and_zoo_load_round_trip(tok, tmp_path):
    loaded = zoo.load(tok.save_pretrained(tmp_path / "ckpt"))
    assert type(loaded) is ChunkedEncodecTokenizer and loaded.config == tok.config
    x = _audio(seed=3)
    ours, theirs = loaded.encode(x), tok.encode(x)
    assert torch.equal(ours.ids, theirs.ids) and torch.equal(ours.scales, theirs.scales)
    assert torch.equal(loaded.decode(ours), tok.decode(theirs))


def test_errors_name_what_was_wrong(tok):
    tokens = tok.encode(_audio(1, 300))
    with pytest.raises(zoo.ZooError, match="needs the per-chunk scales beside the ids"):
        tok.decode(tokens.ids)
    with pytest.raises(zoo.ZooError, match=r"n_chunks >= 2"):
        tok.decode(AudioTokens(tokens.ids, tokens.lengths, tokens.scales[:, :1]))
    with pytest.raises(zoo.ZooError, match="finite and positive"):
        tok.decode(tokens._replace(scales=torch.zeros_like(tokens.scales)))
    unchunked = EncodecTokenizer({k: v for k, v in CHUNKED.items() if k not in ("chunk_length_s", "overlap",
                                                                                 "normalize", "audio_channels")})
    mono = unchunked.encode(_audio(1, 300))
    assert mono.scales is None
    with pytest.raises(zoo.ZooError, match="ids decode on their own"):
        unchunked.decode(mono._replace(scales=torch.ones(1, 2)))
    with pytest.raises(zoo.ZooError, match="chunked 48 kHz one is .*ChunkedEncodecTokenizer"):
        EncodecTokenizer(CHUNKED)
    with pytest.raises(zoo.ZooError, match="needs chunk_length_s and overlap"):
        ChunkedEncodecTokenizer({**CHUNKED, "chunk_length_s": None})
    with pytest.raises(zoo.ZooError, match="not a whole number of hops"):
        ChunkedEncodecTokenizer({**CHUNKED, "chunk_length_s": 0.205})


def test_the_registry_entry_at_full_size():
    # The real network with random weights (the registry-wide tests skip entries whose weights download).
    tok = zoo.load("encodec-48khz")
    entry = zoo.registry.get("encodec-48khz")
    assert type(tok) is ChunkedEncodecTokenizer and sum(p.numel() for p in tok.parameters()) == \
        entry.card["parameters"]
    assert (tok.chunk, tok.stride, tok.hop, tok.rows_per_chunk) == (48000, 47520, 320, 150)
    assert tok.allowed_levels() == [2, 4, 8, 16] and tok.n_q == 16 and tok.has_scales
    assert tok.frame_rate == pytest.approx(151.515, abs=1e-3) and tok.bitrate_kbps(2) == pytest.approx(3.0303, 1e-4)
    # 1 s: one chunk; 1 s + 1 sample: a second chunk at 47520 holding 481 samples (2 rows); 95520: the second one
    # whole; 2 s: a third chunk at 95040 holding 960 samples (3 rows).
    lengths = torch.tensor([48000, 48001, 95520, 96000])
    assert tok.frames(lengths).tolist() == [150, 152, 300, 303]
    assert tok.samples(tok.frames(lengths)).tolist() == [48000, 48160, 95520, 96000]
    tokens = tok.encode(_audio(1, 2400), n_q=2)  # 50 ms: one short chunk through the real network
    assert tokens.ids.shape == (1, 8, 2) and tokens.scales.shape == (1, 1)
    assert tok.decode(tokens).shape == (1, 2560)
