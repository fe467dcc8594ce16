"""The small GPT: causality, KV-cache sampling equal to full forward passes, filtering, training, save/load."""

from __future__ import annotations

import pytest
import torch

from zoo.errors import ZooError
from zoo.generators import GPT, filter_logits


def _tiny(**overrides) -> GPT:
    config = dict(vocab_size=17, context_length=12, dim=32, depth=2, heads=4, seed=3)
    return GPT(**{**config, **overrides}).eval()


def test_shapes_and_causality():
    model = _tiny()
    ids = torch.randint(0, 17, (2, 10))
    logits = model(ids)
    assert logits.shape == (2, 10, 17)
    changed = ids.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 17
    # logits[:, t] sees ids[:, :t] only: positions up to 6 are unaffected by a change from position 6 on
    torch.testing.assert_close(model(changed)[:, :7], logits[:, :7])
    assert not torch.allclose(model(changed)[:, 7:], logits[:, 7:])


def test_forward_with_tables_is_forward_with_other_rows():
    tied, untied = _tiny(), _tiny(tie_embeddings=False)
    ids = torch.randint(0, 17, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(tied.forward_with_tables(ids, tied.token_embedding.weight), tied(ids))
        own = untied.forward_with_tables(ids, untied.token_embedding.weight, untied.head.weight)
        torch.testing.assert_close(own, untied(ids))
        # a 5-row vocabulary: its rows embed ids 0..4 and the logits run over those 5 rows only
        rows = torch.randn(5, 32, generator=torch.Generator().manual_seed(1))
        small = ids % 5
        logits = tied.forward_with_tables(small, rows)
        assert logits.shape == (2, 9, 5)
        manual = tied.token_embedding.weight.clone()
        manual[:5] = rows
        tied.token_embedding.weight.copy_(manual)  # the same rows placed in the model's own table
        torch.testing.assert_close(logits, tied(small)[..., :5])


def test_seeded_init_is_deterministic_and_tied():
    a, b = _tiny(), _tiny()
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert a.head.weight is a.token_embedding.weight
    assert not torch.equal(_tiny(seed=4).token_embedding.weight, a.token_embedding.weight)


def test_cached_greedy_decoding_matches_full_forward():
    model = _tiny(num_classes=3)
    prompt = torch.randint(0, 17, (2, 3))
    labels = torch.tensor([0, 2])
    out = model.generate(8, prompt=prompt, labels=labels, temperature=0)
    assert out.shape == (2, 11) and torch.equal(out[:, :3], prompt)
    # Re-derive each token from an uncached forward pass over the sequence so far.
    for t in range(3, 11):
        full = model(torch.cat([out[:, :t], out[:, :1]], dim=1), labels)  # one dummy id so position t is predicted
        assert torch.equal(full[:, t].argmax(-1), out[:, t]), t


def test_sampling_is_seeded_and_top_k_one_is_greedy():
    model = _tiny()
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a = model.generate(6, batch_size=3, temperature=1.0, generator=g1)
    b = model.generate(6, batch_size=3, temperature=1.0, generator=g2)
    assert torch.equal(a, b)
    greedy = model.generate(6, batch_size=3, temperature=0)
    assert torch.equal(model.generate(6, batch_size=3, temperature=0.7, top_k=1), greedy)
    assert torch.equal(model.generate(6, batch_size=3, temperature=1.5, top_p=1e-6), greedy)


def test_filter_logits_by_hand():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, top_k=2))
    assert kept.tolist() == [[True, True, False, False]]
    # nucleus 0.8: 0.5 + 0.3 reach it, so the third and fourth go
    assert torch.isfinite(filter_logits(logits, top_p=0.8)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.81)).tolist() == [[True, True, True, False]]
    with pytest.raises(ZooError, match="top_p"):
        filter_logits(logits, top_p=0.0)


def test_classifier_free_guidance_runs_and_needs_labels():
    model = _tiny(num_classes=2)
    out = model.generate(4, labels=torch.tensor([1]), guidance_scale=3.0, temperature=0)
    assert out.shape == (1, 4)
    with pytest.raises(ZooError, match="guidance_scale"):
        model.generate(4, guidance_scale=3.0)
    with pytest.raises(ZooError, match="num_classes=0"):
        _tiny()(torch.zeros(1, 3, dtype=torch.long), labels=torch.tensor([0]))


def test_training_lowers_the_loss_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = _tiny(num_classes=2).train()
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]] * 4)
    batch = {"ids": ids, "label": torch.tensor([0, 1, 0, 1])}
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = model.training_losses(batch, 0)["loss"].item()
    for step in range(60):
        loss = model.training_losses(batch, step)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < first / 4
    model.eval()
    model.save_pretrained(tmp_path / "gpt")
    loaded = GPT.from_pretrained(tmp_path / "gpt").eval()
    torch.testing.assert_close(loaded(ids, batch["label"]), model(ids, batch["label"]))
    assert loaded.head.weight is loaded.token_embedding.weight


def test_bad_inputs_name_the_problem():
    model = _tiny()
    with pytest.raises(ZooError, match=r"ids must lie in \[0, 17\)"):
        model(torch.tensor([[0, 17]]))
    with pytest.raises(ZooError, match="context_length 12"):
        model.generate(12, prompt=torch.zeros(1, 1, dtype=torch.long))
    with pytest.raises(ZooError, match="'ids'"):
        model.training_losses({"text": ["x"]}, 0)
