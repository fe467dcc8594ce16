"""Published text tokenizers by name (registry/text-published.yaml): every entry, offline.

Each format gets a small file the test writes itself (a byte-level BPE, a WordPiece and a Unigram
``tokenizer.json`` trained with ``tokenizers``, a ``.tiktoken`` rank file, a SentencePiece model), put where
the entry's file is cached under a temporary ``ZOO_CACHE``; ``zoo.load(name, pretrained=True)`` must then give
the ids of the format's own library on the built-in corpus. Without the file, each entry fails with one error
naming the path to put it at. If tiktoken's real cache holds an OpenAI file, a parity test runs on it.
"""

from __future__ import annotations

import base64
import io

import pytest

import zoo
from tests._text_corpus import corpus, held_out
from zoo.errors import ZooError
from zoo.hub import sha256_of
from zoo.text import published
from zoo.text.published import ENCODINGS, encoding_url, tiktoken_cache_path, weights_path

NAMES = published.published_names()
HARD = ["", "hello world", "héllo 🌍 ١٢٣ 1234567 naïve\n\tend", "日本語のテキスト", "  two  spaces ", "<|endoftext|>"]


def _entries_tagged(tag: str) -> list[str]:
    return [n for n in NAMES if tag in zoo.registry.get(n).tags]


@pytest.fixture(autouse=True)
def _empty_caches(monkeypatch, tmp_path):
    """A fresh zoo cache per test, and a tiktoken cache of the test's own (never the user's)."""
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "zoo-cache"))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken-cache"))
    monkeypatch.setattr(published, "PACKAGED", {})  # bpe-openai's copies: only where a test asks for them


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return held_out(150) + HARD


def _place(name: str, data: bytes):
    path = weights_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# -- the small files, one per format -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer_json_files() -> dict[str, bytes]:
    """tokenizer.json of each kind the entries name: byte-level BPE, WordPiece (BERT-like), Unigram (T5-like)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    train = list(corpus(300))
    out = {}
    bpe = Tokenizer(models.BPE(ignore_merges=True))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(train, trainers.BpeTrainer(vocab_size=700, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    out["byte-level"] = bpe.to_str().encode()
    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.normalizer = normalizers.BertNormalizer(lowercase=True)
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wp.decoder = decoders.WordPiece()
    wp.train_from_iterator(train, trainers.WordPieceTrainer(vocab_size=700, special_tokens=["[PAD]", "[UNK]", "[CLS]",
                                                                                           "[SEP]", "[MASK]"]))
    out["wordpiece"] = wp.to_str().encode()
    uni = Tokenizer(models.Unigram())
    uni.normalizer = normalizers.NFKC()
    uni.pre_tokenizer = pre_tokenizers.Metaspace()
    uni.decoder = decoders.Metaspace()
    uni.train_from_iterator(train, trainers.UnigramTrainer(vocab_size=4000, unk_token="<unk>",
                                                           special_tokens=["<pad>", "</s>", "<unk>"]))
    out["unigram"] = uni.to_str().encode()
    return out


@pytest.fixture(scope="module")
def spm_file() -> bytes:
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(corpus(300)), model_writer=model, vocab_size=2000,
                                             model_type="bpe", byte_fallback=True, character_coverage=0.9995)
    return model.getvalue()


@pytest.fixture(scope="module")
def learned_ranks(tokenizer_json_files) -> dict[bytes, int]:
    """A BPE's tokens as tiktoken ranks (bytes -> rank), learned on the corpus (byte-level BPE ids are ranks)."""
    from tokenizers import Tokenizer

    from zoo.text.bytelevel import from_byte_chars

    tk = Tokenizer.from_str(tokenizer_json_files["byte-level"].decode())
    vocab = tk.get_vocab(with_added_tokens=False)
    by_id = sorted(vocab.items(), key=lambda item: item[1])
    return {from_byte_chars(token): rank for rank, (token, _) in enumerate(by_id)}


def _rank_file(ranks: dict[bytes, int], total: int | None, specials: frozenset = frozenset()) -> bytes:
    """A .tiktoken file; padded with two-byte tokens to ``total`` ranks (skipping the special ids, as OpenAI's
    files do) when the encoding states its size."""
    ranks = dict(ranks)
    if total is not None:
        pairs = (bytes([a, b]) for a in range(256) for b in range(256))
        free = (i for i in range(len(ranks), 2**31) if i not in specials)
        for pair in pairs:
            if len(ranks) >= total:
                break
            if pair not in ranks:
                ranks[pair] = next(free)
    lines = [f"{base64.b64encode(token).decode()} {rank}" for token, rank in sorted(ranks.items(), key=lambda i: i[1])]
    return ("\n".join(lines) + "\n").encode()


def _pin_to(monkeypatch, name: str, path) -> None:
    """Point entry ``name``'s published sha256 at the test's own file (everything else about the entry kept)."""
    import dataclasses

    registry = zoo.registry.default_registry()
    entry = registry.get(name)
    pinned = dataclasses.replace(entry, weights={**entry.weights, "sha256": sha256_of(path)})
    monkeypatch.setitem(registry._entries, name, pinned)


def _openai_file(name: str, learned_ranks) -> bytes:
    encoding = zoo.registry.get(name).config["encoding"]
    tok = zoo.load(name)  # specials as the encoding states them
    n_vocab = ENCODINGS[encoding]["n_vocab"]
    total = None if n_vocab is None else n_vocab - len(tok.special_tokens)
    return _rank_file(learned_ranks, total, frozenset(tok.special_tokens.values()))


# -- the registry ----------------------------------------------------------------------------------------------

def test_the_catalog_names_the_published_tokenizers_people_study():
    openai = {"r50k", "p50k", "p50k-edit", "cl100k", "o200k"}
    assert openai <= set(NAMES)
    open_models = set(NAMES) - openai
    assert len(open_models) >= 8, open_models
    assert {"llama3", "gemma2", "qwen2.5", "deepseek-v3", "bloom", "xlm-r", "bert-base-uncased", "gpt2"} <= open_models
    listed = zoo.list_tokenizers("*", modality="text")
    assert set(NAMES) <= set(listed)


def test_zoo_list_shows_them(capsys):
    from zoo.cli import main

    assert main(["list", "--modality", "text"]) == 0
    shown = capsys.readouterr().out
    for name in NAMES:
        assert name in shown


@pytest.mark.parametrize("name", NAMES)
def test_each_entry_downloads_with_a_stated_pin_license_and_losslessness(name):
    entry = zoo.registry.get(name)
    assert {"published", "downloads"} <= set(entry.tags)
    assert ("lossless" in entry.tags) != ("lossy" in entry.tags), f"{name}: tag it lossless or lossy"
    assert entry.card["license"] and entry.card["data"]
    weights = entry.weights
    assert "://" in weights["path"]
    if weights["path"].startswith("https://"):  # OpenAI's files: the sha256 tiktoken checks them against
        assert weights["sha256"] == ENCODINGS[entry.config["encoding"]]["sha256"]
        assert weights["path"] == encoding_url(entry.config["encoding"])
    else:
        assert "sha256" not in weights, f"{name}: no hub page published a sha256 for it"
    assert "gated" not in entry.tags or "gated" in entry.card["license"]


@pytest.mark.parametrize("name", NAMES)
def test_offline_and_uncached_each_entry_fails_in_one_error_naming_the_path(name):
    with pytest.raises(ZooError) as err:
        zoo.load(name, pretrained=True)
    message = str(err.value)
    assert str(weights_path(name)) in message and "not cached" in message
    assert zoo.registry.get(name).weights["path"] in message


def test_the_demo_and_the_published_helper_skip_uncached_entries(tokenizer_json_files, capsys):
    from zoo.evaluate.demo import uncached_downloads

    assert set(uncached_downloads(NAMES)) == set(NAMES)  # the demo never downloads
    ready, missing = published.split_cached(NAMES)
    assert ready == [] and set(missing) == set(NAMES)
    _place("bloom", tokenizer_json_files["byte-level"])
    ready, missing = published.split_cached(NAMES)
    assert ready == ["bloom"] and missing["gpt2"] == str(weights_path("gpt2"))
    assert published.main() == 0
    out = capsys.readouterr()
    assert out.out.strip() == "bloom"
    assert len(out.err.strip().splitlines()) == 1 and "gpt2" in out.err and "bloom (" not in out.err


# -- each format against its own library -------------------------------------------------------------------------

@pytest.mark.parametrize("name", _entries_tagged("tokenizer-json"))
def test_tokenizer_json_entries_give_the_ids_of_hf_tokenizers(name, tokenizer_json_files, texts):
    from tokenizers import Tokenizer

    kind = next(k for k in ("byte-level", "wordpiece", "unigram") if k in zoo.registry.get(name).tags)
    path = _place(name, tokenizer_json_files[kind])
    tok = zoo.load(name, pretrained=True)
    reference = Tokenizer.from_file(str(path))
    reference.encode_special_tokens = True  # zoo's policy: "<|endoftext|>" in input text is text, not a control token
    for text in texts:
        assert tok.encode(text) == reference.encode(text, add_special_tokens=False).ids, (name, text)
    assert tok.encode(texts) == [reference.encode(t, add_special_tokens=False).ids for t in texts]
    assert tok.lossless == ("lossless" in zoo.registry.get(name).tags)
    if tok.lossless:
        assert all(tok.decode(tok.encode(t)) == t for t in texts)
    else:  # the decode is the library's own
        assert all(tok.decode(tok.encode(t)) == reference.decode(reference.encode(t).ids) for t in texts)
    assert tok.vocab_size == reference.get_vocab_size(with_added_tokens=True)


@pytest.mark.parametrize("name", _entries_tagged("sentencepiece"))
def test_sentencepiece_entries_give_the_ids_of_sentencepiece(name, spm_file, texts):
    import sentencepiece

    _place(name, spm_file)
    tok = zoo.load(name, pretrained=True)
    reference = sentencepiece.SentencePieceProcessor(model_proto=spm_file)
    for text in texts:
        assert tok.encode(text) == reference.encode(text), (name, text)
        assert tok.decode(tok.encode(text)) == reference.decode(reference.encode(text))
    assert tok.vocab_size == reference.get_piece_size() == 2000
    assert not tok.lossless and "lossy" in zoo.registry.get(name).tags
    assert tok.decode(tok.encode("naïve 🌍 text")) == "naïve 🌍 text"  # byte fallback keeps unseen characters


@pytest.mark.parametrize("name", _entries_tagged("tiktoken"))
def test_openai_entries_give_the_ids_of_tiktoken_built_from_the_same_file(name, learned_ranks, texts, tmp_path,
                                                                          monkeypatch):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    from zoo.text.external import KNOWN_TIKTOKEN

    encoding = zoo.registry.get(name).config["encoding"]
    data = _openai_file(name, learned_ranks)
    path = _place(name, data)
    with pytest.raises(ZooError, match=f"sha256 is {sha256_of(path)}, expected {ENCODINGS[encoding]['sha256']}"):
        zoo.load(name, pretrained=True)  # not OpenAI's file: its published sha256 refuses it
    _pin_to(monkeypatch, name, path)
    tok = zoo.load(name, pretrained=True)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken caches local files too: not here
    family = "p50k_base" if encoding == "p50k_edit" else encoding
    reference = tiktoken.Encoding(encoding, pat_str=KNOWN_TIKTOKEN[family]["pattern"],
                                  mergeable_ranks=load_tiktoken_bpe(str(path)), special_tokens=tok.special_tokens)
    for text in texts:
        assert tok.encode(text) == reference.encode_ordinary(text), (name, text)
        assert tok.decode(tok.encode(text)) == text
    assert tok.special_tokens == _tiktoken_specials(encoding)
    if ENCODINGS[encoding]["n_vocab"] is not None:
        assert tok.vocab_size == ENCODINGS[encoding]["n_vocab"]
    folder = tok.save_pretrained(tmp_path / "saved")  # the file travels with the folder
    assert zoo.load(folder).encode(texts) == tok.encode(texts)


def _tiktoken_specials(encoding: str) -> dict[str, int]:
    """The special tokens tiktoken's own constructor states (no file read)."""
    import tiktoken_ext.openai_public as public

    source = {
        "r50k_base": {"<|endoftext|>": 50256},
        "p50k_base": {"<|endoftext|>": 50256},
        "p50k_edit": {"<|endoftext|>": 50256, "<|fim_prefix|>": 50281, "<|fim_middle|>": 50282,
                      "<|fim_suffix|>": 50283},
        "cl100k_base": {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                        "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276},
        "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    }[encoding]
    assert public.ENDOFTEXT in source
    return source


def test_an_openai_file_of_the_wrong_size_is_refused_naming_the_counts(learned_ranks, monkeypatch):
    _pin_to(monkeypatch, "r50k", _place("r50k", _rank_file(learned_ranks, None)))
    with pytest.raises(ZooError, match=r"ranks \+ 1 specials = \d+ ids; r50k_base has 50257"):
        zoo.load("r50k", pretrained=True)


def test_ranks_that_take_a_special_id_are_refused(learned_ranks, monkeypatch):
    ranks = dict(learned_ranks)
    ranks[b"\xff\xfe\xfd"] = 199999  # o200k's <|endoftext|>
    _pin_to(monkeypatch, "o200k", _place("o200k", _rank_file(ranks, None)))
    with pytest.raises(ZooError, match=r"special token ids \[199999\] are also BPE ranks"):
        zoo.load("o200k", pretrained=True)


def test_unknown_encoding_is_refused_with_the_known_ones():
    from zoo.text.published import OpenAIEncoding

    with pytest.raises(ZooError, match="unknown OpenAI encoding 'cl200k_base'; expected one of r50k_base"):
        OpenAIEncoding("cl200k_base")


# -- tiktoken's own cache ------------------------------------------------------------------------------------------

def test_tiktoken_cache_paths_follow_tiktoken(monkeypatch, tmp_path):
    import hashlib

    url = encoding_url("cl100k_base")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    assert tiktoken_cache_path(url) == tmp_path / hashlib.sha1(url.encode()).hexdigest()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    assert tiktoken_cache_path(url) is None  # tiktoken's caching is off
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR")
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(tmp_path / "gym"))
    assert tiktoken_cache_path(url).parent == tmp_path / "gym"


def test_a_tiktoken_cached_file_is_adopted_only_with_the_published_sha256(learned_ranks, monkeypatch):
    data = _rank_file(learned_ranks, None)
    theirs = tiktoken_cache_path(encoding_url("cl100k_base"))
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(data)
    assert published.adopt_tiktoken_cache("cl100k_base") is None  # not OpenAI's file: left alone
    assert not weights_path("cl100k").exists()
    with pytest.raises(ZooError, match="not cached"):
        zoo.load("cl100k", pretrained=True)
    facts = {**ENCODINGS["cl100k_base"], "sha256": sha256_of(theirs)}
    monkeypatch.setitem(ENCODINGS, "cl100k_base", facts)
    adopted = published.adopt_tiktoken_cache("cl100k_base")
    assert adopted == weights_path("cl100k") and adopted.read_bytes() == data


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_parity_with_tiktoken_on_the_real_file_when_tiktoken_has_it_cached(encoding, monkeypatch, texts):
    import tiktoken

    url = encoding_url(encoding)
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR")  # the user's real tiktoken cache, read only
    real = tiktoken_cache_path(url)
    if real is None or not real.is_file() or sha256_of(real) != ENCODINGS[encoding]["sha256"]:
        where = real.parent if real is not None else "off"
        pytest.skip(f"tiktoken's cache ({where}) holds no {url} with its published sha256")
    name = next(n for n in _entries_tagged("tiktoken") if zoo.registry.get(n).config["encoding"] == encoding)
    tok = zoo.load(name, pretrained=True)  # adopted from tiktoken's cache into the temporary zoo cache
    reference = tiktoken.get_encoding(encoding)
    assert tok.encode(texts) == [reference.encode_ordinary(t) for t in texts]
    assert tok.vocab_size == reference.n_vocab


@pytest.mark.parametrize(("encoding", "total"), [("cl100k_base", 100277), ("o200k_base", 200019)])
def test_the_copies_bpe_openai_ships_are_the_published_files(encoding, total, monkeypatch, texts):
    pytest.importorskip("bpe_openai")
    import tiktoken

    monkeypatch.setattr(published, "PACKAGED", {encoding: f"{encoding}.tiktoken.gz"})
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken caches local files too: not here
    name = next(n for n in _entries_tagged("tiktoken") if zoo.registry.get(n).config["encoding"] == encoding)
    assert published.split_cached([name]) == ([name], {})  # ready offline: adopted from the package
    tok = zoo.load(name, pretrained=True)
    assert sha256_of(weights_path(name)) == ENCODINGS[encoding]["sha256"]
    assert (tok.vocab_size, tok.engine) == (total, "rs-bpe")
    reference = tiktoken.Encoding(encoding, pat_str=tok.pattern, mergeable_ranks=tok._ranks,
                                  special_tokens=tok.special_tokens)
    assert tok.encode(texts) == [reference.encode_ordinary(t) for t in texts]
    assert [tok.decode(ids) for ids in tok.encode(texts)] == texts


def test_a_packaged_copy_that_is_not_the_published_file_is_not_adopted(monkeypatch):
    monkeypatch.setattr(published, "PACKAGED", {"cl100k_base": "x.gz"})
    monkeypatch.setattr(published, "packaged_rank_file", lambda encoding: b"YQ== 0\n")
    assert published.adopt_packaged_copy("cl100k_base") is None
    with pytest.raises(ZooError, match="not cached"):
        zoo.load("cl100k", pretrained=True)
