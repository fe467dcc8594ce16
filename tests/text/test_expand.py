"""Vocabulary expansion (zoo.text.expand): a BPE trained on English grown with German tokens keeps every old id's
meaning, stays lossless, agrees with tokenizers and tiktoken, exports, and needs fewer tokens per German word."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zoo
from zoo.data.text import fortunes
from zoo.errors import ZooError
from zoo.text.bytelevel import has_lone_surrogate, to_byte_chars
from zoo.text.digits import pre_tokenize
from zoo.text.expand import bpe, expand_bpe, fertility_table
from zoo.text.export import export
from zoo.text.external import TiktokenTokenizer
from zoo.text.hf import BPETokenizer, UnigramTokenizer

NEW = 300


@pytest.fixture(scope="module")
def base() -> BPETokenizer:
    tok = BPETokenizer(vocab_size=800)
    tok.fit(fortunes("en", limit=1500).texts)
    return tok


@pytest.fixture(scope="module")
def german() -> list[str]:
    return fortunes("de", limit=1500).texts


@pytest.fixture(scope="module")
def expanded(base, german):
    return expand_bpe(base, german, NEW)


@pytest.fixture(scope="module")
def probe_texts() -> list[str]:
    return (fortunes("de", split="test", limit=60).texts + fortunes("en", split="test", limit=60).texts
            + fortunes("ru", split="test", limit=20).texts + ["", "Über Größe: 12 345,67 € — naïve 🌍\n\tend"])


def _state(tok) -> dict:
    return json.loads(tok.hf_tokenizer.to_str())


# -- what the merged vocabulary holds ------------------------------------------------------------------------------

def test_every_old_id_keeps_its_token_and_the_base_merges_come_first(base, expanded):
    merged = expanded.tokenizer
    assert isinstance(merged, BPETokenizer) and expanded.base_size == base.vocab_size == 800
    old = list(range(base.vocab_size))
    assert merged.token_bytes(old) == base.token_bytes(old)
    assert merged.special_ids == base.special_ids == {"<|endoftext|>": 0}
    before, after = _state(base)["model"], _state(merged)["model"]
    assert {t: i for t, i in after["vocab"].items() if i < 800} == before["vocab"]
    assert after["merges"][: len(before["merges"])] == before["merges"]
    assert len(after["merges"]) == len(before["merges"]) + NEW and after["ignore_merges"]


def test_appended_ids_follow_the_base_one_per_new_token(base, expanded):
    assert expanded.added_ids == list(range(800, 800 + NEW))
    assert expanded.tokenizer.vocab_size == 800 + NEW
    assert expanded.tokenizer.config["vocab_size"] == 800 + NEW
    assert expanded.tokenizer.token_bytes(expanded.added_ids) == expanded.added_bytes
    assert [b.decode("utf-8", "backslashreplace") for b in expanded.added_bytes] == expanded.added_tokens
    base_tokens = set(base.token_bytes(range(base.vocab_size)))
    assert not base_tokens & set(expanded.added_bytes) and len(set(expanded.added_bytes)) == NEW
    assert {"ü", " der", " nicht"} <= set(expanded.added_tokens)  # German, learnt early
    assert expanded.skipped["in_base"] > 0


def test_each_new_token_is_one_merge_of_earlier_tokens(base, expanded):
    """The merged list is a valid BPE: every appended merge joins two tokens that exist before it, making its
    own token, and BPE over the merged list rebuilds each appended token from its bytes."""
    model = _state(expanded.tokenizer)["model"]
    vocab = model["vocab"]
    merges = model["merges"][len(_state(base)["model"]["merges"]):]
    for (left, right), new_id in zip(merges, expanded.added_ids):
        assert vocab[left] < new_id and vocab[right] < new_id and vocab[left + right] == new_id
    ranks = {(a, b): r for r, (a, b) in enumerate(model["merges"])}
    for token in expanded.added_bytes:
        assert _merge_chars(to_byte_chars(token), ranks) == [to_byte_chars(token)]


def _merge_chars(chars: str, ranks: dict) -> list[str]:
    parts = list(chars)
    while len(parts) > 1:
        pairs = [(ranks.get((parts[i], parts[i + 1])), i) for i in range(len(parts) - 1)]
        pairs = [p for p in pairs if p[0] is not None]
        if not pairs:
            break
        _, i = min(pairs)
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts


def test_base_ids_spell_each_new_token_as_the_base_encodes_it(base, expanded):
    for token, ids in zip(expanded.added_bytes, expanded.base_ids):
        assert len(ids) >= 2 and all(i < 800 for i in ids)
        assert b"".join(base.token_bytes(ids)) == token
        text = token.decode("utf-8", "replace")
        if "\ufffd" not in text and len(pre_tokenize(text)) == 1:  # one piece: the base runs BPE on its bytes
            assert base.encode(text) == ids


def test_bpe_merges_the_lowest_ranked_pair_first_and_the_leftmost_on_ties():
    ranks = {(b"a", b"b"): 0, (b"b", b"c"): 1, (b"ab", b"c"): 2}
    assert bpe(b"abc", lambda x, y: ranks.get((x, y))) == [b"abc"]
    assert bpe(b"bcab", lambda x, y: ranks.get((x, y))) == [b"bc", b"ab"]
    assert bpe(b"abab", lambda x, y: {(b"a", b"b"): 0}.get((x, y))) == [b"ab", b"ab"]
    assert bpe(b"", lambda x, y: 0) == []


# -- encoding --------------------------------------------------------------------------------------------------

def _boundaries(tok, ids: list[int]) -> set[int]:
    out, at = set(), 0
    for piece in tok.token_bytes(ids):
        at += len(piece)
        out.add(at)
    return out


strings = st.one_of(
    st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40),
    st.text(alphabet=" \t\n0123456789.,'-aeinrstchdüäößÜ€ру日\u00a0\U0001f30d\ud800", max_size=60),
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=strings)
def test_round_trip_and_old_segmentation_kept_on_any_string(base, expanded, text):
    """Lossless; the merged tokens only join whole base tokens; with no new id, exactly the base's ids; tiktoken
    and tokenizers agree."""
    merged = expanded.tokenizer
    ids, old = merged.encode(text), base.encode(text)
    assert merged.decode(ids) == text
    assert _boundaries(merged, ids) <= _boundaries(base, old)
    if all(i < expanded.base_size for i in ids):
        assert ids == old
    if not has_lone_surrogate(text):  # the tiktoken fast path gives what tokenizers gives
        assert ids == merged.hf_tokenizer.encode(text, add_special_tokens=False).ids


def test_text_the_base_knows_keeps_base_ids_and_german_gets_shorter(base, expanded, german):
    merged = expanded.tokenizer
    assert merged.encode("The quick brown fox, it's 1234567.") == base.encode("The quick brown fox, it's 1234567.")
    test = fortunes("de", split="test", limit=100).texts
    assert sum(map(len, merged.encode(test))) < 0.85 * sum(map(len, base.encode(test)))


def test_tiktoken_fast_path_gives_the_tokenizers_ids(expanded, probe_texts):
    merged = expanded.tokenizer
    assert merged.engine == "tiktoken"
    hf = merged.hf_tokenizer
    assert [merged.encode(t) for t in probe_texts] == [hf.encode(t, add_special_tokens=False).ids
                                                       for t in probe_texts]


def test_saved_and_reloaded_it_encodes_the_same(expanded, probe_texts, tmp_path):
    expanded.tokenizer.save_pretrained(tmp_path / "merged")
    again = zoo.load(str(tmp_path / "merged"))
    assert again.vocab_size == 800 + NEW and again.encode(probe_texts) == expanded.tokenizer.encode(probe_texts)


@pytest.mark.parametrize("format", ["hf", "tiktoken"])
def test_exports_like_any_other(expanded, format, tmp_path):
    files = export(expanded.tokenizer, format, tmp_path / format)  # checks the exported ids itself
    assert {p.name for p in files} >= {"hf": {"tokenizer.json"}, "tiktoken": {"tokenizer.tiktoken"}}[format]


def test_the_shipped_bpe_32k_grows_and_exports(tmp_path):
    base = zoo.load("bpe-32k", pretrained=True)
    grown = expand_bpe(base, fortunes("ru", limit=600).texts, 40)
    merged = grown.tokenizer
    assert grown.added_ids == list(range(32000, 32040)) and grown.base_size == 32000
    assert merged.token_bytes(range(32000)) == base.token_bytes(range(32000)) and merged.uses_tiktoken
    assert grown.skipped["in_base"] > 100  # bpe-32k was trained on Russian fortunes too
    for format in ("hf", "tiktoken"):
        export(merged, format, tmp_path / format)


# -- the new tokenizer given, not texts ------------------------------------------------------------------------

def test_a_trained_tokenizer_gives_what_its_texts_give(base, german, expanded):
    new = BPETokenizer(vocab_size=2000)  # same digits, so the same pre-tokenizer as the base
    new.fit(german)
    from_tok = expand_bpe(base, new, NEW)
    assert from_tok.added_bytes == expanded.added_bytes
    assert expand_bpe(base, new.hf_tokenizer, NEW).added_bytes == expanded.added_bytes


def test_a_tokenizer_splitting_text_otherwise_is_used_with_a_warning_and_never_spells_a_special(base, caplog):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from zoo.text.bytelevel import ALPHABET

    whole = Tokenizer(models.BPE())  # no regex split: "<|endoftext|>" can become one token
    whole.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    whole.decoder = decoders.ByteLevel()
    whole.train_from_iterator(["<|endoftext|>"] * 5, trainers.BpeTrainer(vocab_size=300, initial_alphabet=ALPHABET,
                                                                        show_progress=False))
    assert "<|endoftext|>" in whole.get_vocab()
    with caplog.at_level("WARNING", logger="zoo.text.expand"):
        grown = expand_bpe(base, whole, 20)
    assert "splits text unlike the base" in caplog.text
    assert grown.skipped["special"] == 1 and b"<|endoftext|>" not in grown.added_bytes
    assert grown.tokenizer.special_ids == {"<|endoftext|>": 0}
    ids = grown.tokenizer.encode("<|endoftext|>")  # text, never the control token
    assert 0 not in ids and grown.tokenizer.decode(ids) == "<|endoftext|>"


def test_the_seed_does_not_change_the_result(base, german, expanded):
    assert expand_bpe(base, list(reversed(german)), NEW, seed=7).added_bytes == expanded.added_bytes


def test_fewer_tokens_when_the_new_texts_run_out(base):
    small = expand_bpe(base, ["Schifffahrt Schifffahrt Schifffahrt"], 1000)
    assert 0 < len(small.added_ids) < 20
    assert small.tokenizer.decode(small.tokenizer.encode("Schifffahrt")) == "Schifffahrt"


# -- a tiktoken base, and specials after the ranks -------------------------------------------------------------

@pytest.fixture(scope="module")
def tiktoken_base(base, tmp_path_factory) -> TiktokenTokenizer:
    """The English BPE as a tiktoken rank file (ranks 0..798, the base's ids minus one), <|endoftext|> after them."""
    path = tmp_path_factory.mktemp("tiktoken") / "english.tiktoken"
    lines = [f"{base64.b64encode(t).decode()} {i - 1}" for i, t in enumerate(base.token_bytes(range(1, 800)), 1)]
    path.write_text("\n".join(lines) + "\n")
    return zoo.load(f"file:{path}", pattern=base.pattern, special_tokens={"<|endoftext|>": 799})


def test_a_tiktoken_base_grows_after_its_specials(tiktoken_base, german, expanded, probe_texts, tmp_path):
    grown = expand_bpe(tiktoken_base, german, NEW)
    merged = grown.tokenizer
    assert isinstance(merged, TiktokenTokenizer) and merged.special_tokens == {"<|endoftext|>": 799}
    assert grown.added_ids == list(range(800, 800 + NEW)) and merged.vocab_size == 800 + NEW
    assert grown.added_bytes == expanded.added_bytes  # the same BPE, so the same tokens
    assert merged.token_bytes(range(799)) == tiktoken_base.token_bytes(range(799))
    # its ids are the BPE's, shifted by the special that moved from id 0 to id 799
    shift = {i: i - 1 for i in range(1, 800)} | {i: i for i in range(800, 800 + NEW)}
    for text in probe_texts:
        assert merged.encode(text) == [shift[i] for i in expanded.tokenizer.encode(text)]
    for format in ("hf", "tiktoken"):
        export(merged, format, tmp_path / format)


def test_a_tokenizer_json_with_specials_at_the_end_grows_after_them(tiktoken_base, german, tmp_path):
    export(tiktoken_base, "hf", tmp_path)
    loaded = zoo.load(f"file:{tmp_path / 'tokenizer.json'}")
    assert loaded.special_ids == {"<|endoftext|>": 799}
    grown = expand_bpe(loaded, german, 50)
    assert grown.added_ids == list(range(800, 850)) and grown.tokenizer.special_ids == {"<|endoftext|>": 799}
    assert grown.tokenizer.uses_tiktoken
    text = "Die Größe der Schifffahrt ist nicht zu überschätzen."
    assert grown.tokenizer.decode(grown.tokenizer.encode(text)) == text
    export(grown.tokenizer, "tiktoken", tmp_path / "tiktoken")


# -- refusals ------------------------------------------------------------------------------------------------

def test_bad_arguments_are_refused_naming_what_was_expected(base, german):
    with pytest.raises(ZooError, match="new_tokens must be a positive int"):
        expand_bpe(base, german, 0)
    with pytest.raises(ZooError, match="got one str"):
        expand_bpe(base, "Guten Tag", 10)
    with pytest.raises(ZooError, match="text 1 is a int"):
        expand_bpe(base, ["Guten Tag", 3], 10)
    with pytest.raises(ZooError, match="texts are empty"):
        expand_bpe(base, ["", ""], 10)
    with pytest.raises(ZooError, match="the base is a UnigramTokenizer; expected a byte-level BPE"):
        expand_bpe(UnigramTokenizer(vocab_size=300), german, 10)
    with pytest.raises(ZooError, match="the new tokenizer is a UnigramTokenizer; expected a byte-level BPE"):
        expand_bpe(base, UnigramTokenizer(vocab_size=300), 10)


# -- fertility -------------------------------------------------------------------------------------------------

def test_fertility_table_counts_tokens_per_word():
    byte = zoo.load("byte")
    (row,) = fertility_table({"byte": byte}, ["ab c", "d"])
    assert row == {"tokenizer": "byte", "vocab_size": byte.vocab_size, "fertility": 4 / 3, "tokens": 5,
                   "bytes_per_token": 1.0}


def test_expansion_lowers_german_fertility(base, expanded):
    test = fortunes("de", split="test", limit=100).texts
    before, after = fertility_table({"base": base, "expanded": expanded.tokenizer}, test)
    assert after["fertility"] < before["fertility"] and after["tokens"] < before["tokens"]
