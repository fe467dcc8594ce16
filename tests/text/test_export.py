"""Export to tokenizer.json, tiktoken and SentencePiece (zoo.text.export): every text entry in the registry either
exports and gives identical ids through the target library, or is refused with the reason the format cannot
express it.

Shipped entries use their shipped weights. Published entries have no file offline, so each gets a small file of its
own format that this test writes (a byte-level BPE / WordPiece / Unigram ``tokenizer.json``, a ``.tiktoken`` rank
file, a SentencePiece BPE model), loaded into the entry's own class and config.
"""

from __future__ import annotations

import base64
import io
import json
import re

import pytest

import zoo
from tests._text_corpus import corpus, held_out
from zoo.errors import ZooError
from zoo.text import export as ex
from zoo.text.bytelevel import GPT2_PATTERN
from zoo.text.export import ExportRefused, export

NAMES = zoo.registry.default_registry().names(modality="text")
FORMATS = ex.FORMATS
OK = None
BYTE_LEVEL = "byte-level pre-tokenizer"
# The file kind each published entry is tested with (its tags), and what each format must do with it.
NUMBERS = {"hf": "has no tokenizers pipeline", "tiktoken": "is not a BPE over bytes",
           "sentencepiece": "has no pieces to write"}
NO_FORMAT = {"hf": "has no tokenizers pipeline", "tiktoken": "is not a BPE over bytes",
             "sentencepiece": "has no pieces to write"}
EXPECT = {
    "tiktoken": {"hf": OK, "tiktoken": OK, "sentencepiece": BYTE_LEVEL},
    "byte-level": {"hf": OK, "tiktoken": OK, "sentencepiece": BYTE_LEVEL},
    "wordpiece": {"hf": OK, "tiktoken": "model is WordPiece, not BPE", "sentencepiece": "no WordPiece model"},
    # SentencePiece adds its '▁' prefix even before a leading space (Metaspace does not) and breaks Viterbi ties in
    # float32: the structure converts, the check refuses (test_a_unigram_pipeline_converts_to_sentencepiece)
    "unigram": {"hf": OK, "tiktoken": "model is Unigram, not BPE", "sentencepiece": "encodes check text"},
    "sentencepiece": {"hf": OK, "tiktoken": "normalises text", "sentencepiece": OK},
    # the entries trained here, by name
    "byte": {"hf": OK, "tiktoken": OK, "sentencepiece": OK},
    "bpe-32k": {"hf": OK, "tiktoken": OK, "sentencepiece": BYTE_LEVEL},
    "bpe-32k-r2l3": {"hf": OK, "tiktoken": OK, "sentencepiece": BYTE_LEVEL},
    "unigram-32k": {"hf": OK, "tiktoken": "model is Unigram, not BPE", "sentencepiece": BYTE_LEVEL},
    "lib": {"hf": OK, "tiktoken": "greedy longest match", "sentencepiece": "greedy longest match"},
    # number tokenizers of the arithmetic probe (digit groups over a byte fallback) and Equal-Info Windows (arithmetic
    # coding): no format holds them
    "numbers-digits": NUMBERS, "numbers-l2r3": NUMBERS, "numbers-r2l3": NUMBERS,
    "eiw-w64-v65k": NO_FORMAT,
    "pooling-ws-fortunes": NO_FORMAT,
    "pooling-learned-fortunes": NO_FORMAT,
}
KINDS = ("tiktoken", "byte-level", "wordpiece", "unigram", "sentencepiece")


def _kind(name: str) -> str:
    tags = zoo.registry.get(name).tags
    return name if name in EXPECT else next(k for k in KINDS if k in tags)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return held_out(120) + ["", "hello world", "héllo 🌍 ١٢٣ 1234567 naïve\n\tend", "日本語のテキスト", " two  spaces "]


# -- small files of each published format -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    import sentencepiece
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    from zoo.text.bytelevel import from_byte_chars

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
    wp.train_from_iterator(train, trainers.WordPieceTrainer(vocab_size=700, special_tokens=["[PAD]", "[UNK]"]))
    out["wordpiece"] = wp.to_str().encode()
    uni = Tokenizer(models.Unigram())
    uni.normalizer = normalizers.NFKC()
    uni.pre_tokenizer = pre_tokenizers.Metaspace()
    uni.decoder = decoders.Metaspace()
    uni.train_from_iterator(train, trainers.UnigramTrainer(vocab_size=3000, unk_token="<unk>",
                                                           special_tokens=["<pad>", "</s>", "<unk>"]))
    out["unigram"] = uni.to_str().encode()
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(train), model_writer=model, vocab_size=1500,
                                             model_type="bpe", byte_fallback=True, minloglevel=2)
    out["sentencepiece"] = model.getvalue()
    # tiktoken ranks: the byte-level BPE's tokens in id order (its ids are ranks)
    vocab = sorted(bpe.get_vocab(with_added_tokens=False).items(), key=lambda item: item[1])
    out["ranks"] = {from_byte_chars(token): rank for rank, (token, _) in enumerate(vocab[1:])}  # not <|endoftext|>
    return out


def test_unused_ids_survive_the_trip_through_tokenizer_json(files, tmp_path, texts):
    """cl100k's layout: no token at the id after the last rank, specials skipping ids (100261..100275)."""
    from zoo.text.external import TiktokenTokenizer

    top = max(files["ranks"].values())
    specials = {"<|endoftext|>": top + 2, "<|endofprompt|>": top + 20}
    (tmp_path / "gaps.tiktoken").write_bytes(_rank_file(files["ranks"], None, set()))
    tok = TiktokenTokenizer(pattern=GPT2_PATTERN, special_tokens=specials, name="gaps")
    tok.load_weights(tmp_path / "gaps.tiktoken")
    export(tok, "hf", tmp_path / "hf")
    back = zoo.load(f"file:{tmp_path / 'hf' / 'tokenizer.json'}")
    assert back.vocab_size == tok.vocab_size == top + 21 and back.special_ids == specials
    assert back.encode(texts) == tok.encode(texts) and back.decode(back.encode(texts)) == texts
    with pytest.raises(ZooError, match=f"id {top + 1} is unused in this vocabulary"):
        back.decode([top + 1])
    export(back, "tiktoken", tmp_path / "again")
    assert ex.load_tiktoken(tmp_path / "again").encode_ordinary(texts[0]) == tok.encode(texts[0])


def _rank_file(ranks: dict[bytes, int], total: int | None, specials: set[int]) -> bytes:
    """A .tiktoken file, padded with two-byte tokens up to ``total`` ranks (skipping special ids) when stated."""
    ranks = dict(ranks)
    if total is not None:
        free = (i for i in range(len(ranks), 2**31) if i not in specials)
        pairs = (bytes([a, b]) for a in range(256) for b in range(256))
        while len(ranks) < total:
            pair = next(pairs)
            if pair not in ranks:
                ranks[pair] = next(free)
    ordered = sorted(ranks.items(), key=lambda item: item[1])
    return "".join(f"{base64.b64encode(t).decode()} {r}\n" for t, r in ordered).encode()


def _tokenizer(name: str, files: dict, tmp_path):
    """The entry's tokenizer: shipped weights, or the entry's class loaded from a small file of its format."""
    entry = zoo.registry.get(name)
    if "published" not in entry.tags:
        return zoo.load(name, pretrained=entry.weights is not None)
    tok = zoo.load(name)  # the entry's class and config, no download
    kind = _kind(name)
    if kind == "tiktoken":
        from zoo.text.published import ENCODINGS

        n_vocab = ENCODINGS[entry.config["encoding"]]["n_vocab"]
        total = None if n_vocab is None else n_vocab - len(tok.special_tokens)
        data = _rank_file(files["ranks"], total, set(tok.special_tokens.values()))
    else:
        data = files[kind]
    path = tmp_path / f"source{tok.weights_name[tok.weights_name.rfind('.'):]}"
    path.write_bytes(data)
    tok.load_weights(path)
    return tok


def _library_encoder(format: str, folder):
    """The exported folder loaded by the format's own library, independently of zoo.text.export's check."""
    if format == "hf":
        from tokenizers import Tokenizer

        tk = Tokenizer.from_file(str(folder / "tokenizer.json"))
        return lambda text: tk.encode(text, add_special_tokens=False).ids
    if format == "tiktoken":
        import tiktoken

        spec = json.loads((folder / "tiktoken.json").read_text())
        ranks = {base64.b64decode(t): int(r) for t, r in
                 (line.split() for line in (folder / "tokenizer.tiktoken").read_bytes().splitlines())}
        enc = tiktoken.Encoding(spec["name"], pat_str=spec["pat_str"], mergeable_ranks=ranks,
                                special_tokens=spec["special_tokens"])
        return enc.encode_ordinary
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    return sp.encode


# -- every entry, every format ------------------------------------------------------------------------------------

def test_every_text_entry_has_an_expectation():
    assert {_kind(n) for n in NAMES} <= set(EXPECT), "a new text entry: say what each export must do with it"
    assert len(NAMES) >= 20


@pytest.mark.parametrize("name", NAMES)
def test_each_entry_exports_with_identical_ids_or_is_refused_with_the_reason(name, files, texts, tmp_path):
    tok = _tokenizer(name, files, tmp_path)
    for format in FORMATS:
        expected = EXPECT[_kind(name)][format]
        out = tmp_path / f"out-{format}"
        if expected is not OK:
            with pytest.raises(ExportRefused) as err:
                export(tok, format, out, name=name)
            assert expected in err.value.reason, (name, format, err.value.reason)
            assert f"{name}: cannot export to {format}" in str(err.value)
            assert not out.exists(), "a refused export writes nothing"
            continue
        paths = export(tok, format, out, name=name)
        assert all(p.is_file() and p.parent == out for p in paths)
        encode = _library_encoder(format, out)
        for text in texts:
            assert encode(text) == tok.encode(text), (name, format, text)


def test_the_hf_export_loads_in_transformers_with_the_same_ids(tmp_path, texts):
    transformers = pytest.importorskip("transformers")
    tok = zoo.load("bpe-32k", pretrained=True)
    export(tok, "hf", tmp_path / "hf")
    fast = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    assert [fast.encode(t, add_special_tokens=False) for t in texts] == tok.encode(texts)


def test_an_openai_encoding_converts_to_tokenizer_json_and_back_to_tiktoken(files, tmp_path, texts):
    """tiktoken ranks -> tokenizer.json (merges rebuilt) -> zoo -> tiktoken again: the same rank file and ids."""
    from zoo.text.external import HFFileTokenizer

    r50k = _tokenizer("r50k", files, tmp_path)
    export(r50k, "hf", tmp_path / "hf")
    export(r50k, "tiktoken", tmp_path / "direct")
    state = json.loads((tmp_path / "hf" / "tokenizer.json").read_text())
    assert state["model"]["ignore_merges"] is True
    assert {t["content"]: t["id"] for t in state["added_tokens"]} == r50k.special_tokens == {"<|endoftext|>": 50256}
    assert len(state["model"]["merges"]) == 50256 - 256  # one merge per multi-byte token
    back = HFFileTokenizer()
    back.load_weights(tmp_path / "hf" / "tokenizer.json")
    assert back.encode(texts) == r50k.encode(texts)
    export(back, "tiktoken", tmp_path / "again")
    assert (tmp_path / "again" / "tokenizer.tiktoken").read_bytes() == (tmp_path / "direct" / "tokenizer.tiktoken"
                                                                          ).read_bytes()
    assert ex.load_tiktoken(tmp_path / "again").encode_ordinary("héllo 🌍 1234") == r50k.encode("héllo 🌍 1234")


def test_the_tiktoken_export_writes_the_pattern_and_specials_it_names(tmp_path):
    tok = zoo.load("bpe-32k", pretrained=True)
    export(tok, "tiktoken", tmp_path, name="bpe-32k")
    spec = json.loads((tmp_path / "tiktoken.json").read_text())
    assert spec == {"name": "bpe-32k", "pat_str": tok.pattern, "special_tokens": tok.special_ids,
                    "mergeable_ranks": "tokenizer.tiktoken"}
    lines = [line.split() for line in (tmp_path / "tokenizer.tiktoken").read_bytes().splitlines()]
    assert len(lines) == tok.vocab_size - len(tok.special_ids)
    ranks = [int(rank) for _, rank in lines]
    assert ranks == sorted(ranks) and set(ranks).isdisjoint(tok.special_ids.values())
    assert all(tok.token_bytes([int(rank)]) == [base64.b64decode(token)] for token, rank in lines)  # rank = zoo id
    # zoo loads the rank file back with the pattern and specials its tiktoken.json names
    again = zoo.load(f"file:{tmp_path / 'tokenizer.tiktoken'}")
    assert (again.pattern, again.special_tokens, again.name) == (tok.pattern, tok.special_ids, "bpe-32k")
    text = "Türkiye 1234567 東京\n\n  x"
    assert again.encode(text) == tok.encode(text)


def test_the_byte_tokenizer_in_sentencepiece_is_bytes_with_an_unused_unk(tmp_path):
    import sentencepiece

    tok = zoo.load("byte")
    export(tok, "sentencepiece", tmp_path)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))
    assert sp.get_piece_size() == tok.vocab_size + 1 and sp.id_to_piece(259) == "<unk>" and sp.unk_id() == 259
    assert sp.encode("é a") == list("é a".encode()) == tok.encode("é a")
    assert sp.decode(tok.encode("naïve 🌍")) == "naïve 🌍"


# -- the check refuses what the structure alone lets through ------------------------------------------------------

def test_an_export_whose_library_gives_other_ids_is_refused_naming_the_text(tmp_path):
    """A BPE with merges b+c, a+b, ab+c: tokenizers leaves '▁abc' as ▁|a|bc (no a+bc merge), while
    SentencePiece's BPE merges any adjacent pair whose result is a piece, so a|bc -> abc. The structure passes,
    the check does not."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from zoo.text.external import HFFileTokenizer

    vocab = {"<unk>": 0, "▁": 1, "a": 2, "b": 3, "c": 4, "bc": 5, "ab": 6, "abc": 7}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[("b", "c"), ("a", "b"), ("ab", "c")], unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    (tmp_path / "tokenizer.json").write_text(tk.to_str())
    tok = HFFileTokenizer()
    tok.load_weights(tmp_path / "tokenizer.json")
    assert tok.encode("abc") == [1, 2, 5]
    assert ex.convert(tok, "sentencepiece")  # the structure is expressible
    with pytest.raises(ExportRefused, match=r"loaded by sentencepiece, encodes check text 0 \('abc'\) differently: "
                                            r"first at token 1 \(zoo 2, sentencepiece 7\)"):
        export(tok, "sentencepiece", tmp_path / "out", texts=["abc"])
    assert not (tmp_path / "out").exists()


def test_bad_requests_are_refused_in_one_error(tmp_path):
    tok = zoo.load("byte")
    with pytest.raises(ZooError, match="unknown export format 'onnx'; expected one of hf, tiktoken, sentencepiece"):
        export(tok, "onnx", tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ZooError, match="is a file; expected a folder"):
        export(tok, "hf", tmp_path / "file")
    with pytest.raises(ExportRefused, match="wraps every text in <bos>/<eos>"):
        export(zoo.load("byte", add_special_tokens=True), "tiktoken", tmp_path / "t")


def test_dynamic_tokenization_is_refused():
    from zoo.text.dynamic import DynamicMerger

    with pytest.raises(ExportRefused, match="dynamic tokenization merges pairs per batch"):
        ex.convert(DynamicMerger(zoo.load("byte")), "hf")


def test_a_reexport_to_the_same_folder_replaces_the_files(tmp_path):
    export(zoo.load("bpe-32k", pretrained=True), "tiktoken", tmp_path)
    export(zoo.load("byte"), "tiktoken", tmp_path)
    assert ex.load_tiktoken(tmp_path).encode_ordinary("ab") == [97, 98]
    assert len((tmp_path / "tokenizer.tiktoken").read_bytes().splitlines()) == 256


def test_a_unigram_pipeline_converts_to_sentencepiece(tmp_path):
    """SentencePiece Unigram -> tokenizer.json -> SentencePiece again: the pipeline's Precompiled char map, whitespace
    Replace steps and Prepend('▁') become SentencePiece's normaliser, the pieces and scores come back, and the ids
    are the original model's on prose (near-ties of repeated punctuation aside, see the next test). A tokenizers-
    trained Unigram with Metaspace is refused on the check corpus: SentencePiece writes its '▁' prefix even before a
    leading space, Metaspace does not."""
    import sentencepiece

    from zoo.text.external import HFFileTokenizer, SentencePieceTokenizer

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(corpus(300)), model_writer=model,
                                             vocab_size=1500, model_type="unigram", minloglevel=2)
    original = sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())
    spm = SentencePieceTokenizer()
    (tmp_path / "uni.model").write_bytes(model.getvalue())
    spm.load_weights(tmp_path / "uni.model")
    prose = [t for t in held_out(300) if not re.search(r"([!?.])\1", t)]
    assert len(prose) > 150
    export(spm, "hf", tmp_path / "hf", texts=prose)
    pipeline = HFFileTokenizer()
    pipeline.load_weights(tmp_path / "hf" / "tokenizer.json")
    export(pipeline, "sentencepiece", tmp_path / "back", texts=prose)
    back = sentencepiece.SentencePieceProcessor(model_file=str(tmp_path / "back" / "tokenizer.model"))
    assert [back.encode(t) for t in prose] == [original.encode(t) for t in prose] == pipeline.encode(prose)
    assert back.get_piece_size() == original.get_piece_size()
    assert [back.id_to_piece(i) for i in range(50)] == [original.id_to_piece(i) for i in range(50)]


def test_a_sentencepiece_unigram_converts_to_tokenizer_json(tmp_path):
    """SentencePiece's own Unigram (its nmt_nfkc char map, whitespace collapsing, dummy prefix) as a tokenizer.json:
    identical ids on prose. SentencePiece sums Viterbi scores in float32 and tokenizers in float64, so near-ties
    ("!!!" as !!|! or !|!!) can fall apart: the check corpus holds such runs and refuses this model, naming one.
    User-defined pieces are refused by name."""
    import sentencepiece
    from tokenizers import Tokenizer

    from zoo.text.external import SentencePieceTokenizer

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(corpus(300)), model_writer=model,
                                             vocab_size=1500, model_type="unigram", minloglevel=2)
    (tmp_path / "uni.model").write_bytes(model.getvalue())
    tok = SentencePieceTokenizer()
    tok.load_weights(tmp_path / "uni.model")
    prose = [t for t in held_out(300) if not re.search(r"([!?.])\1", t)]
    assert len(prose) > 150
    export(tok, "hf", tmp_path / "hf", texts=prose)
    tk = Tokenizer.from_file(str(tmp_path / "hf" / "tokenizer.json"))
    assert [tk.encode(t, add_special_tokens=False).ids for t in prose] == tok.encode(prose)
    assert json.loads(tk.to_str())["model"]["type"] == "Unigram"
    with pytest.raises(ExportRefused, match=r"loaded by tokenizers, encodes check text \d+ \(.*!!"):
        export(tok, "hf", tmp_path / "refused")
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(corpus(300)), model_writer=model, vocab_size=1500,
                                             user_defined_symbols=["<tab>"], minloglevel=2)
    (tmp_path / "user.model").write_bytes(model.getvalue())
    tok.load_weights(tmp_path / "user.model")
    with pytest.raises(ExportRefused, match=r"user-defined pieces \(\['<tab>'\]\) are matched in the raw text"):
        export(tok, "hf", tmp_path / "refused")
