"""Vocabulary expansion: the id check, each initialisation of the added rows, whole models and ``zoo expand``."""

from __future__ import annotations

import argparse
import json
import sys
import types

import pytest
import torch
from tokenizers import Tokenizer

from tests.transfer.test_transfer import _words
from zoo.analysis.vocab import load_vocabulary
from zoo.errors import ZooError
from zoo.generators import GPT
from zoo.pretrained import from_folder
from zoo.text.hf import BPETokenizer
from zoo.transfer import expand_command
from zoo.transfer.expand import added_ids, expand_model, fertility, group_members, read_groups


def fake_expand_bpe(base_tok, texts, new_tokens, seed=0):
    """A stand-in for ``zoo.text.expand.expand_bpe``: a BPE learnt on ``texts`` whose merges are appended."""
    target = BPETokenizer(vocab_size=257 + 3 * new_tokens)
    target.fit(texts)
    state = json.loads(base_tok.hf_tokenizer.to_str())
    vocab, merges = state["model"]["vocab"], state["model"]["merges"]
    added = []
    for merge in json.loads(target.hf_tokenizer.to_str())["model"]["merges"]:
        a, b = merge if isinstance(merge, list) else merge.split(" ")
        if a + b in vocab or a not in vocab or b not in vocab:
            continue
        vocab[a + b] = len(vocab)
        merges.append(merge)
        added.append(vocab[a + b])
        if len(added) == new_tokens:
            break
    merged = BPETokenizer(vocab_size=len(vocab))
    merged._set_tokenizer(Tokenizer.from_str(json.dumps(state)))
    return types.SimpleNamespace(tokenizer=merged, added_ids=added)


@pytest.fixture(scope="module")
def setup():
    base_text, new_text = _words(1, "abcdefgh", 300), _words(2, "defghijk", 300)
    base = BPETokenizer(vocab_size=257 + 60)
    base.fit([base_text])
    expanded = fake_expand_bpe(base, [new_text], 40)
    return base, expanded.tokenizer, expanded.added_ids, base_text, new_text


def _gpt(vocab_size: int, tied: bool = True) -> GPT:
    return GPT(vocab_size=vocab_size, context_length=16, dim=16, depth=1, heads=2, tie_embeddings=tied, seed=0)


def test_added_ids_are_checked(setup):
    base, merged, added, _, new_text = setup
    assert added_ids(load_vocabulary(base), load_vocabulary(merged)) == added == list(range(317, 357))
    assert fertility(merged, [new_text]) < fertility(base, [new_text])
    other = BPETokenizer(vocab_size=257 + 60)
    other.fit([new_text])
    with pytest.raises(ZooError, match="expected the base's ids 0..V-1 unchanged"):
        added_ids(load_vocabulary(base), load_vocabulary(other))


@pytest.mark.parametrize("init", ["mean", "multivariate", "fvt", "groups", "cw2v"])
def test_each_init_keeps_the_old_model_and_fills_the_new_rows(setup, init):
    base, merged, added, _, new_text = setup
    bv, mv = load_vocabulary(base), load_vocabulary(merged)
    model = _gpt(bv.size)
    groups = {"kind": new_text.split()[:6]}
    options = dict(epochs=2, rank=8, max_pairs=2000) if init == "cw2v" else {}
    expanded, summary = expand_model(model, base, merged, init, texts=[new_text], groups=groups, **options)
    assert expanded.vocab_size == mv.size and expanded.head.weight is expanded.token_embedding.weight
    old = model.token_embedding.weight.detach()
    table = expanded.token_embedding.weight.detach()
    assert torch.equal(table[: bv.size], old)
    ids = torch.tensor([base.encode(new_text[:200])[:16]])
    with torch.no_grad():  # the same inputs give the same logits over the old ids
        torch.testing.assert_close(expanded(ids)[..., : bv.size], model(ids))
    new = table[bv.size :]
    assert summary["added"] == len(added) and summary["tables"]["token_embedding.weight"]["rows"] == mv.size
    if init == "mean":
        torch.testing.assert_close(new, old.mean(0).expand_as(new))
    elif init == "multivariate":  # N(mu, 1e-5 Sigma): close to the mean, not on it
        assert (new - old.mean(0)).abs().max() < 0.01 and not torch.equal(new[0], new[1])
    elif init == "fvt":
        token = mv.token_bytes[added[-1]]
        torch.testing.assert_close(new[-1], old[bv.split(token)].mean(0))
    elif init == "groups":
        pieces, membership = group_members(bv, mv, groups, added)
        assert summary["tables"]["token_embedding.weight"]["initialised"]["groups"] == len(membership) > 0
        member = next(iter(membership))
        torch.testing.assert_close(table[member], old[pieces["kind"]].mean(0))
        outsider = next(i for i in added if i not in membership)
        torch.testing.assert_close(table[outsider], old[bv.split(mv.token_bytes[outsider])].mean(0))
    else:  # convex mixes of the old rows: inside their bounding box
        assert (new >= old.min(0).values - 1e-6).all() and (new <= old.max(0).values + 1e-6).all()
        assert len(summary["cw2v_losses"]) == 2


def test_untied_model_gets_cw2v_rows_per_table(setup):
    base, merged, _, _, new_text = setup
    bv = load_vocabulary(base)
    model = _gpt(bv.size, tied=False)
    expanded, summary = expand_model(model, base, merged, "cw2v", texts=[new_text], epochs=1, rank=8, max_pairs=2000)
    assert set(summary["tables"]) == {"token_embedding.weight", "head.weight"}
    new_in = expanded.token_embedding.weight[bv.size :].detach()
    new_out = expanded.head.weight[bv.size :].detach()
    assert not torch.allclose(new_in, new_out)
    head = model.head.weight.detach()
    assert (new_out >= head.min(0).values - 1e-6).all() and (new_out <= head.max(0).values + 1e-6).all()
    with pytest.raises(ZooError, match="vocab_size = 317"):
        expand_model(_gpt(300), base, merged, "mean")
    with pytest.raises(ZooError, match="needs new-language text"):
        expand_model(model, base, merged, "cw2v")
    with pytest.raises(ZooError, match="unknown expansion init"):
        expand_model(model, base, merged, "magic")


def test_read_groups(tmp_path):
    (tmp_path / "g.json").write_text('{"drug": ["aspirin", "ibuprofen"], "empty": []}')
    (tmp_path / "g.yaml").write_text("drug:\n  - aspirin\ndisease: [flu]\n")
    (tmp_path / "g.tsv").write_text("# type\tterm\ndrug\taspirin\ndisease\tflu\ndrug\tibuprofen\n")
    assert read_groups(tmp_path / "g.json") == {"drug": ["aspirin", "ibuprofen"]}
    assert read_groups(tmp_path / "g.yaml") == {"drug": ["aspirin"], "disease": ["flu"]}
    assert read_groups(tmp_path / "g.tsv") == {"drug": ["aspirin", "ibuprofen"], "disease": ["flu"]}
    (tmp_path / "bad.tsv").write_text("drug aspirin\n")
    with pytest.raises(ZooError, match="line 1: expected 'group<TAB>term'"):
        read_groups(tmp_path / "bad.tsv")
    with pytest.raises(ZooError, match="no such file"):
        read_groups(tmp_path / "missing.tsv")


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    expand_command.configure(parser)
    return expand_command.run(parser.parse_args(argv))


def test_command_learns_tokens_from_text_and_expands_a_model(setup, tmp_path, monkeypatch, capsys):
    base, _, _, _, new_text = setup
    monkeypatch.setitem(sys.modules, "zoo.text.expand", types.SimpleNamespace(expand_bpe=fake_expand_bpe))
    base.save_pretrained(tmp_path / "base")
    _gpt(base.vocab_size).save_pretrained(tmp_path / "gpt")
    (tmp_path / "de.txt").write_text(new_text, encoding="utf-8")
    (tmp_path / "groups.tsv").write_text("kind\t" + "\nkind\t".join(new_text.split()[:5]) + "\n", encoding="utf-8")
    argv = [str(tmp_path / "base"), str(tmp_path / "de.txt"), "--out", str(tmp_path / "out"), "--new-tokens", "30"]
    grouped = ["--model", str(tmp_path / "gpt"), "--init", "groups", "--groups", str(tmp_path / "groups.tsv")]
    assert _run(argv + grouped) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["added"] == 30 and summary["expanded_size"] == base.vocab_size + 30
    assert summary["fertility"]["expanded"] < summary["fertility"]["base"]
    assert json.loads((tmp_path / "out" / "expand.json").read_text()) == summary
    tokenizer = from_folder(tmp_path / "out" / "tokenizer")
    assert tokenizer.vocab_size == base.vocab_size + 30 and tokenizer.decode(tokenizer.encode(new_text)) == new_text
    model = from_folder(tmp_path / "out" / "model")
    assert model.vocab_size == base.vocab_size + 30
    # an expanded tokenizer given as such: no new tokens are learnt, the model gets rows for its added ids
    assert _run([str(tmp_path / "base"), str(tmp_path / "out" / "tokenizer"), "--out", str(tmp_path / "again"),
                 "--model", str(tmp_path / "gpt"), "--init", "mean"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["added"] == 30
    with pytest.raises(ZooError, match="needs --groups FILE"):
        _run(argv + ["--model", str(tmp_path / "gpt"), "--init", "groups"])
    with pytest.raises(ZooError, match="pass --model"):
        _run(argv + ["--init", "cw2v"])


def test_command_with_the_real_merge(setup, tmp_path, capsys):
    """``zoo.text.expand.expand_bpe`` as shipped: from text, and from a new-language tokenizer."""
    pytest.importorskip("zoo.text.expand", reason="the tokenizer merge (zoo.text.expand) is not in this tree")
    base, _, _, _, new_text = setup
    base.save_pretrained(tmp_path / "base")
    (tmp_path / "de.txt").write_text(new_text, encoding="utf-8")
    assert _run([str(tmp_path / "base"), str(tmp_path / "de.txt"), "--out", str(tmp_path / "a"), "--new-tokens",
                 "25"]) == 0  # fmt: skip
    from_text = json.loads(capsys.readouterr().out)
    assert 0 < from_text["added"] <= 25 and from_text["fertility"]["expanded"] < from_text["fertility"]["base"]
    new_tok = BPETokenizer(vocab_size=257 + 60)
    new_tok.fit([new_text])
    new_tok.save_pretrained(tmp_path / "de-bpe")
    assert _run([str(tmp_path / "base"), str(tmp_path / "de-bpe"), "--out", str(tmp_path / "b"), "--new-tokens",
                 "25", "--text", str(tmp_path / "de.txt")]) == 0  # fmt: skip
    from_tokenizer = json.loads(capsys.readouterr().out)
    assert 0 < from_tokenizer["added"] <= 25 and from_tokenizer["base_size"] == base.vocab_size
