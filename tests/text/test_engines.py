"""Engines give the reference library's ids, or are not used: per vocabulary, on real text in 12 languages and on
generated strings; batches equal the loop (no per-call thread pool), and threads are set and refused clearly."""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

import zoo
from tests._text_corpus import corpus, held_out
from zoo.errors import ZooError
from zoo.text import engines
from zoo.text.bytelevel import PROBE
from zoo.text.external import HFFileTokenizer
from zoo.text.fast import build_engine
from zoo.text.hf import BPETokenizer, UnigramTokenizer

TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cn"]), max_size=60)
_CACHE: dict = {}


def _trained_bpe() -> BPETokenizer:
    if "bpe" not in _CACHE:
        tok = BPETokenizer(vocab_size=1200)
        tok.fit(corpus(600))
        _CACHE["bpe"] = tok
    return _CACHE["bpe"]


def _without_ignore_merges() -> HFFileTokenizer:
    """The trained BPE's tokenizer.json with ``ignore_merges`` off: tiktoken refuses it, kitoken may serve it."""
    if "merges" not in _CACHE:
        import tempfile
        from pathlib import Path

        state = json.loads(_trained_bpe().hf_tokenizer.to_str())
        state["model"]["ignore_merges"] = False
        path = Path(tempfile.mkdtemp()) / "tokenizer.json"
        path.write_text(json.dumps(state))
        tok = zoo.load(f"file:{path}")
        assert isinstance(tok, HFFileTokenizer)
        _CACHE["merges"] = tok
    return _CACHE["merges"]


def _hf_ids(tok, text: str) -> list[int]:
    return tok.hf_tokenizer.encode(text, add_special_tokens=False).ids


# -- BPE from tokenizer.json -----------------------------------------------------------------------------


def test_a_bpe_tiktoken_can_run_is_served_by_tiktoken_with_identical_ids():
    tok = _trained_bpe()
    assert tok.engine == "tiktoken" and tok.uses_tiktoken
    texts = held_out(400)
    assert tok.encode(texts) == [_hf_ids(tok, t) for t in texts] == [tok.encode(t) for t in texts]


def test_ignore_merges_off_is_served_by_kitoken_with_identical_ids():
    pytest.importorskip("kitoken")
    tok = _without_ignore_merges()
    assert tok.engine == "kitoken" and not tok.uses_tiktoken and tok.tiktoken_encoding is None
    texts = held_out(400)
    assert tok.encode(texts) == [_hf_ids(tok, t) for t in texts]
    joined = "\n".join(texts)
    assert tok.encode(joined) == _hf_ids(tok, joined)
    # The special token's text is encoded as text (kitoken's extraction is off), as tokenizers does here.
    assert tok.encode("a <|endoftext|> b") == _hf_ids(tok, "a <|endoftext|> b")
    assert tok.special_ids["<|endoftext|>"] not in tok.encode("<|endoftext|>")


@settings(max_examples=300, deadline=None)
@given(text=TEXT)
def test_every_bpe_engine_matches_tokenizers_on_generated_strings(text):
    for tok in (_trained_bpe(), _without_ignore_merges()):
        assert tok.encode(text) == _hf_ids(tok, text)


def test_without_kitoken_the_vocabulary_falls_back_to_tokenizers(monkeypatch):
    monkeypatch.setitem(sys.modules, "kitoken", None)  # import kitoken now raises ImportError
    assert build_engine(_without_ignore_merges().hf_tokenizer) is None


def test_an_engine_that_disagrees_on_the_probe_is_not_used():
    wrong = engines.Engine("wrong", lambda text: [0])
    assert engines.agrees(wrong, lambda text: [1], [PROBE]) is None
    failing = engines.Engine("failing", lambda text: 1 / 0)
    assert engines.agrees(failing, lambda text: [1], [PROBE]) is None
    right = engines.Engine("right", lambda text: [len(text)])
    assert engines.agrees(right, lambda text: [len(text)], [PROBE]) is right


def test_a_normalizer_keeps_tokenizers():
    state = json.loads(_trained_bpe().hf_tokenizer.to_str())
    state["model"]["ignore_merges"] = False
    state["normalizer"] = {"type": "Lowercase"}
    assert build_engine(Tokenizer.from_str(json.dumps(state))) is None


# -- ranks: the encodings rs-bpe and bpe-openai ship --------------------------------------------------------


def _cl100k():
    pytest.importorskip("bpe_openai")
    import tiktoken

    if "cl100k" not in _CACHE:
        ranks, pattern = engines.shipped_ranks("cl100k_base")
        _CACHE["cl100k"] = ranks, pattern, tiktoken.Encoding("cl100k", pat_str=pattern, mergeable_ranks=ranks,
                                                            special_tokens={})  # fmt: skip
    return _CACHE["cl100k"]


def test_shipped_ranks_are_served_by_rs_bpe_with_tiktokens_ids():
    pytest.importorskip("rs_bpe")
    ranks, pattern, encoding = _cl100k()
    engine = engines.rank_engine(ranks, pattern, encoding.encode_ordinary)
    assert engine is not None and engine.name == "rs-bpe"
    texts = held_out(400) + ["\n".join(held_out(400))]
    assert [engine.encode(t) for t in texts] == [encoding.encode_ordinary(t) for t in texts]


def test_a_cl100k_rank_file_loads_onto_rs_bpe_with_tiktokens_ids(tmp_path):
    pytest.importorskip("rs_bpe")
    import base64

    import zoo

    ranks, pattern, encoding = _cl100k()
    lines = (f"{base64.b64encode(t).decode()} {r}\n" for t, r in sorted(ranks.items(), key=lambda kv: kv[1]))
    (tmp_path / "cl100k_base.tiktoken").write_text("".join(lines))
    tok = zoo.load(f"file:{tmp_path / 'cl100k_base.tiktoken'}")
    assert tok.engine == "rs-bpe"
    texts = held_out(200) + ["\n".join(held_out(200))]
    assert tok.encode(texts) == [encoding.encode_ordinary(t) for t in texts]
    assert [tok.encode(t) for t in texts[:50]] == [encoding.encode_ordinary(t) for t in texts[:50]]
    assert tok.decode(tok.encode("a\ud800b")) == "a\ud800b"  # the surrogate policy still holds on rs-bpe
    tok.pattern = pattern + "|x"  # an unshipped pattern: tiktoken serves it
    tok._adopt(ranks)
    assert tok.engine == "tiktoken"


def test_other_ranks_or_another_pattern_get_no_shipped_engine():
    ranks, pattern, encoding = _cl100k()
    swapped = dict(ranks)
    a, b = b"the", b"and"
    swapped[a], swapped[b] = ranks[b], ranks[a]
    assert engines.shipped_encoding(ranks, pattern) == "cl100k_base"
    assert engines.shipped_encoding(swapped, pattern) is None
    assert engines.shipped_encoding(ranks, pattern + "|x") is None
    assert engines.rank_engine(swapped, pattern, encoding.encode_ordinary) is None


@settings(max_examples=200, deadline=None)
@given(text=TEXT)
def test_rank_engines_match_tiktoken_on_generated_strings(text):
    pytest.importorskip("rs_bpe")
    pytest.importorskip("kitoken")
    ranks, pattern, encoding = _cl100k()
    if "engines" not in _CACHE:
        _CACHE["engines"] = [
            engines.rs_bpe_engine("cl100k_base"),
            engines.bpe_openai_engine("cl100k_base"),
            engines.kitoken_ranks_engine(ranks, pattern),
        ]
    expected = encoding.encode_ordinary(text)
    for engine in _CACHE["engines"]:
        assert list(engine.encode(text)) == expected, engine.name


# -- Unigram ----------------------------------------------------------------------------------------------


def _trained_unigram() -> UnigramTokenizer:
    if "unigram" not in _CACHE:
        tok = UnigramTokenizer(vocab_size=800)
        tok.fit(corpus(400))
        _CACHE["unigram"] = tok
    return _CACHE["unigram"]


def test_unigram_stays_on_tokenizers_and_sentencepiece_segments_the_same_text():
    pytest.importorskip("sentencepiece")
    tok = _trained_unigram()
    assert tok.engine == "tokenizers"  # no engine is exact for Unigram (zoo.text.engines)
    engine, why = engines.sentencepiece_unigram(json.loads(tok.hf_tokenizer.to_str()))
    assert why is None
    texts = held_out(200)
    # SentencePiece's float32 Viterbi may pick another path among near ties, but always a segmentation of the
    # same bytes into this vocabulary's pieces, which zoo's decoder turns back into the text.
    assert [tok.decode(engine.encode(t)) for t in texts] == texts
    same = sum(engine.encode(t) == _hf_ids(tok, t) for t in texts)
    assert same >= 0.9 * len(texts)


def test_sentencepiece_conversion_refuses_what_it_cannot_express():
    pytest.importorskip("sentencepiece")
    bpe_state = json.loads(_trained_bpe().hf_tokenizer.to_str())
    assert engines.sentencepiece_unigram(bpe_state) == (None, "model is BPE, not Unigram")
    state = json.loads(_trained_unigram().hf_tokenizer.to_str())
    state["normalizer"] = {"type": "NFC"}
    assert engines.sentencepiece_unigram(state) == (None, "a normalizer rewrites the text")


# -- batches and threads ------------------------------------------------------------------------------------


def test_batches_never_start_tiktokens_per_call_pool(monkeypatch):
    tok = _trained_bpe()

    def refuse(*args, **kwargs):
        raise AssertionError("encode_ordinary_batch starts a thread pool on every call")

    monkeypatch.setattr(tok.tiktoken_encoding, "encode_ordinary_batch", refuse)
    texts = held_out(50)
    assert tok.encode(texts) == [tok.encode(t) for t in texts]


def test_big_batches_split_over_the_pool_give_the_loops_ids(monkeypatch):
    tok = _trained_bpe()
    used = []
    original = engines._executor
    monkeypatch.setattr(engines, "_executor", lambda size: used.append(size) or original(size))
    small = held_out(50)
    big = ["\n".join(held_out(400))] * 6  # well above MIN_PARALLEL_CHARS per worker
    with engines.threads(3):
        assert tok.encode(small) == [tok.encode(t) for t in small]
        assert used == []  # too little text for a pool: the loop
        assert tok.encode(big) == [_hf_ids(tok, t) for t in big]
    assert used and set(used) == {3}
    with engines.threads(1):
        used.clear()
        tok.encode(big)
        assert used == []


def test_thread_settings_are_read_checked_and_restored(monkeypatch):
    monkeypatch.delenv(engines.THREADS_ENV, raising=False)
    assert engines.get_threads() == 1
    monkeypatch.setenv(engines.THREADS_ENV, "4")
    assert engines.get_threads() == 4
    with engines.threads(2):
        assert engines.get_threads() == 2
    assert engines.get_threads() == 4
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(engines.THREADS_ENV, bad)
        with pytest.raises(ZooError, match=r"\$ZOO_TEXT_THREADS: .*int >= 1"):
            engines.get_threads()
    for bad in (0, 1.5, True):
        with pytest.raises(ZooError, match="the number of encode threads must be an int >= 1"):
            engines.set_threads(bad)


def test_the_tokenizers_path_batches_as_a_loop_with_identical_ids():
    tok = _trained_unigram()
    texts = held_out(100)
    with engines.threads(1):
        assert tok.encode(texts) == [_hf_ids(tok, t) for t in texts]
    with engines.threads(2):
        big = ["\n".join(texts)] * 4
        assert tok.encode(big) == [_hf_ids(tok, t) for t in big]


def test_added_tokens_that_are_not_special_keep_tokenizers():
    from tokenizers import AddedToken

    tok = BPETokenizer(vocab_size=600)
    tok.fit(corpus(200))
    tk = tok.hf_tokenizer
    tk.add_tokens([AddedToken("<tool>", special=False)])  # tokenizers matches it in text; tiktoken would not
    tok._set_tokenizer(tk)
    assert tok.engine == "tokenizers"
    assert tok.encode("a <tool> b") == _hf_ids(tok, "a <tool> b")
    state = json.loads(tk.to_str())
    state["model"]["ignore_merges"] = False
    assert build_engine(Tokenizer.from_str(json.dumps(state))) is None  # nor kitoken
