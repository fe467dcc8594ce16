"""CW2V: skip-gram pairs, the noise distribution, convex rows and what training teaches them."""

from __future__ import annotations

import pytest
import torch

from zoo.errors import ZooError
from zoo.transfer.cw2v import cw2v_rows, noise_distribution, skipgram_pairs


def test_skipgram_pairs_by_hand():
    pairs = {tuple(p) for p in skipgram_pairs([[1, 2, 3], [4]], window=1).tolist()}
    assert pairs == {(1, 2), (2, 1), (2, 3), (3, 2)}
    assert len(skipgram_pairs([[1, 2, 3]], window=5)) == 6  # every ordered pair of distinct positions
    assert skipgram_pairs([[]]).shape == (0, 2)


def test_noise_is_unigram_to_the_three_quarters():
    noise = noise_distribution([[0, 0, 1], [0, 2]], vocab_size=4)
    expected = torch.tensor([3**0.75, 1.0, 1.0, 0.0])
    torch.testing.assert_close(noise, expected / expected.sum())
    with pytest.raises(ZooError, match="no tokens"):
        noise_distribution([[]], 3)


def _setup(seed: int = 0, vocab: int = 64, dim: int = 32):
    """Random old rows; token 3 is always followed by 7, and the added token (id ``vocab``) takes 3's place in
    every other sequence, amid fillers drawn from 8..vocab-1."""
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(vocab, dim, generator=generator) * 2 / dim**0.5
    sequences = []
    for i in range(200):
        filler = torch.randint(8, vocab, (20,), generator=generator).tolist()
        sequences.append(filler[:10] + [vocab if i % 2 else 3, 7] + filler[10:])
    return table, sequences


OPTIONS = dict(window=1, epochs=12, rank=8, lr=8e-2, batch_size=128)


def test_rows_are_convex_mixes_of_the_frozen_rows_and_learn_from_context():
    table, sequences = _setup()
    sequences[0].append(len(table) + 1)  # a second added token, seen once
    result = cw2v_rows(table, sequences, 2, **OPTIONS)
    assert result.output_rows is None and result.input_rows.shape == (2, table.shape[1])
    mixes = result.mixes["input"]
    torch.testing.assert_close(mixes.sum(-1), torch.ones(2))
    assert (mixes >= 0).all()
    torch.testing.assert_close(result.input_rows, mixes @ table)  # rows = softmax(A) @ E
    assert result.losses[-1] < result.losses[0]
    # skip-gram raises the added token's score against its context 7 above nearly every filler's
    scores = table @ result.input_rows[0]
    assert (scores[8:] < scores[7]).float().mean() >= 0.9 and scores[7] > table[7] @ table.mean(0) + 0.5
    again = cw2v_rows(table, sequences, 2, **OPTIONS)
    torch.testing.assert_close(again.input_rows, result.input_rows)  # seeded


def test_untied_head_gets_its_own_mix():
    table, sequences = _setup(seed=2)
    head = table.flip(0)  # another head: the input row must now point at head row 7, not input row 7
    result = cw2v_rows(table, sequences, 1, output_table=head, **OPTIONS)
    assert result.output_rows is not None and set(result.mixes) == {"input", "output"}
    torch.testing.assert_close(result.output_rows, result.mixes["output"] @ head)
    assert head[7] @ result.input_rows[0] > head[7] @ table.mean(0) + 0.4
    with pytest.raises(ZooError, match="output head"):
        cw2v_rows(table, sequences, 1, output_table=head[:, :3])


def test_bad_inputs():
    table = torch.eye(4)
    with pytest.raises(ZooError, match=r"ids must lie in \[0, 5\)"):
        cw2v_rows(table, [[0, 9]], 1)
    with pytest.raises(ZooError, match="no added token occurs"):
        cw2v_rows(table, [[0, 1, 2]], 1)
    with pytest.raises(ZooError, match="at least one added token"):
        cw2v_rows(table, [[0, 1]], 0)
