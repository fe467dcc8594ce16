"""Zero-TPrune: Weighted PageRank by hand, EIR / VHF, the I' -> S -> I selection, the timm ViT wrapper and its FLOPs."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.errors import ZooError
from zoo.image.prune import TokenPrunedViT, ViTClassifier
from zoo.image.prune.importance import (
    combine_heads,
    random_select,
    topk_attention_select,
    weighted_pagerank,
    zero_tprune_select,
)
from zoo.image.prune.vit import attention_with_probabilities, pruned_accuracy

pytestmark = pytest.mark.usefixtures("one_thread")


def random_attention(batch=2, heads=3, n=9, seed=0) -> torch.Tensor:
    logits = torch.randn(batch, heads, n, n, generator=torch.Generator().manual_seed(seed))
    return logits.softmax(dim=-1)


def test_weighted_pagerank_by_hand():
    # Three tokens; every token sends all its attention to token 2, token 2 splits its attention between 0 and 1.
    attn = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])[None, None]
    one = weighted_pagerank(attn, iterations=1, cls_boost=False)[0, 0]
    torch.testing.assert_close(one, torch.tensor([1 / 6, 1 / 6, 2 / 3]))  # s_j = sum_i A_ij / 3
    two = weighted_pagerank(attn, iterations=2, cls_boost=False)[0, 0]
    torch.testing.assert_close(two, torch.tensor([1 / 3, 1 / 3, 1 / 3]))  # token 2 passes its 2/3 on
    # CLS boost: token 0 starts at sqrt(3) times the others, then the scores are normalised.
    boosted = weighted_pagerank(attn, iterations=1, cls_boost=True)[0, 0]
    start = torch.tensor([math.sqrt(3), 1.0, 1.0]) / (math.sqrt(3) + 2)
    torch.testing.assert_close(boosted, attn[0, 0].T @ start)


def test_pagerank_keeps_mass_and_converges_to_the_stationary_distribution():
    attn = random_attention()
    scores = weighted_pagerank(attn, iterations=200, cls_boost=True)
    torch.testing.assert_close(scores.sum(-1), torch.ones(2, 3))
    # The stationary distribution: the left eigenvector of A with eigenvalue 1.
    values, vectors = torch.linalg.eig(attn[0, 0].T.double())
    stationary = vectors[:, values.real.argmax()].real
    torch.testing.assert_close(scores[0, 0].double(), stationary / stationary.sum(), atol=1e-6, rtol=0)


def test_heads_combine_by_root_mean_square_and_the_variance_filter_drops_heads():
    scores = torch.tensor([[[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]]])  # [B=1, H=2, N=4]
    rms = combine_heads(scores)
    torch.testing.assert_close(rms, ((scores**2).mean(dim=1)).sqrt())
    assert float(rms[0, 0]) > float(scores[0, :, 0].mean())  # RMS favours the token one head finds strong
    # N * s has variance 0 for the uniform head and 1.44 for the other: a filter [0.5, 2] keeps the first head only.
    torch.testing.assert_close(combine_heads(scores, (0.5, 2.0)), scores[:, 0])
    # No head passes: all heads are used.
    torch.testing.assert_close(combine_heads(scores, (5.0, 6.0)), rms)


def test_similarity_stage_drops_duplicates_of_important_tokens():
    """Token 1 is the most important patch, token 4 is its near-copy in the lower half: S drops the copy."""
    n, heads, d = 7, 2, 4
    attn = torch.full((1, heads, n, n), 0.02)
    attn[..., 1] = 0.5
    attn[..., 2] = 0.3
    attn = attn / attn.sum(-1, keepdim=True)
    keys = torch.randn(1, heads, n, d, generator=torch.Generator().manual_seed(0))
    keys[:, :, 4] = keys[:, :, 1] + 1e-3
    kept = zero_tprune_select(attn, keys, n_keep=5, similarity_share=1.0)
    assert kept.shape == (1, 6) and int(kept[0, 0]) == 0
    assert 4 not in kept[0].tolist() and 1 in kept[0].tolist()
    # Importance alone (S off) cannot tell the copy from the other unattended patches: it is a tie there.
    ranked = zero_tprune_select(attn, keys, n_keep=2, similarity_share=0.0)
    assert set(ranked[0].tolist()) == {0, 1, 2}


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_selectors_keep_cls_and_return_sorted_distinct_indices(share):
    attn = random_attention(n=17)
    keys = torch.randn(2, 3, 17, 8, generator=torch.Generator().manual_seed(1))
    for kept in (zero_tprune_select(attn, keys, 10, similarity_share=share), topk_attention_select(attn, keys, 10),
                 random_select(attn, keys, 10, generator=torch.Generator().manual_seed(0))):
        assert kept.shape == (2, 11) and bool((kept[:, 0] == 0).all())
        assert bool((kept[:, 1:].diff(dim=1) > 0).all()) and int(kept.max()) < 17
    with pytest.raises(ZooError, match="between 1 and 16"):
        zero_tprune_select(attn, keys, 17)


def test_topk_attention_keeps_what_cls_attends_to():
    attn = random_attention(batch=1, n=9)
    kept = topk_attention_select(attn, None, 3)
    expected = attn[0, :, 0, 1:].mean(0).topk(3).indices.sort().values + 1
    assert kept[0, 1:].tolist() == expected.tolist()


@pytest.fixture(scope="module")
def classifier():
    return ViTClassifier(image_size=16, patch_size=4, width=32, depth=4, heads=4, num_classes=5).eval()


def test_explicit_attention_matches_timm(classifier):
    block = classifier.vit.blocks[0]
    x = torch.randn(2, 17, 32, generator=torch.Generator().manual_seed(0))
    out, probs, keys = attention_with_probabilities(block.attn, x)
    torch.testing.assert_close(out, block.attn(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4, 17))


def test_wrapper_without_pruning_is_the_vit(classifier):
    x = classifier.prepare(torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        reference = classifier.vit(x)
    for method in ("zero-tprune", "random", "topk-attention", "none"):
        torch.testing.assert_close(TokenPrunedViT(classifier.vit, 1.0, method=method)(x), reference,
                                   atol=1e-5, rtol=0)


def test_pruning_schedule_flops_and_output(classifier):
    x = classifier.prepare(torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    full = TokenPrunedViT(classifier.vit, 1.0, method="none")
    pruned = TokenPrunedViT(classifier.vit, 0.5, layers=[1, 2], method="zero-tprune", iterations=3)
    assert pruned.token_schedule(16) == [16, 16, 8, 4, 4]
    # Hand count for the unpruned ViT (16 patches + CLS, width 32, MLP 128, 4 blocks, 5 classes).
    n, w = 17, 32
    block = 4 * n * w * w + 2 * n * n * w + 2 * n * w * 128
    assert full.flops() == 16 * 3 * 32 * 16 + 4 * block + w * 5
    assert pruned.flops() < 0.75 * full.flops()
    assert TokenPrunedViT(classifier.vit, 0.5, layers=[1, 2], method="random").flops() < pruned.flops()  # no WPR
    logits = pruned(x)
    assert logits.shape == (3, 5) and bool(torch.isfinite(logits).all())
    labels = logits.argmax(-1)
    assert pruned_accuracy(pruned, x, labels) == 1.0


def test_random_pruning_is_seeded(classifier):
    x = classifier.prepare(torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    a = TokenPrunedViT(classifier.vit, 0.5, method="random", seed=1)(x)
    b = TokenPrunedViT(classifier.vit, 0.5, method="random", seed=1)(x)
    c = TokenPrunedViT(classifier.vit, 0.5, method="random", seed=2)(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_settings_are_refused(classifier):
    with pytest.raises(ZooError, match="keep_ratio"):
        TokenPrunedViT(classifier.vit, 0.0)
    with pytest.raises(ZooError, match="method"):
        TokenPrunedViT(classifier.vit, 0.5, method="tome")
    with pytest.raises(ZooError, match=r"\[0, 4\)"):
        TokenPrunedViT(classifier.vit, 0.5, layers=[4])
    with pytest.raises(ZooError, match="timm VisionTransformer"):
        TokenPrunedViT(torch.nn.Linear(2, 2), 0.5)
    with pytest.raises(ZooError, match="16x16"):
        classifier.prepare(torch.rand(1, 3, 32, 32))
