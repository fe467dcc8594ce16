"""Embedding transfer: overlap copying, FVT, normal / multivariate sampling, FOCUS, files and the CLI."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from zoo.analysis.vocab import load_vocabulary, symbols_to_bytes
from zoo.errors import ZooError
from zoo.transfer.embeddings import _multivariate_rows, sparsemax, transfer_embeddings, transfer_file

REPO = Path(__file__).resolve().parents[2]


def _words(seed: int, alphabet: str, count: int) -> str:
    rng = random.Random(seed)
    lexicon = ["".join(rng.choice(alphabet) for _ in range(rng.randint(2, 6))) for _ in range(120)]
    weights = [1 / (r + 1) for r in range(len(lexicon))]
    return "\n".join(" ".join(rng.choices(lexicon, weights, k=12)) for _ in range(count))


def _bpe(text: str | list[str], merges: int, specials=("<pad>",)) -> Tokenizer:
    """A byte-level BPE of ``merges`` merges trained on ``text`` (one string, or several)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=256 + len(specials) + merges,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([text] if isinstance(text, str) else text, trainer)
    return tokenizer


@pytest.fixture(scope="module")
def pair():
    old_text, new_text = _words(1, "abcdefgh", 400), _words(2, "defghijk", 400)
    old, new = _bpe(old_text, 80), _bpe(new_text, 80, specials=("<pad>", "<new>"))
    torch.manual_seed(0)
    embeddings = torch.randn(old.get_vocab_size(), 6)
    return old, new, embeddings, new_text


def test_sparsemax_by_hand():
    weights = sparsemax(torch.tensor([[1.0, 0.0], [0.5, 0.4], [0.2, 0.2], [3.0, 2.9, -5.0]][:3]))
    torch.testing.assert_close(weights, torch.tensor([[1.0, 0.0], [0.55, 0.45], [0.5, 0.5]]))
    scores = torch.randn(50, 7)
    weights = sparsemax(scores)
    torch.testing.assert_close(weights.sum(-1), torch.ones(50))
    assert (weights >= 0).all() and (weights == 0).any()


def test_overlapping_tokens_are_copied_and_fvt_averages_pieces(pair):
    old, new, embeddings, _ = pair
    result = transfer_embeddings(embeddings, old, new, "fvt")
    old_vocab, new_vocab = old.get_vocab(), new.get_vocab()
    shared = set(old_vocab) & set(new_vocab)
    assert result.copied == len(shared) and result.embeddings.shape == (new.get_vocab_size(), 6)
    for token in shared:
        torch.testing.assert_close(result.embeddings[new_vocab[token]], embeddings[old_vocab[token]])
    # a new-only merge: its row is the mean of the old rows of the pieces the old BPE cuts it into
    token = next(t for t in new_vocab if t not in old_vocab and len(t) > 2 and not t.startswith("<"))
    pieces = [t.id for t in old.model.tokenize(token)]
    assert len(pieces) > 1
    torch.testing.assert_close(result.embeddings[new_vocab[token]], embeddings[pieces].mean(0))
    # the new special token has no bytes and no old match: it is sampled
    assert result.initialised == {"fvt": len(new_vocab) - len(shared) - 1, "normal": 1}


def test_random_methods_are_seeded_and_keep_the_overlap(pair):
    old, new, embeddings, _ = pair
    a = transfer_embeddings(embeddings, old, new, "normal", seed=1).embeddings
    b = transfer_embeddings(embeddings, old, new, "normal", seed=1).embeddings
    c = transfer_embeddings(embeddings, old, new, "multivariate", seed=1).embeddings
    torch.testing.assert_close(a, b)
    fresh = [i for t, i in new.get_vocab().items() if t not in old.get_vocab()]
    kept = [i for t, i in new.get_vocab().items() if t in old.get_vocab()]
    torch.testing.assert_close(a[kept], c[kept])
    assert not torch.allclose(a[fresh], c[fresh])


def test_multivariate_rows_follow_the_old_covariance():
    generator = torch.Generator().manual_seed(0)
    mixing = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, -0.5, 0.3]])
    old = torch.randn(4000, 3, generator=generator) @ mixing.T + torch.tensor([1.0, -2.0, 0.5])
    rows = _multivariate_rows(old, 20000, generator)
    torch.testing.assert_close(rows.mean(0), old.mean(0), atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(rows.T), torch.cov(old.T), atol=0.06, rtol=0)


def test_focus_mixes_overlapping_rows(pair):
    pytest.importorskip("fasttext", reason="FOCUS needs a fastText build (pip install fasttext-wheel)")
    old, new, _, new_text = pair
    # Rows that are probability vectors: any FOCUS row (a convex mix of old rows) is one too.
    probabilities = torch.rand(old.get_vocab_size(), 5).softmax(-1)
    result = transfer_embeddings(
        probabilities, old, new, "focus", target_texts=[new_text], fasttext_dim=16, fasttext_min_count=2
    )
    assert result.initialised.get("focus", 0) > 10
    fresh = [i for t, i in new.get_vocab().items() if t not in old.get_vocab() and not t.startswith("<")]
    rows = result.embeddings[fresh]
    focus_like = (rows >= 0).all(-1) & torch.isclose(rows.sum(-1), torch.ones(len(fresh)))
    assert focus_like.sum() == result.initialised["focus"]


def test_bad_inputs(pair):
    old, new, embeddings, _ = pair
    with pytest.raises(ZooError, match="unknown transfer method"):
        transfer_embeddings(embeddings, old, new, "magic")
    with pytest.raises(ZooError, match=r"expected \[V_old=\d+, D\]"):
        transfer_embeddings(embeddings[:10], old, new)
    with pytest.raises(ZooError, match="target-language text"):
        transfer_embeddings(embeddings, old, new, "focus")


def test_zoo_byte_tokenizer_as_the_old_vocabulary(pair):
    _, new, _, _ = pair
    vocab = load_vocabulary("byte")
    assert vocab.size == 259 and vocab.token_bytes[200] == bytes([200]) and vocab.specials["<pad>"] == 256
    old_rows = torch.arange(259 * 2, dtype=torch.float32).reshape(259, 2)
    result = transfer_embeddings(old_rows, "byte", new, "fvt")
    token = next(t for t in new.get_vocab() if len(t) == 3 and not t.startswith("<"))
    expected = old_rows[list(symbols_to_bytes(token))].mean(0)  # byte ids are the bytes
    torch.testing.assert_close(result.embeddings[new.get_vocab()[token]], expected)
    torch.testing.assert_close(result.embeddings[new.token_to_id("<pad>")], old_rows[256])


def test_file_and_cli_rewrite_every_vocabulary_table(pair, tmp_path):
    old, new, embeddings, _ = pair
    old.save(str(tmp_path / "old.json"))
    new.save(str(tmp_path / "new.json"))
    tensors = {"tok.weight": embeddings, "head.bias": torch.zeros(old.get_vocab_size()), "norm": torch.ones(6)}
    save_file(tensors, str(tmp_path / "model.safetensors"))
    results = transfer_file(
        tmp_path / "model.safetensors", tmp_path / "old.json", tmp_path / "new.json", tmp_path / "a.st"
    )
    assert set(results) == {"tok.weight", "head.bias"}
    with safe_open(str(tmp_path / "a.st"), framework="pt") as handle:
        assert handle.get_tensor("tok.weight").shape == (new.get_vocab_size(), 6)
        assert handle.get_tensor("head.bias").shape == (new.get_vocab_size(),)
        assert torch.equal(handle.get_tensor("norm"), torch.ones(6))
        assert handle.metadata()["zoo_transfer_method"] == "fvt"
    argv = [
        sys.executable,
        "-m",
        "zoo",
        "transfer",
        str(tmp_path / "model.safetensors"),
        "--old",
        str(tmp_path / "old.json"),
    ]
    argv += [
        "--new",
        str(tmp_path / "new.json"),
        "-o",
        str(tmp_path / "b.st"),
        "--method",
        "normal",
        "--key",
        "tok.weight",
    ]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["tables"]["tok.weight"]["rows"] == new.get_vocab_size()
    bad = subprocess.run(argv[:-2] + ["--key", "missing"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no tensor named 'missing'" in bad.stderr
