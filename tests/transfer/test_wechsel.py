"""WECHSEL: Procrustes alignment, dictionaries, top-k softmax rows, the transfer method and its CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.transfer.test_transfer import _bpe, _words
from zoo.analysis.vocab import load_vocabulary
from zoo.errors import ZooError
from zoo.transfer.embeddings import transfer_embeddings
from zoo.transfer.wechsel import (
    align,
    load_dictionary,
    procrustes,
    pycountry_dictionary,
    read_dictionary,
    token_vectors,
    wechsel_rows,
    words_of,
)

REPO = Path(__file__).resolve().parents[2]


def _rotation(dim: int, seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed)))
    return q * r.diagonal().sign()  # a proper random orthogonal matrix


class FakeVectors:
    """Word vectors built from position-dependent character vectors, optionally rotated: a fastText stand-in."""

    def __init__(self, words, rotation: torch.Tensor | None = None, dim: int = 8, case_blind: bool = False):
        self.words, self.rotation, self.dim, self.case_blind = list(words), rotation, dim, case_blind

    def get_word_vector(self, word: str) -> torch.Tensor:
        vector = torch.zeros(self.dim)
        for i, char in enumerate(word.lower() if self.case_blind else word):
            seed = ord(char) * 131 + min(i, 3)
            vector += torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))
        return vector if self.rotation is None else vector @ self.rotation


def test_procrustes_recovers_a_known_rotation():
    rotation = _rotation(16, seed=3)
    source = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
    noise = 0.01 * torch.randn(300, 16, generator=torch.Generator().manual_seed(1))
    found = procrustes(source, source @ rotation + noise)
    torch.testing.assert_close(found, rotation, atol=5e-3, rtol=0)
    torch.testing.assert_close(found @ found.T, torch.eye(16), atol=1e-5, rtol=0)  # orthogonal
    with pytest.raises(ZooError, match=r"two \[N, d\] matrices"):
        procrustes(source, source[:, :4])


def test_align_finds_the_rotation_through_dictionary_words_and_their_case_variants():
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo"]
    rotation = _rotation(8, seed=5)
    source = FakeVectors(words, case_blind=True)
    target = FakeVectors([w.title() for w in words], rotation, case_blind=True)
    # lower-case source entries and upper-case target entries: matched through WECHSEL's lower/title variants
    found, used = align(source, target, [(w, w.upper()) for w in words] + [("missing", "fehlt")])
    assert used == len(words)
    torch.testing.assert_close(found, rotation, atol=1e-4, rtol=0)
    with pytest.raises(ZooError, match="only 0 of 1 dictionary pairs"):
        align(source, target, [("nope", "nein")])


def test_wechsel_rows_by_hand():
    source_vectors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    source_rows = torch.tensor([[10.0], [20.0], [30.0]])
    target = torch.tensor([[math.cos(0.3), math.sin(0.3)]])  # cos 0.955 to token 0, 0.296 to token 1
    weights = torch.tensor([math.cos(0.3), math.sin(0.3)]).div(0.1).softmax(0)
    expected = weights[0] * 10 + weights[1] * 20
    torch.testing.assert_close(wechsel_rows(source_vectors, target, source_rows, k=2)[0, 0], expected)
    torch.testing.assert_close(wechsel_rows(source_vectors, target, source_rows, k=1), torch.tensor([[10.0]]))
    with pytest.raises(ZooError, match="k >= 1"):
        wechsel_rows(source_vectors, target, source_rows, k=0)


def test_dictionaries(tmp_path):
    path = tmp_path / "en-de.tsv"
    path.write_text("# a comment\nhouse\tHaus\n\nmouse Maus\n", encoding="utf-8")
    assert read_dictionary(path) == [("house", "Haus"), ("mouse", "Maus")]
    path.write_text("one two three\n", encoding="utf-8")
    with pytest.raises(ZooError, match="line 1: expected 'source<TAB>target'"):
        read_dictionary(path)
    pairs = pycountry_dictionary("de")
    assert ("Germany", "Deutschland") in pairs and all(" " not in s + t for s, t in pairs)
    both = FakeVectors(["Berlin", "und", "42"]), FakeVectors(["42", "Berlin", "Haus"])
    assert load_dictionary("identical", *both) == [("Berlin", "Berlin"), ("42", "42")]
    assert len(load_dictionary("pycountry:de+identical", *both)) == len(pairs) + 2
    with pytest.raises(ZooError, match="expected one of pycountry:LANG"):
        load_dictionary("klingon")
    with pytest.raises(ZooError, match="no catalog for 'xx'"):
        load_dictionary("pycountry:xx")
    assert words_of("Die Maus, o'Neil!") == ["Die", "Maus", ",", "o'Neil", "!"]


@pytest.fixture(scope="module")
def pair():
    old_text, new_text = _words(1, "abcdefgh", 300), _words(2, "defghijk", 300)
    old, new = _bpe(old_text, 80), _bpe(new_text, 80, specials=("<pad>", "<new>"))
    embeddings = torch.randn(old.get_vocab_size(), 6, generator=torch.Generator().manual_seed(0))
    return old, new, embeddings, old_text, new_text


def test_wechsel_with_aligned_spaces_maps_each_token_to_its_own_old_row(pair):
    """Target space = a rotation of the source space: at k = 1 every shared token finds its own old row again."""
    old, new, embeddings, _, _ = pair
    words = sorted(set(_words(1, "abcdefgh", 50).split()) | set(_words(2, "defghijk", 50).split()))
    rotation = _rotation(8, seed=7)
    source, target = FakeVectors(words), FakeVectors(words, rotation)
    result = transfer_embeddings(
        embeddings,
        old,
        new,
        "wechsel",
        source_word_vectors=source,
        target_word_vectors=target,
        dictionary="identical",
        wechsel_k=1,
        wechsel_copy_overlap=False,
    )
    old_vocab, new_vocab = load_vocabulary(old), load_vocabulary(new)

    def text(data):
        return data.decode("utf-8", "ignore").strip() if data else ""

    assert result.copied == 1  # only <pad>, a special; every other row went through the aligned spaces
    assert result.initialised["wechsel"] > 150
    # <new>, bytes >= 0x80 alone and whitespace decode to no text, so no vector: they are sampled
    with_text = sum(bool(text(d)) for d in new_vocab.token_bytes)
    assert result.initialised == {"wechsel": with_text, "normal": new.get_vocab_size() - 1 - with_text}
    by_text: dict[str, list[int]] = {}
    for i, data in enumerate(old_vocab.token_bytes):
        by_text.setdefault(text(data), []).append(i)
    shared = [i for i, data in enumerate(new_vocab.token_bytes) if text(data) and text(data) in by_text]
    assert len(shared) > 20
    for i in shared:
        candidates = embeddings[by_text[text(new_vocab.token_bytes[i])]]
        assert torch.isclose(candidates, result.embeddings[i], atol=1e-5).all(-1).any(), i
    # default: overlapping tokens keep their rows, as every zoo method does
    default = transfer_embeddings(
        embeddings, old, new, "wechsel", source_word_vectors=source, target_word_vectors=target
    )
    assert default.copied == len(set(old.get_vocab()) & set(new.get_vocab()))


def test_wechsel_needs_word_vectors(pair):
    old, new, embeddings, _, _ = pair
    with pytest.raises(ZooError, match="source-language word vectors"):
        transfer_embeddings(embeddings, old, new, "wechsel", target_texts=["x"])
    with pytest.raises(ZooError, match="no such file"):
        transfer_embeddings(embeddings, old, new, "wechsel", source_word_vectors="missing.bin", target_texts=["x"])


def test_token_vectors_skip_specials_and_empty_tokens(pair):
    _, new, _, _, _ = pair
    vocab = load_vocabulary(new)
    vectors, mask = token_vectors(vocab, FakeVectors([]))
    assert vectors.shape == (vocab.size, 8)
    assert not mask[vocab.specials["<pad>"]] and not mask[vocab.index()[b" "]]
    assert mask[vocab.index()[b"d"]]


def test_cli_trains_fasttext_on_both_languages(pair, tmp_path):
    pytest.importorskip("fasttext", reason="WECHSEL's word vectors need a fastText build (pip install fasttext-wheel)")
    old, new, embeddings, old_text, new_text = pair
    old.save(str(tmp_path / "old.json"))
    new.save(str(tmp_path / "new.json"))
    save_file({"tok.weight": embeddings}, str(tmp_path / "model.safetensors"))
    (tmp_path / "src.txt").write_text(old_text, encoding="utf-8")
    (tmp_path / "tgt.txt").write_text(new_text, encoding="utf-8")
    argv = [sys.executable, "-m", "zoo", "transfer", str(tmp_path / "model.safetensors"), "--old",
            str(tmp_path / "old.json"), "--new", str(tmp_path / "new.json"), "-o", str(tmp_path / "out.st"),
            "--method", "wechsel", "--source-text", str(tmp_path / "src.txt"), "--target-text",
            str(tmp_path / "tgt.txt"), "--dictionary", "identical"]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    table = json.loads(done.stdout)["tables"]["tok.weight"]
    assert table["rows"] == new.get_vocab_size() and table["initialised"].get("wechsel", 0) > 10
    missing = subprocess.run(argv[:-4] + ["--dictionary", "identical"], cwd=REPO, capture_output=True, text=True,
                             timeout=120)  # fmt: skip
    assert missing.returncode == 2 and "target-language word vectors" in missing.stderr


def test_cldr_dictionary_through_babel():
    pytest.importorskip("babel", reason="CLDR names come through babel (pip install babel)")
    pairs = load_dictionary("cldr:de")
    assert {("Monday", "Montag"), ("January", "Januar"), ("German", "Deutsch")} <= set(pairs)
    with pytest.raises(ZooError, match="CLDR has no locale"):
        load_dictionary("cldr:qq")
