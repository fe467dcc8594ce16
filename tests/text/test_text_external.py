"""Tokenizer files in other formats under zoo's contract: tokenizer.json, .tiktoken, SentencePiece .model."""

from __future__ import annotations

import base64
import io

import pytest

import zoo
from tests._text_corpus import corpus, held_out
from zoo.errors import ZooError
from zoo.text.external import KNOWN_TIKTOKEN, HFFileTokenizer, SentencePieceTokenizer, TiktokenTokenizer
from zoo.text.hf import BPETokenizer, WordPieceTokenizer


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    tok = BPETokenizer(vocab_size=900)
    tok.fit(corpus(600))
    return tok


def _tiktoken_file(tok: BPETokenizer, path):
    """Write a BPE's merges as a tiktoken rank file (token bytes, id), specials left out."""
    specials = set(tok.special_ids.values())
    lines = [
        f"{base64.b64encode(raw).decode()} {i}"
        for i, raw in enumerate(tok.token_bytes(range(tok.vocab_size)))
        if i not in specials
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_any_tokenizer_json_loads_with_its_ids_and_byte_level_losslessness(bpe, tmp_path):
    folder = bpe.save_pretrained(tmp_path / "bpe")
    tok = zoo.load(f"file:{folder / 'tokenizer.json'}")
    assert isinstance(tok, HFFileTokenizer) and tok.lossless and tok.uses_tiktoken
    texts = held_out(100) + ["a\ud800b", "<|endoftext|>"]
    assert tok.encode(texts) == bpe.encode(texts)
    assert tok.decode(tok.encode(texts)) == texts
    again = zoo.load(tok.save_pretrained(tmp_path / "again"))
    assert again.encode(texts) == bpe.encode(texts)


def test_a_normalising_tokenizer_json_is_declared_lossy(tmp_path):
    wordpiece = WordPieceTokenizer(vocab_size=500, lowercase=True)
    wordpiece.fit(corpus(300))
    folder = wordpiece.save_pretrained(tmp_path / "wp")
    tok = zoo.load(f"file:{folder / 'tokenizer.json'}")
    assert not tok.lossless and not tok.uses_tiktoken
    assert tok.encode("Hello there") == wordpiece.encode("Hello there")
    with pytest.raises(ZooError, match="surrogate"):
        tok.encode("\ud800")


def test_tiktoken_file_gives_the_bpe_ids_with_the_same_pattern(bpe, tmp_path):
    path = _tiktoken_file(bpe, tmp_path / "mine.tiktoken")
    tok = zoo.load(f"file:{path}", pattern=bpe.pattern)
    assert isinstance(tok, TiktokenTokenizer) and tok.config["pattern"] == bpe.pattern
    texts = held_out(100) + ["x\udfffy"]
    assert tok.encode(texts) == bpe.encode(texts)
    assert tok.decode(tok.encode(texts)) == texts
    folder = tok.save_pretrained(tmp_path / "tt")
    assert (folder / "tokenizer.tiktoken").read_text() == path.read_text()
    assert zoo.load(folder).encode(texts) == bpe.encode(texts)


def test_known_openai_file_names_bring_their_pattern_and_specials(bpe, tmp_path):
    path = _tiktoken_file(bpe, tmp_path / "cl100k_base.tiktoken")
    tok = zoo.load(f"file:{path}")
    assert tok.config["pattern"] == KNOWN_TIKTOKEN["cl100k_base"]["pattern"]
    assert tok.config["special_tokens"]["<|endoftext|>"] == 100257
    assert tok.vocab_size == 100277
    eot = 100257
    assert tok.decode([eot, *tok.encode("hello"), eot]) == "hello"
    with pytest.raises(ZooError, match="not a token"):
        tok.decode([100000])  # inside the id range, but no token has it


def test_sentencepiece_model_loads_and_round_trips_through_a_folder(tmp_path):
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(held_out(300)), model_writer=model, vocab_size=600, byte_fallback=True,
        character_coverage=0.98, model_type="unigram", minloglevel=2,
    )  # fmt: skip
    path = tmp_path / "spm.model"
    path.write_bytes(model.getvalue())
    tok = zoo.load(f"file:{path}")
    reference = sentencepiece.SentencePieceProcessor(model_file=str(path))
    text = "Hello world, this is a test."
    assert isinstance(tok, SentencePieceTokenizer) and not tok.lossless
    assert tok.encode(text) == reference.encode(text) and tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == 600
    assert b"".join(tok.token_bytes(tok.encode(text))).strip() == text.encode()
    assert zoo.load(tok.save_pretrained(tmp_path / "sp")).encode(text) == reference.encode(text)


def test_bad_files_are_errors_naming_the_file(tmp_path):
    with pytest.raises(ZooError, match="no such file"):
        zoo.load(f"file:{tmp_path / 'missing.json'}")
    (tmp_path / "x.vocab").write_text("a 1\n")
    with pytest.raises(ZooError, match="unknown tokenizer format"):
        zoo.load(f"file:{tmp_path / 'x.vocab'}")
    (tmp_path / "bad.tiktoken").write_text("not-base64!! x\n")
    with pytest.raises(ZooError, match="line 1"):
        zoo.load(f"file:{tmp_path / 'bad.tiktoken'}")
    (tmp_path / "few.tiktoken").write_text("YQ== 0\n")
    with pytest.raises(ZooError, match="lack 255 single bytes"):
        zoo.load(f"file:{tmp_path / 'few.tiktoken'}")
    (tmp_path / "bad.model").write_bytes(b"\x00garbage")
    with pytest.raises(ZooError, match="not a SentencePiece model"):
        zoo.load(f"file:{tmp_path / 'bad.model'}")
    with pytest.raises(ZooError, match="no model loaded"):
        SentencePieceTokenizer().encode("x")
