"""lexicon-share: whole-word uses, the contrast language, Turkish lower case, and why the old rule was lax."""

from __future__ import annotations

import pytest

from zoo.errors import ZooError
from zoo.metrics.base import EvalContext
from zoo.metrics.text import LexiconShare, whole_word_ids
from zoo.text.lib import LiBTokenizer


def _chunks(chunks: list[str]) -> LiBTokenizer:
    tok = LiBTokenizer(epochs=0)
    tok._compile(chunks)  # a fixed greedy vocabulary with byte fallback: tokenizations are known by hand
    return tok


def _share(tokenizer, texts: list[str], **options) -> dict:
    metric = LexiconShare(**options)
    metric.setup(tokenizer)
    metric.update(EvalContext(tokenizer, {"text": texts}))
    return metric.compute()


def test_a_token_counts_only_where_it_stands_as_a_whole_word():
    tok = _chunks([" ev", "ler", " the"])
    # tokens: " ev" "ler" (inside "evler"), " ev" (whole), " the" (whole, but an English word), "!" (too short).
    # Candidates ev ler the (4 uses); hit: ev, whole once -> unique 1/3, tokens 1/4.
    result = _share(tok, [" evler ev the!"], lang="tr")
    assert result == {"unique": pytest.approx(1 / 3), "tokens": pytest.approx(1 / 4)}
    # The old rule: every candidate in wordfreq's Turkish list counts wherever it is used ("the" and "ler"
    # are in that list).
    old = _share(tok, [" evler ev the!"], lang="tr", whole_words=False, contrast=None)
    assert old == {"unique": 1.0, "tokens": 1.0}


def test_whole_words_are_letter_runs_and_normalising_tokenizers_encode_each_run():
    tok = _chunks([" ev", "ler", "Ankara", "'da"])
    ids = tok.encode(" evler Ankara'da")
    # " ev" is followed by letters; "Ankara" stops at the apostrophe; "'da" starts with one
    assert tok.token_bytes(whole_word_ids(tok, ids, " evler Ankara'da")) == [b"Ankara"]

    class Lowercasing:  # tokens that do not spell the text, as a lower-casing WordPiece would give
        def encode(self, text):
            return tok.encode(text.lower())

        def token_bytes(self, ids):
            return tok.token_bytes(ids)

    # the tokens of "ler ev" do not spell "ler EV": each letter run is encoded alone, and "ler" is one token
    # while "EV" (-> "ev" without its space) is the bytes e, v
    lower = Lowercasing()
    assert whole_word_ids(lower, lower.encode("ler EV"), "ler EV") == tok.encode("ler")


def test_turkish_lower_case_keeps_dotless_i():
    tok = _chunks([" IŞIK"])
    # "IŞIK".casefold() is "işik", no word; in Turkish it is "ışık" (light)
    assert _share(tok, [" IŞIK"], lang="tr")["unique"] == 1.0


def test_unknown_languages_are_refused_by_name():
    with pytest.raises(ZooError, match="silently use English"):
        LexiconShare(lang="xx")
    with pytest.raises(ZooError, match="list for 'yy'"):
        LexiconShare(lang="tr", contrast="yy")
    with pytest.raises(ZooError, match="no tokens were seen"):
        LexiconShare(lang="tr").compute()


def test_a_bpe_that_saw_no_turkish_is_no_longer_mostly_turkish_words():
    pytest.importorskip("turkish_treebanks")
    import zoo
    from zoo.data.turkish import turkish_treebank

    bpe = zoo.load("bpe-32k", pretrained=True)  # fortunes in 12 languages and Python code: no Turkish
    held_out = turkish_treebank(split="test", limit=200).texts
    old = _share(bpe, held_out, lang="tr", whole_words=False, contrast=None)
    new = _share(bpe, held_out, lang="tr")
    assert old["unique"] > 0.6 and old["tokens"] > 0.8  # the laxness issue 22 reports
    assert new["unique"] < 0.15 and new["tokens"] < 0.15
