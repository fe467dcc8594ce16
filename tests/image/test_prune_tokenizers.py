"""Zero-TPrune in TiTok's and SEED's encoders: identity at keep 1.0, latents / queries kept, shapes, seeds, FLOPs."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.errors import ZooError
from zoo.image.prune.tokenizers import (
    METHODS,
    PrunedBlocks,
    PrunedLatentEncoder,
    default_layers,
    encoder_flops,
    prune_encoder,
    token_schedule,
)
from zoo.image.seed import SEEDTokenizer
from zoo.image.titok import TiTokTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

VQ = {"kind": "vq", "codebook_size": 32, "code_dim": 4}


def titok(**overrides) -> TiTokTokenizer:
    config = dict(image_size=16, patch_size=4, width=32, encoder_depth=2, decoder_depth=1, heads=2,
                  num_latent_tokens=8, quantizer=VQ)
    return TiTokTokenizer(**{**config, **overrides}).eval()


def seed_tokenizer(**overrides) -> SEEDTokenizer:
    config = dict(image_size=16, patch_size=4, width=32, encoder_depth=2, qformer_depth=1, decoder_depth=1, heads=2,
                  num_queries=6, num_classes=4, quantizer=VQ)
    return SEEDTokenizer(**{**config, **overrides}).eval()


def images(batch: int = 3, side: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(seed))


def block_inputs(module: torch.nn.Module) -> list[torch.Tensor]:
    """Record the input of every timm block under ``module`` that is called as a module (hooks; the caller runs the
    forward): a pruning block runs its pieces one by one, so only the blocks after it are recorded."""
    seen: list[torch.Tensor] = []
    for block in module.modules():
        if type(block).__name__ == "Block":
            block.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    return seen


@pytest.mark.parametrize("build", [titok, seed_tokenizer])
@pytest.mark.parametrize("method", METHODS)
def test_keep_ratio_one_gives_identical_ids_and_leaves_the_original_alone(build, method):
    tok = build()
    x = images()
    pruned = prune_encoder(tok, 1.0, layers=[0, 1], method=method)
    assert torch.equal(pruned.encode(x), tok.encode(x))
    assert token_schedule(pruned) == [16, 16, 16] and encoder_flops(pruned) == encoder_flops(tok)
    assert not isinstance(tok.encoder, (PrunedBlocks, PrunedLatentEncoder))  # a copy was pruned
    assert sorted(pruned.state_dict()) == sorted(tok.state_dict())  # same weights under the same names


@pytest.mark.parametrize("name", ["titok-fmnist", "seed-fmnist"])
def test_shipped_entries_identical_at_one_and_pruned_below(name):
    from zoo.data import load_dataset

    tok = zoo.load(name, pretrained=True).eval()
    data = load_dataset("fashion-mnist:split=test,size=32")
    x = torch.stack([data[i]["image"] for i in range(8)])
    ids = tok.encode(x)
    assert torch.equal(prune_encoder(tok, 1.0).encode(x), ids)
    pruned = prune_encoder(tok, 0.5)
    half = pruned.encode(x)
    assert half.shape == ids.shape == (8, 64) and not torch.equal(half, ids)
    assert pruned.decode(half).shape == x.shape
    assert encoder_flops(pruned) < encoder_flops(tok)


@pytest.mark.parametrize("method", METHODS)
def test_titok_latent_tokens_are_never_pruned(method):
    tok = titok()
    x = images()
    pruned = prune_encoder(tok, 0.5, layers=[0], method=method)  # before the hooks: a deep copy would take them
    full, cut = block_inputs(tok.encoder), block_inputs(pruned.encoder)
    tok.encode(x), pruned.encode(x)
    # Block 1 reads 8 of the 16 patches and all 8 latents (at the end); block 0's attention saw everything, so
    # every row entering block 1 is one of the unpruned model's rows there, the latents in place.
    assert len(full) == 2 and len(cut) == 1  # block 0 pruned, block 1 recorded
    assert full[1].shape == (3, 24, 32) and cut[0].shape == (3, 16, 32)
    torch.testing.assert_close(cut[0][:, -8:], full[1][:, -8:], atol=1e-5, rtol=1e-5)
    distance = torch.cdist(cut[0][:, :8], full[1][:, :16])  # [B, kept, all patches]
    assert float(distance.amin(dim=-1).max()) < 1e-4
    assert pruned.encode(x).shape == (3, 8)


@pytest.mark.parametrize("method", METHODS)
def test_seed_queries_keep_their_count_and_read_fewer_patches(method):
    tok = seed_tokenizer()
    x = images()
    memories: list[torch.Tensor] = []
    pruned = prune_encoder(tok, 0.5, layers=[1], method=method)
    pruned.qformer.register_forward_pre_hook(lambda _, args: memories.append(args[0]))
    with torch.no_grad():
        assert pruned.causal_embeddings(x).shape == (3, 6, 32)  # all six queries
    assert memories[0].shape == (3, 8, 32)  # 8 of the 16 patch features
    with torch.no_grad():
        full = tok.encoder_norm(tok.encoder(tok.patch_embed(x)))
    distance = torch.cdist(memories[0], full)  # the pruned block's attention saw all patches: kept rows match
    assert float(distance.amin(dim=-1).max()) < 1e-4
    assert pruned.encode(x).shape == (3, 6)


@pytest.mark.parametrize("method", METHODS)
def test_deterministic_by_seed(method):
    tok = titok()
    x = images(batch=4)
    first = prune_encoder(tok, 0.5, layers=[0], method=method, seed=3).encode(x)
    assert torch.equal(first, prune_encoder(tok, 0.5, layers=[0], method=method, seed=3).encode(x))
    if method == "random":
        chosen = []
        for seed in (0, 1):
            seen = block_inputs(pruned := prune_encoder(tok, 0.5, layers=[0], method=method, seed=seed))
            pruned.encode(x)
            chosen.append(seen[-1])
        assert not torch.equal(chosen[0], chosen[1])  # another seed, other patches


def test_token_schedule_and_flops_by_hand():
    # 8x8 image, 4x4 patches: 4 patches + 2 latents of width 8, 2 heads, MLP 32, code_dim 4.
    tok = TiTokTokenizer(image_size=8, patch_size=4, width=8, encoder_depth=2, decoder_depth=1, heads=2,
                         num_latent_tokens=2, quantizer=VQ).eval()
    embed = 4 * 3 * 8 * 16
    block = lambda n_in, n_out: 4 * n_in * 64 + 2 * n_in * n_in * 8 + 2 * n_out * 8 * 32  # noqa: E731
    assert encoder_flops(tok) == embed + 2 * block(6, 6) + 2 * 8 * 4
    pruned = prune_encoder(tok, 0.5, layers=[0], method="random")
    assert token_schedule(pruned) == [4, 2, 2]
    assert encoder_flops(pruned) == embed + block(6, 4) + block(4, 4) + 2 * 8 * 4  # random selection costs nothing
    topk = prune_encoder(tok, 0.5, layers=[0], method="topk")
    assert encoder_flops(topk) == encoder_flops(pruned) + 2 * 6 * 6  # heads x n^2 means


def test_default_layers_are_the_later_blocks_where_pruning_changes_the_ids():
    assert default_layers(titok()) == [0]  # TiTok's last block: its attention already made the latents
    assert default_layers(titok(encoder_depth=6)) == [2, 3, 4]
    assert default_layers(seed_tokenizer()) == [1]
    assert default_layers(seed_tokenizer(encoder_depth=6)) == [3, 4, 5]


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.5, float("nan"), "0.5", True])
def test_bad_keep_ratio_is_refused(ratio):
    with pytest.raises(ZooError, match=r"keep_ratio must be a number in \(0, 1\]"):
        prune_encoder(titok(), ratio)


def test_bad_method_layers_and_model_are_refused():
    with pytest.raises(ZooError, match="method must be one of"):
        prune_encoder(titok(), 0.5, method="topk-attention")
    with pytest.raises(ZooError, match=r"layers must be block indices in \[0, 2\)"):
        prune_encoder(seed_tokenizer(), 0.5, layers=[2])
    with pytest.raises(ZooError, match="expected a TiTokTokenizer or SEEDTokenizer"):
        prune_encoder(torch.nn.Linear(2, 2), 0.5)
