"""SEED-style tokenizer: causal tokens (a prefix never depends on later queries), both heads, checks, training."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.errors import ZooError
from zoo.image.seed import SEEDTokenizer
from zoo.image.seed.qformer import CausalQFormer

pytestmark = pytest.mark.usefixtures("one_thread")

VQ = {"kind": "vq", "codebook_size": 32, "code_dim": 4}


def tiny(**overrides) -> SEEDTokenizer:
    config = dict(image_size=16, patch_size=4, width=32, encoder_depth=1, qformer_depth=2, decoder_depth=1, heads=2,
                  num_queries=12, num_classes=4, quantizer=VQ)
    return SEEDTokenizer(**{**config, **overrides}).eval()


def images(batch: int = 3, side: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cut", [1, 5, 11])
def test_token_i_depends_only_on_queries_up_to_i(cut):
    tok, x = tiny(), images()
    before_latent, before_ids = tok.encode_latent(x).detach(), tok.encode(x)
    with torch.no_grad():
        tok.qformer.queries[cut:] += torch.randn_like(tok.qformer.queries[cut:])  # perturb the later queries
    after_latent, after_ids = tok.encode_latent(x).detach(), tok.encode(x)
    assert torch.equal(after_ids[:, :cut], before_ids[:, :cut])  # earlier ids unchanged
    assert torch.equal(after_latent[..., :cut], before_latent[..., :cut])  # bit-exact, not only the argmin
    assert float((after_latent[..., cut:] - before_latent[..., cut:]).abs().max()) > 1e-3  # the later ones moved


def test_later_tokens_do_depend_on_earlier_queries():
    """The mask is lower-triangular, not diagonal: perturbing query 0 moves every later output."""
    qformer = CausalQFormer(num_queries=6, width=16, depth=2, heads=2, mlp_ratio=2.0).eval()
    patches = torch.randn(2, 9, 16, generator=torch.Generator().manual_seed(1))
    before = qformer(patches).detach()
    with torch.no_grad():
        # A random direction, not a constant shift: LayerNorm would remove that.
        qformer.queries[0] += torch.randn(16, generator=torch.Generator().manual_seed(2))
    moved = (qformer(patches) - before).abs().amax(dim=(0, 2))  # [L]
    assert bool((moved > 1e-4).all())


def test_every_token_reads_the_image():
    tok = tiny()
    x = images(1)
    y = x.clone()
    y[:, :, -4:, -4:] = 1.0 - y[:, :, -4:, -4:]  # only the last patch changes
    moved = (tok.encode_latent(x) - tok.encode_latent(y)).detach().abs().amax(dim=(0, 1, 2))
    assert bool((moved > 1e-5).all())  # query 0 too: cross-attention is not masked


def test_contract_shapes_and_heads():
    tok, x = tiny(), images()
    ids = tok.encode(x)
    assert ids.shape == (3, 12) and ids.dtype == torch.long
    assert tok.embed(ids).shape == (3, 12, 4)
    assert tok.decode(ids).shape == x.shape
    assert tok.classify(ids).shape == (3, 4)
    with torch.no_grad():
        out = tok(x)
    assert torch.equal(out.indices, ids)
    torch.testing.assert_close(tok.decode(ids), out.output.clamp(0, 1), atol=1e-6, rtol=0)
    assert "discrimination" not in out.losses  # no labels, no discrimination term
    torch.testing.assert_close(tok.classify(ids), out.extras["logits"], atol=1e-6, rtol=0)


def test_bad_inputs_are_refused():
    tok = tiny()
    with pytest.raises(ZooError, match="16x16"):
        tok.encode(images(side=8))
    with pytest.raises(ZooError, match=r"\[B, 12\]"):
        tok.decode(torch.zeros(2, 11, dtype=torch.long))
    with pytest.raises(ZooError, match=r"labels must be \[B\] integers in \[0, 4\)"):
        tok.training_losses({"image": images(), "label": torch.tensor([0, 1, 4])}, step=0)
    with pytest.raises(ZooError, match="num_classes"):
        tiny(num_classes=1)
    with pytest.raises(ZooError, match="heads dividing width"):
        CausalQFormer(num_queries=4, width=10, depth=1, heads=3, mlp_ratio=2.0)


def test_training_learns_both_heads(tmp_path):
    torch.manual_seed(0)
    tok = tiny().train()
    # Four classes of smooth images, each a different colour field: labels a linear head can learn.
    base = torch.nn.functional.interpolate(images(4, side=2), size=16, mode="bilinear", align_corners=False)
    labels = torch.arange(4).repeat(3)
    x = (base[labels] + 0.05 * images(12)).clamp(0, 1)
    optimizer = torch.optim.Adam(tok.parameters(), 3e-3)
    history = []
    for step in range(60):
        losses = tok.training_losses({"image": x, "label": labels}, step).losses
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    assert history[-1]["l2"] < 0.5 * history[0]["l2"]
    assert history[-1]["discrimination"] < 0.5 * history[0]["discrimination"]
    tok.eval()
    assert float((tok.classify(tok.encode(x)).argmax(-1) == labels).float().mean()) == 1.0
    tok.save_pretrained(tmp_path / "seed")
    again = zoo.load(tmp_path / "seed")
    assert torch.equal(again.encode(x), tok.encode(x))


def test_shipped_entry_classifies_and_reconstructs_fashion_mnist():
    if zoo.registry.get("seed-fmnist").weights is None:
        pytest.skip("seed-fmnist ships no weights yet")
    from zoo.data import load_dataset

    tok = zoo.load("seed-fmnist", pretrained=True)
    data = load_dataset("fashion-mnist:split=test,size=32")
    items = [data[i] for i in range(200)]
    x = torch.stack([item["image"] for item in items])
    labels = torch.tensor([int(item["label"]) for item in items])
    ids = tok.encode(x)
    accuracy = float((tok.classify(ids).argmax(-1) == labels).float().mean())
    assert accuracy > 0.6  # chance is 0.1
    psnr = 10 * torch.log10(1.0 / (tok.decode(ids) - x).square().mean(dim=(1, 2, 3)))
    assert float(psnr.mean()) > 13.0
