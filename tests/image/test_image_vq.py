"""VQTokenizer: architecture, the image contract, losses (clean quantiser terms under perturbation, GAN, perceptual)."""

import pytest
import torch
from safetensors.torch import save_file

from zoo.errors import ZooError
from zoo.image.vq.losses import PerceptualLoss, adaptive_gan_weight
from zoo.image.vq.model import VQTokenizer
from zoo.image.vq.vqgan import AttentionBlock

TINY = {"channels": 8, "channel_mult": [1, 2, 2], "num_res_blocks": 1, "z_channels": 8,
        "quantizer": {"kind": "vq", "codebook_size": 16, "code_dim": 4}}


def tiny(**overrides) -> VQTokenizer:
    return VQTokenizer(**{**TINY, **overrides})


@pytest.mark.parametrize("mult, factor", [([1, 2, 2], 4), ([1, 1, 2, 2], 8), ([1, 1, 2, 2, 4], 16)])
def test_downsampling_factor_follows_channel_mult(mult, factor):
    tok = tiny(channel_mult=mult).eval()
    assert tok.downsample == factor
    ids = tok.encode(torch.rand(2, 3, 32, 32))
    assert ids.shape == (2, 32 // factor, 32 // factor) and ids.dtype == torch.long
    # Attention only at the lowest resolution: one block in the encoder's middle, one in the decoder's.
    assert sum(isinstance(m, AttentionBlock) for m in tok.modules()) == 2
    assert sum(isinstance(m, AttentionBlock) for m in tiny(channel_mult=mult, attention=False).modules()) == 0


@pytest.mark.parametrize("quantizer, id_shape", [
    ({"kind": "vq", "codebook_size": 16, "code_dim": 4}, (2, 4, 4)),
    ({"kind": "fsq", "levels": [4, 4, 3]}, (2, 4, 4)),
    ({"kind": "lfq", "bits": 5}, (2, 4, 4)),
    ({"kind": "rvq", "codebook_size": 16, "code_dim": 4, "levels": 2}, (2, 4, 4, 2)),
])
def test_image_contract_for_every_quantiser(quantizer, id_shape):
    tok = tiny(quantizer=quantizer).eval()
    x = torch.rand(2, 3, 16, 16)
    ids = tok.encode(x)
    assert ids.shape == id_shape and 0 <= int(ids.min()) and int(ids.max()) < tok.vocab_size
    images = tok.decode(ids)
    assert images.shape == x.shape and 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert tok.embed(ids).shape == (2, 4, 4, tok.quantize.code_dim)
    assert tok.codebook.shape[-2:] == (tok.vocab_size, tok.quantize.code_dim)
    # decode(ids) is the forward pass's reconstruction (clamped).
    assert torch.allclose(tok(x).output.clamp(0, 1), images, atol=1e-5)


def test_bad_inputs_are_named():
    tok = tiny().eval()
    with pytest.raises(ZooError, match="multiples of 4"):
        tok.encode(torch.rand(1, 3, 18, 16))
    with pytest.raises(ZooError, match=r"values must lie in \[0, 1\]"):
        tok.encode(torch.rand(1, 3, 16, 16) * 3)
    with pytest.raises(ZooError, match=r"ids must lie in \[0, 16\)"):
        tok.decode(torch.full((1, 4, 4), 16))
    with pytest.raises(ZooError, match="channel_mult"):
        tiny(channel_mult=[1, 1, 1, 1, 1, 1])
    with pytest.raises(ZooError, match="unknown option"):
        tiny(loss={"l3": 1.0})
    with pytest.raises(ZooError, match="perceptual_weights"):
        tiny(loss={"perceptual": 1.0})
    with pytest.raises(ZooError, match="batch has no 'image'"):
        tok.training_losses({"audio": torch.zeros(1, 10)}, 0)


def test_seeded_init_and_save_load_round_trip(tmp_path):
    a, b, c = tiny(), tiny(), tiny(seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.encoder.conv_in.weight, c.encoder.conv_in.weight)
    a.train().training_losses({"image": torch.rand(4, 3, 16, 16)}, 0)  # k-means init changes the codebook
    a.eval().save_pretrained(tmp_path / "tok")
    loaded = VQTokenizer.from_pretrained(tmp_path / "tok").eval()
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(a.encode(x), loaded.encode(x))
    assert loaded.config == a.config


def test_training_reduces_the_reconstruction_loss():
    torch.manual_seed(0)
    tok = tiny().train()
    optimizer = torch.optim.Adam(tok.parameters(), lr=3e-3)
    x = torch.rand(4, 3, 16, 16)
    first = None
    for step in range(25):
        losses = tok.training_losses({"image": x}, step).losses
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        first = first if first is not None else losses["l1"].item()
    assert losses["l1"].item() < 0.7 * first
    assert set(losses) >= {"l1", "l2", "commitment", "loss"}


def test_perturbation_feeds_the_decoder_but_quantiser_losses_stay_clean():
    perturb = {"alpha": 1.0, "beta": 0.5, "delta": 4, "anneal_start": 0, "anneal_end": 0}
    plain, robust = tiny().train(), tiny(perturbation=perturb).train()
    robust.load_state_dict(plain.state_dict())
    x = torch.rand(4, 3, 16, 16)
    for model in (plain, robust):  # the same k-means init for both
        torch.manual_seed(0)
        model.training_losses({"image": x}, 0)
    torch.manual_seed(1)
    clean = plain.training_losses({"image": x}, 1)
    torch.manual_seed(1)
    perturbed = robust.training_losses({"image": x}, 1)
    assert torch.allclose(clean.losses["commitment"], perturbed.losses["commitment"])
    assert torch.equal(clean.indices, perturbed.indices)
    # Only the first floor(4 * 0.5) = 2 images are decoded from perturbed codes.
    assert not torch.allclose(clean.output[:2], perturbed.output[:2])
    assert torch.allclose(clean.output[2:], perturbed.output[2:], atol=1e-6)
    assert perturbed.extras["perturbed_token_rate"] > 0
    # anneal_end 0: the ratio is end_ratio (0.5) from step 0, so alpha 0.5 and delta 2.
    assert perturbed.extras["perturb_alpha"] == 0.5 and perturbed.extras["perturb_delta"] == 2
    # Evaluation (forward) never perturbs.
    robust.eval()
    assert torch.allclose(robust(x).output, plain.eval()(x).output, atol=1e-6)


def test_gan_starts_at_its_step_and_keeps_generator_gradients_off_the_discriminator():
    tok = tiny(loss={"gan": 0.5, "gan_start": 3, "disc_channels": 8, "disc_layers": 2}).train()
    batch = {"image": torch.rand(2, 3, 16, 16)}
    before = tok.training_losses(batch, 2)
    assert "gan" not in before.losses and tok.discriminator_losses(batch, before, 2) == {}
    after = tok.training_losses(batch, 3)
    assert {"gan", "gan_adaptive_weight"} <= set(after.losses) and float(after.losses["gan_adaptive_weight"]) > 0
    after.losses["loss"].backward()
    assert all(p.grad is None for p in tok.discriminator.parameters())
    assert tok.decoder.conv_out.weight.grad is not None
    disc = tok.discriminator_losses(batch, after, 3)
    disc["loss"].backward()
    assert all(p.grad is not None for p in tok.discriminator.parameters())
    assert tok.encoder.conv_in.weight.grad is None or tok.encoder.conv_in.weight.grad.abs().sum() > 0


def test_adaptive_weight_is_the_gradient_norm_ratio():
    last = torch.tensor([1.0, 2.0], requires_grad=True)
    rec = (3.0 * last).sum()  # grad (3, 3), norm 3 * sqrt(2)
    gan = (last * torch.tensor([0.0, 1.0])).sum()  # grad (0, 1), norm 1
    weight = adaptive_gan_weight(rec, gan, last, max_weight=100.0)
    assert float(weight) == pytest.approx(3 * 2**0.5 / (1 + 1e-4), rel=1e-5)
    assert float(adaptive_gan_weight(rec, gan, last, max_weight=2.0)) == 2.0


def test_perceptual_loss_from_a_local_file(vgg16_file, tmp_path):
    loss = PerceptualLoss(vgg16_file)
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    assert float(loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(x, y)) > 0 and all(not p.requires_grad for p in loss.parameters())
    tok = tiny(loss={"perceptual": 1.0, "perceptual_weights": str(vgg16_file)}).train()
    out = tok.training_losses({"image": torch.rand(2, 3, 32, 32)}, 0)
    assert float(out.losses["perceptual"]) > 0
    assert not any("features" in key for key in tok.state_dict())  # VGG stays out of the checkpoint
    with pytest.raises(ZooError, match="does not exist"):
        PerceptualLoss(tmp_path / "missing.safetensors")
    save_file({"features.0.weight": torch.zeros(64, 3, 3, 3)}, str(tmp_path / "partial.safetensors"))
    with pytest.raises(ZooError, match="lacks VGG16 tensors"):
        PerceptualLoss(tmp_path / "partial.safetensors")


def test_lfq_entropy_term_enters_the_total():
    tok = tiny(quantizer={"kind": "lfq", "bits": 4}, loss={"entropy": 0.0, "commitment": 0.0}).train()
    weighted = tiny(quantizer={"kind": "lfq", "bits": 4}, loss={"entropy": 1.0, "commitment": 0.0}).train()
    x = torch.rand(2, 3, 16, 16)
    a, b = tok.training_losses({"image": x}, 0).losses, weighted.training_losses({"image": x}, 0).losses
    assert float(b["loss"] - a["loss"]) == pytest.approx(float(b["entropy"]), rel=1e-4, abs=1e-5)
