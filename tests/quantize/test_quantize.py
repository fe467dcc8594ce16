"""The quantiser adapter: one return type over VQ / FSQ / LFQ / residual VQ, codebooks explicit or implicit."""

import re

import pytest
import torch
import torch.nn.functional as F

from zoo.errors import ZooError
from zoo.quantize import Quantizer, codebook_perplexity, quantizer_options

CONFIGS = {
    "vq": {"kind": "vq", "codebook_size": 32, "code_dim": 4},
    "fsq": {"kind": "fsq", "levels": [5, 4, 3]},
    "lfq": {"kind": "lfq", "bits": 5},
    "rvq": {"kind": "rvq", "codebook_size": 16, "code_dim": 4, "levels": 3},
}


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_one_return_type_and_codes_from_ids(kind):
    quantizer = Quantizer(CONFIGS[kind]).train()
    z = torch.randn(3, quantizer.code_dim, 4, 5, requires_grad=True)
    out = quantizer(z)
    levels = quantizer.num_levels
    assert out.quantized.shape == z.shape
    assert out.indices.shape == ((3, 4, 5) if levels == 1 else (3, 4, 5, levels))
    assert out.indices.dtype == torch.long
    assert 0 <= int(out.indices.min()) and int(out.indices.max()) < quantizer.vocab_size
    assert out.latent.shape == z.shape and out.queries.shape == (3, 4, 5, levels, quantizer.code_dim)
    assert quantizer.level_codebooks().shape == (levels, quantizer.vocab_size, quantizer.code_dim)
    # Gradients reach the encoder side through the estimator.
    total = out.quantized.square().sum() + sum(out.losses.values(), torch.zeros(()))
    total.backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    # In eval mode, ids -> codes reproduces the quantized output exactly.
    quantizer.eval()
    with torch.no_grad():
        out = quantizer(z)
        assert torch.allclose(quantizer.indices_to_codes(out.indices), out.quantized, atol=1e-5)


def test_vq_codes_are_l2_normalised_and_nearest_by_cosine():
    quantizer = Quantizer(CONFIGS["vq"]).eval()
    codebook = quantizer.codebook
    assert torch.allclose(codebook.norm(dim=-1), torch.ones(32), atol=1e-5)
    z = torch.randn(2, 4, 3, 3)
    out = quantizer(z)
    latent = F.normalize(z, dim=1)
    assert torch.allclose(out.latent, latent)
    expected = torch.einsum("bdhw,kd->bhwk", latent, codebook).argmax(-1)
    assert torch.equal(out.indices, expected)


def test_vq_kmeans_init_runs_on_first_training_batch_only():
    quantizer = Quantizer(CONFIGS["vq"])
    before = quantizer.codebook.clone()
    quantizer.eval()
    quantizer(torch.randn(2, 4, 3, 3))
    assert torch.equal(quantizer.codebook, before)  # encoding never changes state
    assert not bool(quantizer.inner._codebook.initted)
    # Data on 4 tight clusters: k-means puts every code near one of them.
    centres = F.normalize(torch.randn(4, 4), dim=-1)
    data = centres[torch.randint(0, 4, (2, 16, 16))] + 0.01 * torch.randn(2, 16, 16, 4)
    quantizer.train()(data.permute(0, 3, 1, 2))
    assert bool(quantizer.inner._codebook.initted)
    similarity = (quantizer.codebook @ centres.T).max(dim=1).values
    assert similarity.min() > 0.95


def test_vq_dead_codes_are_replaced_by_batch_vectors():
    quantizer = Quantizer({**CONFIGS["vq"], "kmeans_init": False, "dead_code_threshold": 2.0, "ema_decay": 0.8})
    quantizer.train()
    target = F.normalize(torch.tensor([1.0, 2.0, -1.0, 0.5]), dim=0)
    near_target = (target.view(1, 4, 1, 1) + 0.05 * torch.randn(8, 4, 4, 4))
    assert (quantizer.codebook @ target).gt(0.9).sum() <= 2
    for _ in range(10):
        quantizer(near_target)
    # Codes nobody chose fell under the EMA threshold and were re-seeded from the batch.
    assert (quantizer.codebook @ target).gt(0.9).sum() >= 28


def test_vq_ema_pulls_the_chosen_code_toward_its_data():
    quantizer = Quantizer({**CONFIGS["vq"], "kmeans_init": False, "dead_code_threshold": 0.0, "ema_decay": 0.5})
    quantizer.train()
    point = F.normalize(torch.randn(4), dim=0)
    x = point.view(1, 4, 1, 1).expand(1, 4, 2, 2).contiguous()
    chosen = int(quantizer(x).indices[0, 0, 0])
    start = float(quantizer.codebook[chosen] @ point)
    for _ in range(5):
        quantizer(x)
    assert float(quantizer.codebook[chosen] @ point) > max(start, 0.99)


def test_fsq_latent_rounds_to_its_code_and_implicit_codebook_is_the_grid():
    quantizer = Quantizer(CONFIGS["fsq"]).eval()
    assert quantizer.vocab_size == 60 and quantizer.codebook.shape == (60, 3)
    assert len({tuple(row) for row in quantizer.codebook.tolist()}) == 60
    z = 3 * torch.randn(2, 3, 4, 4)
    out = quantizer(z)
    half_width = torch.tensor([5 // 2, 4 // 2, 3 // 2]).view(1, 3, 1, 1)
    assert torch.allclose(torch.round(out.latent * half_width) / half_width, out.quantized, atol=1e-6)
    # The implicit codebook's nearest code to the latent is the chosen id.
    flat = out.latent.permute(0, 2, 3, 1).reshape(-1, 3)
    assert torch.equal(torch.cdist(flat, quantizer.codebook).argmin(1), out.indices.reshape(-1))


def test_lfq_ids_are_sign_bits_most_significant_first():
    quantizer = Quantizer({"kind": "lfq", "bits": 4}).eval()
    z = torch.tensor([0.3, -2.0, -0.1, 5.0]).view(1, 4, 1, 1)
    out = quantizer(z)
    assert int(out.indices) == 0b1001
    assert torch.equal(out.quantized.flatten(), torch.tensor([1.0, -1.0, -1.0, 1.0]))
    assert torch.equal(quantizer.codebook[9], torch.tensor([1.0, -1.0, -1.0, 1.0]))
    quantizer.train()
    losses = quantizer(torch.randn(2, 4, 3, 3)).losses
    assert set(losses) == {"entropy", "commitment"}


def test_rvq_queries_are_the_residuals_of_earlier_levels():
    quantizer = Quantizer(CONFIGS["rvq"]).eval()
    z = torch.randn(2, 4, 3, 3)
    out = quantizer(z)
    codebooks = quantizer.codebook  # [q, K, D]
    residual = z.permute(0, 2, 3, 1)
    for level in range(3):
        assert torch.allclose(out.queries[..., level, :], residual, atol=1e-5)
        nearest = torch.cdist(residual.reshape(-1, 4), codebooks[level]).argmin(1)
        assert torch.equal(nearest, out.indices[..., level].reshape(-1))
        residual = residual - codebooks[level][out.indices[..., level]]


def test_perplexity_counts_effective_codes():
    assert codebook_perplexity(torch.arange(8).view(2, 2, 2), 8).item() == pytest.approx(8.0)
    assert codebook_perplexity(torch.zeros(2, 3, 3, dtype=torch.long), 8).item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"kind": "pq"}, "unknown kind 'pq'"),
        ({"kind": "vq", "codebook": 4}, "unknown option(s) ['codebook']"),
        ({"kind": "fsq", "levels": [8, 2]}, "levels must be a list of integers >= 3"),
        ({"kind": "lfq", "bits": 0}, "bits must lie in [1, 20]"),
        ("vq", "expected a mapping"),
    ],
)
def test_bad_configs_name_the_problem(config, message):
    with pytest.raises(ZooError, match=re.escape(message)):
        quantizer_options(config)


def test_wrong_input_shape_is_a_clear_error():
    quantizer = Quantizer(CONFIGS["vq"])
    with pytest.raises(ZooError, match=r"expected \[B, 4, h, w\]"):
        quantizer(torch.randn(2, 3, 4, 4))
    with pytest.raises(ZooError, match="ids: expected shape"):
        quantizer.indices_to_codes(torch.zeros(2, 3, dtype=torch.long))


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_an_empty_batch_gives_empty_outputs_in_eval_and_is_refused_in_training(kind):
    quantizer = Quantizer(CONFIGS[kind]).eval()
    z = torch.randn(0, quantizer.code_dim, 4, 5)
    with torch.no_grad():
        out = quantizer(z)
    levels = quantizer.num_levels
    assert out.quantized.shape == z.shape and out.latent.shape == z.shape
    assert out.indices.shape == ((0, 4, 5) if levels == 1 else (0, 4, 5, levels)) and out.indices.dtype == torch.long
    assert out.queries.shape == (0, 4, 5, levels, quantizer.code_dim)
    assert quantizer.indices_to_codes(out.indices).shape == z.shape
    with pytest.raises(ZooError, match="an empty batch cannot train the codebook"):
        quantizer.train()(z)
