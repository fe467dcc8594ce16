"""Text metrics against hand-computed values, and the text suites end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zoo.errors import ZooError
from zoo.metrics import build_metric
from zoo.metrics.base import EvalContext
from zoo.metrics.text import token_category, token_script, utf8_offsets, word_spans, word_split_counts
from zoo.text.byte import ByteTokenizer
from zoo.text.lib import LiBTokenizer


def _run(name: str, tokenizer, batches: list[dict], **options):
    metric = build_metric(name, **options)
    metric.setup(tokenizer)
    for batch in batches:
        metric.update(EvalContext(tokenizer, batch))
    return metric.compute()


def _chunks(chunks: list[str]) -> LiBTokenizer:
    tok = LiBTokenizer(epochs=0)
    tok._compile(chunks)  # a fixed greedy vocabulary: tokenizations are known by hand
    return tok


def test_compression_counts_bytes_and_characters():
    byte = ByteTokenizer()
    batch = {"text": ["héllo", "日本"]}  # 6 + 6 bytes, 5 + 2 characters, 12 byte tokens
    assert _run("bytes-per-token", byte, [batch]) == 1.0
    assert _run("chars-per-token", byte, [batch]) == pytest.approx(7 / 12)
    tok = _chunks(["hé", "llo", "日本"])
    assert _run("bytes-per-token", tok, [batch]) == pytest.approx(12 / 3)


def test_compression_and_fertility_per_language_when_named():
    byte = ByteTokenizer()
    batches = [{"text": ["héllo", "日本"], "lang": ["fr", "ja"]}, {"text": ["ab cd"], "lang": ["fr"]}]
    # fr: 6 + 5 bytes, 5 + 5 chars, 11 tokens (the space covers no word), words héllo ab cd; ja: 6 bytes, 2 chars,
    # 6 tokens, words 日 本
    chars = _run("chars-per-token", byte, batches, languages=["fr", "ja", "de"])
    assert chars["all"] == pytest.approx(12 / 17) and chars["fr"] == pytest.approx(10 / 11)
    assert chars["ja"] == pytest.approx(2 / 6) and math.isnan(chars["de"])  # named but never seen
    fertility = _run("fertility", byte, batches, languages=["ja"])
    assert fertility == {"all": pytest.approx((6 + 4 + 6) / 5), "ja": pytest.approx(6 / 2)}
    assert _run("bytes-per-token", byte, batches) == 1.0  # no languages: one number, as before
    with pytest.raises(ZooError, match="carry no 'lang'"):
        _run("fertility", byte, [{"text": ["ab"]}], languages=["fr"])


def test_word_spans_use_whitespace_and_one_word_per_character_without_spaces():
    starts, ends = word_spans("ab  cd\n日本語です é!")
    text = "ab  cd\n日本語です é!"
    offsets = utf8_offsets(text)
    assert offsets[-1] == len(text.encode())
    raw = text.encode()
    assert [raw[s:e].decode() for s, e in zip(starts, ends)] == ["ab", "cd", "日", "本", "語", "で", "す", "é!"]


def test_fertility_and_continued_words_by_hand():
    tok = _chunks(["ab", " cd", "e f", "日本"])
    # "ab cdx e fg": tokens ab | " cd" | x | " " | "e f" | g ; words ab, cdx, e, fg
    # token-word overlaps: ab->ab, " cd"->cdx, x->cdx, "e f"->e,fg, g->fg; " " covers no word
    assert tok.token_strings(tok.encode("ab cdx e fg")) == ["ab", " cd", "x", " ", "e f", "g"]
    assert word_split_counts(tok, "ab cdx e fg", tok.encode("ab cdx e fg")) == (4, 5, 2)
    batch = {"text": ["ab cdx e fg", "日本語"]}  # second: 日本 | 語 ... as bytes: "語" falls back to 3 bytes
    words, tokens, continued = 4 + 3, 5 + 1 + 3, 2 + 1
    assert _run("fertility", tok, [batch]) == pytest.approx(tokens / words)
    assert _run("continued-words", tok, [batch]) == pytest.approx(continued / words)


def test_fertility_of_a_normalising_tokenizer_encodes_each_word():
    class Lower(ByteTokenizer):
        def encode_one(self, text):  # spells a different text: offsets cannot be used
            return super().encode_one(text.lower() + "!")

    assert word_split_counts(Lower(), "Ab c", Lower().encode("Ab c")) == (2, 3 + 2, 2)


def test_parity_against_the_reference_language():
    byte = ByteTokenizer()
    batch = {
        "text": ["Deutschland", "Allemagne", "Germany", "日本"],
        "lang": ["de", "fr", "en", "ja"],
        "ref": ["Germany", "Germany", "Germany", "Japan"],
    }
    result = _run("parity", byte, [batch], languages=["de", "ja"])
    assert result["de"] == pytest.approx(11 / 7) and result["ja"] == pytest.approx(6 / 5)
    assert result["max"] == pytest.approx(11 / 7) and result["min"] == pytest.approx(6 / 5)
    assert result["languages"] == 3 and result["mean"] == pytest.approx((11 / 7 + 9 / 7 + 6 / 5) / 3)
    with pytest.raises(ZooError, match="'lang' and 'ref'"):
        _run("parity", byte, [{"text": ["x"]}])


def test_renyi_efficiency_matches_the_formula():
    byte = ByteTokenizer()
    batch = {"text": ["aab", "abc"]}  # counts a:3 b:2 c:1
    p = np.array([3, 2, 1]) / 6
    for alpha in (2.5, 3.0):
        expected = math.log2((p**alpha).sum()) / (1 - alpha) / math.log2(3)
        assert _run("renyi-efficiency", byte, [batch], alpha=alpha) == pytest.approx(expected)
    shannon = -(p * np.log2(p)).sum() / math.log2(3)
    assert _run("renyi-efficiency", byte, [batch], alpha=1.0) == pytest.approx(shannon)
    full = math.log2((p**2.5).sum()) / (1 - 2.5) / math.log2(259)
    assert _run("renyi-efficiency", byte, [batch], vocab="full") == pytest.approx(full)
    assert _run("renyi-efficiency", byte, [{"text": ["abcabc"]}]) == pytest.approx(1.0)  # uniform


def test_vocabulary_categories_of_the_byte_tokenizer():
    result = _run("vocab-categories", ByteTokenizer(), [{"text": ["x"]}])
    total = 259
    assert result["control"] == pytest.approx(3 / total)  # <pad> <bos> <eos>
    assert result["raw_byte"] == pytest.approx(128 / total)  # bytes >= 0x80 are no character alone
    assert result["char_alpha"] == pytest.approx(52 / total)  # A-Z a-z
    assert result["char_error"] == pytest.approx(33 / total)  # C0 controls and DEL
    assert sum(result.values()) == pytest.approx(1.0)


def test_token_category_and_script_rules():
    assert token_category(b" the", False) == "spaced_alpha"
    assert token_category(b"ing", False) == "inner_alpha"
    assert token_category(b"'s", False) == "inner_other"
    assert token_category("\xe6\x97".encode("latin-1"), False) == "unicode_flank"
    assert token_category(b"", True) == "control"
    assert token_script("Привет") == "Cyrillic" and token_script("日本") == "Han" and token_script("aж") == "mixed"
    scripts = _run("vocab-scripts", _chunks([" the", "ing", "сть", "日本", "12"]), [{"text": ["x"]}])
    assert scripts["Latin"] == pytest.approx(54 / 56)  # 52 ASCII letters + " the" + "ing" of 56 alpha tokens
    assert scripts["Cyrillic"] == pytest.approx(1 / 56) and scripts["Han"] == pytest.approx(1 / 56)


def test_lexicon_share_counts_used_tokens_that_are_words():
    tok = _chunks([" the", " cat", "qxz", " sat"])
    # tokens used: " the" x2, " cat", " sat", "qxz" (no English word), " " and "x" (too short to be candidates)
    result = _run("lexicon-share", tok, [{"text": [" the cat the qxz sat x"]}], lang="en")
    assert result["unique"] == pytest.approx(3 / 4)
    assert result["tokens"] == pytest.approx(4 / 5)
    with pytest.raises(ZooError, match="silently use English"):
        build_metric("lexicon-share", lang="xx")


def test_text_suites_run_end_to_end(tmp_path):
    from zoo.evaluate import run_suite

    results = run_suite("text-compression", ["byte"], limit=40, out_dir=tmp_path, progress=False)
    values = results["results"]["byte"]
    assert values["bytes-per-token"] == 1.0 and values["fertility"] > 1
    assert values["throughput"]["encode_mb_per_s"] > 0
    parity = run_suite("text-parity", ["byte"], limit=3000, progress=False)["results"]["byte"]["parity"]
    assert parity["languages"] > 5 and parity["max"] > 1
    vocab = run_suite("text-vocab", ["byte"], limit=20, progress=False)["results"]["byte"]
    assert vocab["vocab-categories"]["control"] == pytest.approx(3 / 259)
