"""Latent perturbation on fixed codebooks: rates, neighbourhoods, which images, gradients, schedule."""

import math

import pytest
import torch

from zoo.errors import ZooError
from zoo.quantize import Quantizer
from zoo.quantize.perturb import (
    PerturbationSchedule,
    anneal_ratio,
    code_neighbours,
    latent_perturbation,
    nearest_codes,
    perturb_token_ids,
    perturbed_image_count,
)

K = 16


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def line_quantizer() -> Quantizer:
    """A Euclidean VQ whose 16 codes sit at (k, 0), so distances are easy to reason about. The codebook is
    learnable (no EMA), so forward passes leave it where it is."""
    quantizer = Quantizer({"kind": "vq", "codebook_size": K, "code_dim": 2, "l2_normalize": False,
                           "kmeans_init": False, "dead_code_threshold": 0.0, "ema": False})
    with torch.no_grad():
        quantizer.inner.codebook = torch.stack([torch.arange(K, dtype=torch.float), torch.zeros(K)], dim=1)
    return quantizer


def line_latents(batch: int, size: int = 8, generator_seed: int = 0) -> torch.Tensor:
    """Latents [B, 2, h, w] with first coordinate in [3, 12] (away from the codebook's ends), second 0."""
    g = torch.Generator().manual_seed(generator_seed)
    x = 3 + 9 * torch.rand(batch, 1, size, size, generator=g)
    return torch.cat([x, torch.zeros_like(x)], dim=1)


def test_nearest_codes_orders_by_distance_and_breaks_ties_by_id():
    codebook = torch.stack([torch.arange(K, dtype=torch.float), torch.zeros(K)], dim=1)
    ranked = nearest_codes(torch.tensor([[2.2, 0.0], [2.5, 0.0], [0.0, 0.0]]), codebook, 4)
    assert ranked.tolist() == [[2, 3, 1, 4], [2, 3, 1, 4], [0, 1, 2, 3]]
    with pytest.raises(ZooError, match="k must lie in"):
        nearest_codes(torch.zeros(1, 2), codebook, K + 1)


def test_nearest_codes_keeps_the_order_of_a_codebook_at_any_scale():
    # Distances of 1e-8 and below: a fixed number of decimals would call every code a tie and rank by id.
    codebook = torch.stack([torch.arange(K, dtype=torch.float), torch.zeros(K)], dim=1)
    for scale in (1e-6, 1.0, 1e4):
        ranked = nearest_codes(torch.tensor([[5.2 * scale, 0.0]]), codebook * scale, 4)
        assert ranked.tolist() == [[5, 6, 4, 7]], scale


def test_only_the_first_floor_b_beta_images_are_perturbed():
    quantizer = line_quantizer().train()
    z = line_latents(10)
    out = quantizer(z)
    result = latent_perturbation(quantizer, out, alpha=1.0, beta=0.35, delta=K, generator=seeded(1))
    assert result.num_perturbed_images == 3 == perturbed_image_count(10, 0.35)
    assert result.changed[:3].float().mean() > 0.8  # alpha=1, delta=K: only rank 0 (1/16) keeps a token
    assert not result.changed[3:].any()
    assert torch.equal(result.quantized[3:], out.quantized[3:])
    assert perturbed_image_count(100, 0.29) == 29 and perturbed_image_count(7, 0.1) == 0


def test_replacement_rate_is_alpha_times_one_minus_one_over_delta():
    quantizer = line_quantizer().train()
    out = quantizer(line_latents(100))
    alpha, delta = 0.3, 4
    result = latent_perturbation(quantizer, out, alpha, beta=1.0, delta=delta, generator=seeded(2))
    tokens = result.changed.numel()
    expected = alpha * (1 - 1 / delta)
    sigma = math.sqrt(expected * (1 - expected) / tokens)
    assert abs(result.changed.float().mean().item() - expected) < 4 * sigma


def test_replacements_come_from_the_delta_codes_nearest_to_the_encoder_output():
    quantizer = line_quantizer().train()
    z = line_latents(20)
    out = quantizer(z)
    delta = 3
    result = latent_perturbation(quantizer, out, alpha=1.0, beta=1.0, delta=delta, generator=seeded(3))
    x = z[:, 0]  # [B, h, w] position on the line
    ids = result.indices.float()
    # The 3 codes nearest to x are its own code c and c - 1, c + 1: every replacement is one of the latter two.
    assert ((ids - x).abs() <= 1.5).all()
    offsets = (result.indices - out.indices)[result.changed]
    assert set(offsets.unique().tolist()) == {-1, 1}
    # The decoded vectors are exactly the chosen codes.
    assert torch.allclose(result.quantized, quantizer.indices_to_codes(result.indices))
    # delta = 1 means the neighbourhood is the clean code alone: nothing changes.
    same = latent_perturbation(quantizer, out, alpha=1.0, beta=1.0, delta=1)
    assert not same.changed.any()


def test_ranks_are_uniform_over_the_neighbourhood():
    quantizer = line_quantizer().train()
    z = line_latents(200)
    out = quantizer(z)
    result = latent_perturbation(quantizer, out, alpha=1.0, beta=1.0, delta=4, generator=seeded(4))
    queries = out.queries[..., 0, :].reshape(-1, 2)
    ranking = nearest_codes(queries, quantizer.codebook, 4)
    ranks = (ranking == result.indices.reshape(-1, 1)).float().argmax(1)
    counts = torch.bincount(ranks, minlength=4).float() / ranks.numel()
    assert torch.allclose(counts, torch.full((4,), 0.25), atol=0.02)


def test_straight_through_gradient_reaches_the_latent_of_perturbed_images():
    quantizer = line_quantizer().train()
    z = line_latents(4).requires_grad_(True)
    out = quantizer(z)
    result = latent_perturbation(quantizer, out, alpha=1.0, beta=0.5, delta=4, generator=seeded(5))
    weights = torch.randn_like(result.quantized)
    (result.quantized * weights).sum().backward()
    # Value = perturbed code, gradient = identity into z (the latent is z for a Euclidean VQ).
    assert torch.allclose(z.grad, weights)
    assert result.quantized.requires_grad


def test_alpha_zero_or_beta_zero_is_the_clean_quantisation():
    quantizer = line_quantizer().train()
    out = quantizer(line_latents(4))
    for alpha, beta in ((0.0, 1.0), (1.0, 0.0)):
        result = latent_perturbation(quantizer, out, alpha, beta, delta=4)
        assert result.quantized is out.quantized and not result.changed.any()


@pytest.mark.parametrize("config", [{"kind": "fsq", "levels": [5, 5]}, {"kind": "lfq", "bits": 4},
                                    {"kind": "rvq", "codebook_size": 8, "code_dim": 2, "levels": 2}])
def test_implicit_and_residual_codebooks_work_through_the_same_plug_in(config):
    quantizer = Quantizer(config).train()
    out = quantizer(torch.randn(6, quantizer.code_dim, 4, 4))
    delta = 3
    result = latent_perturbation(quantizer, out, alpha=1.0, beta=0.5, delta=delta, generator=seeded(6))
    assert not result.changed[3:].any() and result.changed[:3].any()
    ids = result.indices if result.indices.ndim == 4 else result.indices.unsqueeze(-1)
    for level, codebook in enumerate(quantizer.level_codebooks()):
        queries = out.queries[:3, ..., level, :].reshape(-1, quantizer.code_dim)
        allowed = nearest_codes(queries, codebook, delta)
        assert (allowed == ids[:3, ..., level].reshape(-1, 1)).any(1).all()
    assert torch.allclose(result.quantized[:3], quantizer.indices_to_codes(result.indices[:3]), atol=1e-6)


def test_anneal_ratio_matches_robustok_at_end_ratio_half_and_is_continuous():
    assert anneal_ratio(0, 40, 120, 0.5) == 1.0
    assert anneal_ratio(39, 40, 120, 0.5) == 1.0
    assert anneal_ratio(80, 40, 120, 0.5) == pytest.approx(0.75)
    assert anneal_ratio(120, 40, 120, 0.5) == 0.5
    assert anneal_ratio(199, 40, 120, 0.5) == 0.5
    # RobusTok's formula 1 - t * end_ratio would jump from 0.8 to 0.2 at anneal_end for end_ratio 0.2.
    assert anneal_ratio(119.999, 40, 120, 0.2) == pytest.approx(0.2, abs=1e-4)


def test_schedule_scales_alpha_and_delta_per_epoch():
    schedule = PerturbationSchedule(alpha=1.0, beta=0.1, delta=100, anneal_start=40, anneal_end=120,
                                    end_ratio=0.5, steps_per_epoch=10)
    assert schedule.at_step(0) == (1.0, 100)
    assert schedule.at_step(805) == (0.75, 75)  # epoch 80
    assert schedule.at_step(5000) == (0.5, 50)
    assert PerturbationSchedule.from_config(None) is None
    with pytest.raises(ZooError, match=r"perturbation.beta: expected a fraction in \[0, 1\], got 1.5"):
        PerturbationSchedule(beta=1.5)
    with pytest.raises(ZooError, match="unknown setting"):
        PerturbationSchedule.from_config({"gamma": 1})


def test_pfid_perturbation_moves_tokens_to_their_codes_nearest_other_codes():
    codebook = torch.stack([torch.arange(K, dtype=torch.float), torch.zeros(K)], dim=1)
    table = code_neighbours(codebook, 2)
    assert table[5].tolist() == [4, 6] and table[0].tolist() == [1, 2]
    ids = torch.randint(2, K - 2, (50, 6, 6))
    g = torch.Generator().manual_seed(7)
    assert torch.equal(perturb_token_ids(ids, codebook, 0.0, 2, g), ids)
    moved = perturb_token_ids(ids, codebook, 1.0, 2, g)
    assert ((moved - ids).abs() == 1).all()  # always changed, always to a nearest other code
    rate = (perturb_token_ids(ids, codebook, 0.3, 2, g) != ids).float().mean().item()
    assert abs(rate - 0.3) < 0.03
    again = perturb_token_ids(ids, codebook, 0.3, 2, torch.Generator().manual_seed(8))
    assert torch.equal(again, perturb_token_ids(ids, codebook, 0.3, 2, torch.Generator().manual_seed(8)))
    # Several levels: each level moves within its own codebook.
    levels = torch.stack([codebook, 10 * codebook])
    level_ids = torch.randint(2, K - 2, (4, 3, 3, 2))
    moved = perturb_token_ids(level_ids, levels, 1.0, 2, g)
    assert ((moved - level_ids).abs() == 1).all()
