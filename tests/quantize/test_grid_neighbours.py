"""Neighbours on implicit sign grids (LFQ): enumeration by bit flips equals ranking every distance."""

import pytest
import torch

import zoo.quantize.perturb as perturb
from zoo.errors import ZooError
from zoo.quantize import Quantizer
from zoo.quantize.perturb import code_neighbours, grid_nearest_codes, nearest_codes, perturb_token_ids, sign_grid_bits


def lsb_grid(bits: int, scale: float = 1.0) -> torch.Tensor:
    """Open-MAGVIT2's order: channel i is bit i of the id (least significant first), bit 1 -> +scale."""
    ids = torch.arange(1 << bits)
    return (((ids.unsqueeze(1) >> torch.arange(bits)) & 1).float() * 2 - 1) * scale


def grids(bits: int) -> dict[str, torch.Tensor]:
    """The same grid in the orders and scales a codebook can come in."""
    permutation = torch.randperm(bits, generator=torch.Generator().manual_seed(bits))
    polarity = torch.where(torch.arange(bits) % 3 == 0, -1.0, 1.0)
    return {
        "lsb": lsb_grid(bits),
        "msb-half": lsb_grid(bits, 0.5).flip(1),
        "permuted-polarity": lsb_grid(bits, bits**-0.5)[:, permutation] * polarity,
        "lfq-adapter": Quantizer({"kind": "lfq", "bits": bits}).codebook,
    }


@pytest.mark.parametrize("bits", [6, 8])
def test_enumeration_equals_nearest_codes_exactly(bits):
    every = torch.arange(1 << bits)
    for name, codebook in grids(bits).items():
        assert sign_grid_bits(codebook) == bits, name
        ranked = nearest_codes(codebook, codebook, 30)  # nearest_codes(k) is the first k columns of this
        for k in range(1, 31):
            assert torch.equal(grid_nearest_codes(every, bits, k), ranked[:, :k]), (name, k)
        searched = code_neighbours(codebook, 30, sign_grid=False)
        assert torch.equal(code_neighbours(codebook, 30), searched), name
        assert torch.equal(code_neighbours(codebook, 30, sign_grid=True), searched), name


def test_hand_computed_ranking_on_four_bits():
    # 5 = 0101: one flip gives 4, 7, 1, 13 (sorted: 1 4 7 13); the smallest id two flips away is 0 (5 ^ 5).
    assert grid_nearest_codes(torch.tensor([5]), 4, 6).tolist() == [[5, 1, 4, 7, 13, 0]]
    assert grid_nearest_codes(torch.tensor([0]), 4, 16).tolist() == [[0, 1, 2, 4, 8, 3, 5, 6, 9, 10, 12, 7, 11, 13,
                                                                      14, 15]]


def test_the_18_bit_grid_ranks_by_hamming_shell_then_id():
    bits = 18
    codebook = lsb_grid(bits)
    assert sign_grid_bits(codebook) == bits
    ids = torch.tensor([0, 5, 131072, 262143])
    delta = 6554  # pFID's default ceil(0.025 K) for 2^18 codes
    table = code_neighbours(codebook, delta, ids)
    assert table.shape == (4, delta)
    shells = torch.tensor([[bin(v).count("1") for v in row] for row in (table ^ ids.unsqueeze(1)).tolist()])
    assert (shells[:, :18] == 1).all() and (shells[:, 18:171] == 2).all() and (shells.diff(dim=1) >= 0).all()
    key = shells * (1 << bits) + table  # within a shell, increasing id
    assert (key.diff(dim=1) > 0).all()
    assert torch.equal(grid_nearest_codes(ids[:2], bits, 200), nearest_codes(codebook[ids[:2]], codebook, 200))


def test_detection_rejects_what_is_not_a_sign_grid():
    grid = lsb_grid(4)
    changed = grid.clone()
    changed[13, 2] = 0.5
    mixed_scale = grid.clone()
    mixed_scale[:, 1] *= 2
    same_channel = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, -1.0], [-1.0, -1.0]])  # two bits flip channel 0
    cases = {
        "fsq": Quantizer({"kind": "fsq", "levels": [4, 4]}).codebook,
        "one entry changed": changed,
        "two scales": mixed_scale,
        "ids out of bit order": grid[torch.randperm(16, generator=torch.Generator().manual_seed(0))],
        "two bits, one channel": same_channel,
        "zeros": torch.zeros(16, 4),
        "too few codes": grid[:8],
        "levels axis": grid.unsqueeze(0),
    }
    for name, codebook in cases.items():
        assert sign_grid_bits(codebook) is None, name
    assert sign_grid_bits(grid.double()) == 4 and sign_grid_bits(-grid) == 4


def test_declared_grid_and_enumeration_reject_bad_input():
    with pytest.raises(ZooError, match=r"sign_grid=True: expected a codebook of \[2\^bits, bits\] codes"):
        code_neighbours(torch.zeros(10, 3), 2, sign_grid=True)
    with pytest.raises(ZooError, match=r"k must lie in \[1, 16\], got 17"):
        grid_nearest_codes(torch.tensor([0]), 4, 17)
    with pytest.raises(ZooError, match=r"ids must lie in \[0, 15\], got 3..16"):
        grid_nearest_codes(torch.tensor([3, 16]), 4, 2)


@pytest.mark.parametrize("alpha", [0.1, 0.5, 1.0])
def test_perturbation_is_identical_with_and_without_the_fast_path(alpha):
    codebook = grids(8)["lfq-adapter"]
    ids = torch.randint(0, 256, (3, 6, 6), generator=torch.Generator().manual_seed(1))
    outputs = [perturb_token_ids(ids, codebook, alpha, 30, torch.Generator().manual_seed(2), sign_grid=flag)
               for flag in (None, True, False)]
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])
    # Several levels, each its own grid.
    levels = torch.stack([lsb_grid(6), lsb_grid(6, 0.5).flip(1)])
    level_ids = torch.randint(0, 64, (2, 4, 4, 2), generator=torch.Generator().manual_seed(3))
    fast = perturb_token_ids(level_ids, levels, alpha, 10, torch.Generator().manual_seed(4))
    searched = perturb_token_ids(level_ids, levels, alpha, 10, torch.Generator().manual_seed(4), sign_grid=False)
    assert torch.equal(fast, searched)


def test_tables_are_built_for_the_drawn_tokens_only(monkeypatch):
    codebook = lsb_grid(6)
    ids = torch.randint(0, 64, (4, 8, 8), generator=torch.Generator().manual_seed(5))
    alpha, delta, seed = 0.1, 5, 6
    # The result before this change: a table for every distinct id, a replacement wherever a token was drawn.
    g = torch.Generator().manual_seed(seed)
    drawn = torch.rand(ids.shape, generator=g) < alpha
    ranks = torch.randint(0, delta, ids.shape, generator=g)
    unique, inverse = torch.unique(ids, return_inverse=True)
    expected = torch.where(drawn, code_neighbours(codebook, delta, unique, sign_grid=False)[inverse, ranks], ids)

    asked = []
    real = perturb.code_neighbours

    def recording(codebook, delta, rows=None, sign_grid=None):
        asked.append(rows.clone())
        return real(codebook, delta, rows, sign_grid)

    monkeypatch.setattr(perturb, "code_neighbours", recording)
    assert torch.equal(perturb_token_ids(ids, codebook, alpha, delta, torch.Generator().manual_seed(seed)), expected)
    assert asked[0].tolist() == torch.unique(ids[drawn]).tolist() and len(asked[0]) < len(unique)
    asked.clear()
    assert torch.equal(perturb_token_ids(ids, codebook, 0.0, delta, torch.Generator().manual_seed(seed)), ids)
    assert asked == []  # nothing drawn, no table
    with pytest.raises(ZooError, match=r"delta must lie in \[1, 63\] for a codebook of 64 codes, got 64"):
        perturb_token_ids(ids, codebook, 0.0, 64)
