"""PixelAutoencoder: the loss, the GAN phases and the option checks that VQTokenizer and TokenFlowTokenizer share."""

from __future__ import annotations

import pytest
import torch

from zoo.errors import ZooError
from zoo.image.classifier import ImageClassifier
from zoo.image.tokenflow.model import TokenFlowTokenizer
from zoo.image.vq.autoencoder import PixelAutoencoder
from zoo.image.vq.model import VQTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

GAN = {"gan": 0.5, "gan_start": 3, "disc_channels": 8, "disc_layers": 2}
PIXEL = {"channels": 8, "channel_mult": [1, 2, 2], "z_channels": 8, "attention": False}


@pytest.fixture(scope="module")
def teacher_folder(tmp_path_factory):
    """A seeded classifier checkpoint as TokenFlow's teacher (16-d features on a 4x4 grid of 16x16 images)."""
    folder = tmp_path_factory.mktemp("teacher") / "classifier"
    ImageClassifier(num_classes=10, channels=8, channel_mult=[1, 2, 2], num_res_blocks=1, dropout=0.0,
                    label_smoothing=0.0, seed=0).save_pretrained(folder)
    return folder


def build(family: str, teacher_folder, **loss) -> PixelAutoencoder:
    if family == "vq":
        return VQTokenizer(**PIXEL, quantizer={"kind": "vq", "codebook_size": 16, "code_dim": 4}, loss=loss)
    return TokenFlowTokenizer(**PIXEL, codebook_size=16, semantic_dim=4, pixel_dim=4, teacher=str(teacher_folder),
                              teacher_dim=16, semantic_decoder={"width": 16, "depth": 1, "heads": 2}, loss=loss)


FAMILIES = ["vq", "tokenflow"]


@pytest.mark.parametrize("family", FAMILIES)
def test_both_families_share_the_gan_phases(family, teacher_folder):
    torch.manual_seed(0)
    tok = build(family, teacher_folder, **GAN).train()
    batch = {"image": torch.rand(2, 3, 16, 16)}
    before = tok.training_losses(batch, 2)
    assert "gan" not in before.losses and tok.discriminator_losses(batch, before, 2) == {}
    after = tok.training_losses(batch, 3)
    assert {"gan", "gan_adaptive_weight"} <= set(after.losses)
    after.losses["loss"].backward()
    # The generator's term leaves the discriminator without gradients, and its requires_grad as it was.
    assert all(p.grad is None and p.requires_grad for p in tok.discriminator.parameters())
    disc = tok.discriminator_losses(batch, after, 3)
    assert set(disc) == {"loss", "logits_real", "logits_fake"}
    disc["loss"].backward()
    assert all(p.grad is not None for p in tok.discriminator.parameters())
    # Outside training (eval mode, or forward with no step) the GAN rests.
    assert "gan" not in tok.eval().training_losses(batch, 3).losses and "gan" not in tok(batch["image"]).losses
    assert tok.discriminator_losses(batch, after, 3) == {}


@pytest.mark.parametrize("family", FAMILIES)
def test_the_total_is_every_term_times_its_weight(family, teacher_folder):
    torch.manual_seed(0)
    weights = {"l1": 0.5, "l2": 2.0, "commitment": 3.0, **GAN, "gan_start": 0}
    tok = build(family, teacher_folder, **weights).train()
    losses = tok.training_losses({"image": torch.rand(2, 3, 16, 16)}, 0).losses
    family_terms = set(losses) - {"l1", "l2", "gan", "gan_adaptive_weight", "loss"}
    assert family_terms == ({"commitment"} if family == "vq" else {"commitment", "codebook", "semantic"})
    expected = sum(tok.loss_weights[name] * losses[name] for name in ["l1", "l2", *sorted(family_terms)])
    expected = expected + tok.loss_weights["gan"] * losses["gan_adaptive_weight"] * losses["gan"]
    assert torch.allclose(losses["loss"], expected, rtol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_options_are_checked_alike(family, teacher_folder):
    with pytest.raises(ZooError, match=r"loss: unknown option\(s\) \['gan_begin'\]"):
        build(family, teacher_folder, gan_begin=3)
    with pytest.raises(ZooError, match="loss.perceptual > 0 needs loss.perceptual_weights"):
        build(family, teacher_folder, perceptual=1.0)
    assert not hasattr(build(family, teacher_folder), "discriminator")  # built only when loss.gan > 0
