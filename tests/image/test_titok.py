"""TiTok-style 1D tokenizer: K latent tokens for any K, encode/decode = forward, global tokens, checks, training."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.errors import ZooError
from zoo.image.titok import TiTokTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

VQ = {"kind": "vq", "codebook_size": 32, "code_dim": 4}


def tiny(**overrides) -> TiTokTokenizer:
    config = dict(image_size=16, patch_size=4, width=32, encoder_depth=1, decoder_depth=1, heads=2,
                  num_latent_tokens=16, quantizer=VQ)
    return TiTokTokenizer(**{**config, **overrides}).eval()


def images(batch: int = 3, side: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("tokens", [16, 32, 64])
def test_k_latent_tokens_whatever_the_patch_count(tokens):
    tok = tiny(num_latent_tokens=tokens)  # 16 patches: K may be below, equal to or above the patch count
    ids = tok.encode(images())
    assert ids.shape == (3, tokens) and ids.dtype == torch.long
    assert 0 <= int(ids.min()) and int(ids.max()) < tok.vocab_size
    assert tok.embed(ids).shape == (3, tokens, 4)
    assert torch.equal(tok.embed(ids), tok.codebook[ids])  # embed is the codebook lookup
    recon = tok.decode(ids)
    assert recon.shape == (3, 3, 16, 16) and 0 <= recon.min() and recon.max() <= 1


def test_encode_decode_is_the_forward_path():
    tok, x = tiny(), images()
    with torch.no_grad():
        out = tok(x)
    assert torch.equal(out.indices, tok.encode(x))
    torch.testing.assert_close(tok.decode(out.indices), out.output.clamp(0, 1), atol=1e-6, rtol=0)


def test_tokens_are_global_not_patches():
    """Every latent token reads every patch: changing one corner patch moves latents far from that corner."""
    tok, x = tiny(num_latent_tokens=8), images(1)
    y = x.clone()
    y[:, :, :4, :4] = 1.0 - y[:, :, :4, :4]
    with torch.no_grad():
        moved = (tok.encode_latent(x) - tok.encode_latent(y)).abs().amax(dim=(0, 1, 2))  # per latent token [L]
    assert bool((moved > 1e-4).all())


def test_bad_inputs_are_refused_with_what_was_expected():
    tok = tiny()
    with pytest.raises(ZooError, match="16x16"):
        tok.encode(images(side=32))
    with pytest.raises(ZooError, match=r"\[B, 16\]"):
        tok.decode(torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ZooError, match=r"\[0, 32\)"):
        tok.decode(torch.full((2, 16), 32))
    with pytest.raises(ZooError, match="multiple of patch_size"):
        tiny(image_size=18)
    with pytest.raises(ZooError, match="rvq"):
        tiny(quantizer={"kind": "rvq", "codebook_size": 8, "code_dim": 4, "levels": 2})
    with pytest.raises(ZooError, match="num_latent_tokens"):
        tiny(num_latent_tokens=0)


@pytest.mark.parametrize("quantizer", [{"kind": "fsq", "levels": [5, 4, 3]}, {"kind": "lfq", "bits": 6}])
def test_any_single_level_quantiser(quantizer):
    tok = tiny(quantizer=quantizer)
    ids = tok.encode(images())
    assert ids.shape == (3, 16) and int(ids.max()) < tok.vocab_size
    assert tok.decode(ids).shape == (3, 3, 16, 16)


def test_save_and_load_round_trip(tmp_path):
    tok, x = tiny(seed=3), images()
    tok.save_pretrained(tmp_path / "t")
    again = zoo.load(tmp_path / "t").eval()
    assert torch.equal(again.encode(x), tok.encode(x))
    assert torch.equal(again.decode(tok.encode(x)), tok.decode(tok.encode(x)))


def test_training_reduces_the_reconstruction_loss_and_the_gan_phase_runs():
    torch.manual_seed(0)
    tok = tiny(loss={"gan": 0.1, "gan_start": 20, "disc_channels": 8, "disc_layers": 2}).train()
    # Smooth images (4x4 random colours upsampled): something a 16-token code can learn in a few steps.
    x = torch.nn.functional.interpolate(images(8, side=4), size=16, mode="bilinear", align_corners=False)
    optimizer = torch.optim.Adam([p for n, p in tok.named_parameters() if not n.startswith("discriminator")], 3e-3)
    first = None
    for step in range(60):
        losses = tok.training_losses({"image": x}, step).losses
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        first = first if first is not None else float(losses["l2"].detach())
    assert float(losses["l2"].detach()) < 0.7 * first
    assert "gan" in losses and float(losses["gan_adaptive_weight"]) > 0  # the adaptive weight read conv_out


def test_shipped_entry_reconstructs_fashion_mnist():
    entry = zoo.registry.get("titok-fmnist")
    if entry.weights is None:
        pytest.skip("titok-fmnist ships no weights yet")
    from zoo.data import load_dataset

    tok = zoo.load("titok-fmnist", pretrained=True)
    data = load_dataset("fashion-mnist:split=test,size=32")
    x = torch.stack([data[i]["image"] for i in range(64)])
    recon = tok.decode(tok.encode(x))
    psnr = 10 * torch.log10(1.0 / (recon - x).square().mean(dim=(1, 2, 3)))
    assert float(psnr.mean()) > 15.0  # trained, not random (an untrained model scores about 8 dB)


@pytest.mark.parametrize("recipe, tokens", [("titok-imagenet", 32), ("seed-imagenet", 32)])
def test_paper_scale_recipes_build_at_their_resolution_and_token_count(recipe, tokens):
    """The paper-scale configs, narrowed to one small block per stack (their keys, sides, patches, codes kept)."""
    from pathlib import Path

    from zoo.targets import import_target
    from zoo.train.recipe import load_recipe

    model = load_recipe(Path(__file__).resolve().parents[2] / f"recipes/image/{recipe}.yaml").stages[0].model
    config = {**model.config, "width": 32, "heads": 2, "mlp_ratio": 1.0,
              "loss": {**model.config["loss"], "perceptual": 0.0, "perceptual_weights": None, "gan": 0.0}}
    config.update({key: 1 for key in config if key.endswith("_depth")})
    tok = import_target(model.target)(**config).eval()
    side = config["image_size"]
    ids = tok.encode(torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)))
    assert ids.shape == (1, tokens) and tok.vocab_size == config["quantizer"]["codebook_size"]
    assert tok.decode(ids).shape == (1, 3, side, side)
