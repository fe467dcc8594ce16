"""The codec family: shapes and lengths, padding, quantizer dropout and n_q, bitrate, discriminators, one
training step of every loss, the export without discriminator. The registry-wide tests cover codec-16k's
contract and save / load; these use a tiny config so they run in seconds."""

from __future__ import annotations

import math

import pytest
import torch

import zoo
from zoo.audio.codec import CodecTokenizer
from zoo.audio.codec.discriminators import CodecDiscriminator, discriminator_loss, feature_matching_loss
from zoo.errors import ZooError
from zoo.tokenizer import AudioTokens

HOP = 8  # strides [2, 4]
TINY = dict(channels=4, decoder_channels=16, strides=[2, 4], dilations=[1, 3], latent_dim=8,
            quantizer={"kind": "rvq", "codebooks": 4, "codebook_size": 16})


def _codec(**overrides) -> CodecTokenizer:
    return CodecTokenizer(**{**TINY, **overrides}).eval()


def _audio(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, samples, generator=generator) * 2 - 1) * 0.3


def test_encode_shapes_lengths_and_padding_ids():
    tok = _codec()
    x = _audio(3, 100)
    tokens = tok.encode(x, lengths=torch.tensor([100, 41, 0]))
    assert isinstance(tokens, AudioTokens)
    assert tokens.ids.shape == (3, math.ceil(100 / HOP), 4) and tokens.ids.dtype == torch.long
    assert tokens.lengths.tolist() == [13, 6, 0]  # ceil(length / hop) frames
    assert (tokens.ids[1, 6:] == -1).all() and (tokens.ids[2] == -1).all()
    assert tokens.ids[0].min() >= 0 and tokens.ids[0].max() < tok.vocab_size
    assert tok.frame_rate == 16_000 / HOP and tok.num_codebooks == 4


def test_a_padded_item_gets_the_tokens_and_audio_it_gets_alone():
    tok = _codec()
    x = _audio(2, 96)
    batch = tok.encode(x, lengths=torch.tensor([96, 40]))
    alone = tok.encode(x[1:, :40])
    assert torch.equal(batch.ids[1, :5], alone.ids[0])
    assert torch.equal(tok.decode(batch)[1, :40], tok.decode(alone)[0])
    assert (tok.decode(batch)[1, 40:] == 0).all()  # silence past the item's frames


def test_decode_of_encode_has_the_input_shape_and_range():
    tok = _codec()
    x = _audio(2, 12 * HOP)
    y = tok.decode(tok.encode(x))
    assert y.shape == x.shape and y.dtype == torch.float32 and y.abs().max() <= 1
    # Not a multiple of the hop: whole frames come back, the caller cuts to the clip's length.
    assert tok.decode(tok.encode(_audio(1, 12 * HOP + 3))).shape == (1, 13 * HOP)


def test_n_q_at_encode_is_a_prefix_of_the_levels_and_sets_the_bitrate():
    tok = _codec()
    x = _audio(2, 64)
    full = tok.encode(x)
    two = tok.encode(x, n_q=2)
    assert two.ids.shape[-1] == 2 and torch.equal(two.ids, full.ids[..., :2])  # residual: coarse levels first
    assert tok.decode(two).shape == x.shape
    assert not torch.equal(tok.decode(two), tok.decode(full))
    # frame_rate * n_q * log2(K) / 1000
    assert tok.bitrate_kbps() == pytest.approx(2000 * 4 * 4 / 1000)
    assert tok.bitrate_kbps(2) == pytest.approx(2000 * 2 * 4 / 1000)
    configured = _codec(n_q=2)
    assert configured.num_codebooks == 2 and configured.encode(x).ids.shape[-1] == 2
    with pytest.raises(ZooError, match="n_q must be an integer in \\[1, 4\\]"):
        tok.encode(x, n_q=5)
    with pytest.raises(ZooError, match="n_q must be"):
        _codec(n_q=0)


def test_quantizer_dropout_trains_every_number_of_levels():
    tok = _codec(quantizer={**TINY["quantizer"], "dropout": 1.0, "dropout_min": 2}).train()
    torch.manual_seed(0)
    used = set()
    for _ in range(30):
        out = tok.training_losses({"audio": _audio(2, 64)}, step=0)
        levels = out.extras["levels_used"]
        used.add(levels)
        assert (out.indices[..., :levels] >= 0).all() and (out.indices[..., levels:] == -1).all()
    assert used == {2, 3, 4}
    never = _codec(quantizer={**TINY["quantizer"], "dropout": 0.0}).train()
    assert {never.training_losses({"audio": _audio(2, 64)}, step=0).extras["levels_used"] for _ in range(5)} == {4}


def test_embed_and_codebook():
    tok = _codec()
    ids = tok.encode(_audio(1, 64)).ids
    vectors = tok.embed(ids)
    assert vectors.shape == (1, 8, 8)
    assert tok.codebook.shape == (4, 16, 8)
    # The sum of each level's code vector (no projection: code_dim == latent_dim).
    by_hand = sum(tok.codebook[level][ids[0, :, level]] for level in range(4))
    assert torch.allclose(vectors[0], by_hand, atol=1e-6)
    assert (tok.embed(torch.full((1, 2, 4), -1)) == 0).all()
    with pytest.raises(ZooError, match="values must lie in \\[0, 16\\)"):
        tok.decode(torch.full((1, 2, 4), 16))
    with pytest.raises(ZooError, match="1 <= n <= 4"):
        tok.decode(torch.zeros(1, 2, 5, dtype=torch.long))


def test_residual_fsq_option():
    tok = _codec(quantizer={"kind": "rfsq", "codebooks": 3, "fsq_levels": [5, 4, 3]})
    x = _audio(2, 48)
    tokens = tok.encode(x)
    assert tok.vocab_size == 60 and tokens.ids.shape == (2, 6, 3)
    assert tokens.ids.min() >= 0 and tokens.ids.max() < 60
    assert tok.codebook.shape == (3, 60, 3) and tok.decode(tokens).shape == x.shape
    assert "commitment" not in tok.train().training_losses({"audio": x}, step=0).losses
    with pytest.raises(ZooError, match="unknown option"):
        _codec(quantizer={"kind": "rfsq", "codebook_size": 8})


def test_discriminator_outputs():
    disc = CodecDiscriminator(periods=[2, 3], stft_windows=[64, 32], channels=4)
    outputs = disc(_audio(2, 301))
    assert len(outputs) == 4
    for logits, features in outputs:
        assert logits.shape[0] == 2 and logits.shape[1] == 1 and len(features) >= 4
        assert all(f.shape[0] == 2 for f in features)
    # Period p folds the clip into columns of p samples.
    assert outputs[0][0].shape[-1] == 2 and outputs[1][0].shape[-1] == 3
    assert feature_matching_loss(outputs, outputs) == 0
    assert discriminator_loss(outputs, outputs).item() > 0


def test_one_training_step_of_every_loss_is_finite():
    tok = _codec(loss={"stft": 1.0, "waveform": 0.1, "gan_start": 1},
                 discriminator={"periods": [2, 3], "stft_windows": [64, 32], "channels": 4}).train()
    batch = {"audio": _audio(2, 128), "audio_lengths": torch.tensor([128, 100])}
    assert tok.discriminator_losses(batch, tok.training_losses(batch, step=0), step=0) == {}  # before gan_start
    out = tok.training_losses(batch, step=1)
    assert set(out.losses) == {"mel", "stft", "waveform", "commitment", "adversarial", "feature", "loss"}
    assert all(torch.isfinite(v) for v in out.losses.values())
    assert out.output.shape == batch["audio"].shape
    out.losses["loss"].backward()
    assert all(p.grad is None for p in tok.discriminator.parameters())  # the generator step leaves D alone
    assert tok.encoder.net[0].parametrizations.weight.original1.grad is not None
    disc = tok.discriminator_losses(batch, out, step=1)
    assert torch.isfinite(disc["loss"])
    tok.zero_grad()
    disc["loss"].backward()
    assert all(p.grad is None for p in tok.encoder.parameters())  # the reconstruction is detached
    assert any(p.grad is not None for p in tok.discriminator.parameters())


def test_export_drops_the_discriminator_and_loads_back_exactly(tmp_path):
    disc = {"periods": [2], "stft_windows": [32], "channels": 4}
    tok = _codec(discriminator=disc)
    tok.train().training_losses({"audio": _audio(2, 64)}, step=0)  # k-means init and EMA steps change buffers
    tok.eval()
    tok.save_pretrained(tmp_path / "codec")
    loaded = zoo.load(tmp_path / "codec")
    assert loaded.discriminator is None and loaded.config["discriminator"] is None
    record = zoo.pretrained.read_config(tmp_path / "codec")
    assert record["metadata"]["trained_with"] == {"discriminator": disc}
    ours = {k: v for k, v in tok.state_dict().items() if not k.startswith("discriminator.")}
    assert ours.keys() == loaded.state_dict().keys()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in ours.items())
    x = _audio(2, 80)
    assert torch.equal(tok.encode(x).ids, loaded.encode(x).ids)
    assert torch.equal(tok.decode(tok.encode(x)), loaded.decode(loaded.encode(x)))


def test_input_checks():
    tok = _codec()
    with pytest.raises(ZooError, match="24000 Hz, the tokenizer takes 16000 Hz"):
        tok.encode(_audio(1, 64), sample_rate=24_000)
    with pytest.raises(ZooError, match="shape \\[B, T\\]"):
        tok.encode(torch.zeros(64))
    with pytest.raises(ZooError, match="unknown option"):
        _codec(loss={"mels": 1.0})
    with pytest.raises(ZooError, match="decoder_channels"):
        _codec(decoder_channels=6)
