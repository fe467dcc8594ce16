"""SentinelTokenizer: keyed permutation of ids (round trips, specials, schemes, parity with the reference, saving)."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

import zoo
from zoo.errors import ZooError
from zoo.text.byte import ByteTokenizer
from zoo.text.hf import BPETokenizer
from zoo.text.sentinel import (
    ENV_KEY,
    SentinelTokenizer,
    derive_key,
    keyed_permutation,
    paper_permutation,
    paper_seed,
    stretch,
)

TEXTS = ["", "a", "héllo wörld", "日本語のテキスト", "emoji 😀👍🏽 and \u200d joiners", "x" * 5000, "tab\tnew\nline"]
# The reference's random_shuffle (llm_converter.py) run on ids 0..39 with specials {0, 39} and the passkey "llm123"
# (seed 475): the permutation it returns, and glide_rotation x3 + shuffle_embedding_matrix of rows
# E[i, j] = sin(4 i + j + 1) (D = 4) with Python's random seeded by 475; figures computed once with that code.
REFERENCE_PERMUTATION = [0, 26, 30, 22, 4, 14, 35, 7, 16, 38, 15, 17, 12, 13, 5, 10, 8, 11, 18, 19, 28, 31, 3, 25,
                         34, 23, 1, 27, 20, 29, 2, 21, 32, 36, 24, 6, 33, 37, 9, 39]
REFERENCE_GLIDE = [(0.974235147130483, 0.06482966989564476), (0.8036525222527868, 0.562113297500853)]


@pytest.fixture(scope="module")
def tok():
    return SentinelTokenizer(ByteTokenizer(add_special_tokens=True), key="correct horse battery staple")


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_and_ids_are_the_permuted_base_ids(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert ids == [tok.permutation[i] for i in tok.base.encode(text)]


def test_lone_surrogates_survive_a_byte_level_base(tok):
    assert tok.decode(tok.encode("a\ud800b")) == "a\ud800b"


def test_batches_and_subword_base():
    bpe = BPETokenizer(vocab_size=300)
    bpe.fit(["the cat sat on the mat", "the dog sat on the log"] * 20)
    sentinel = SentinelTokenizer(bpe, key="k")
    batch = ["the cat", "a dog on a log", ""]
    assert sentinel.encode(batch) == [sentinel.encode(t) for t in batch]
    assert sentinel.decode(sentinel.encode(batch)) == batch
    ids = sentinel.encode("the cat")
    assert sentinel.token_strings(ids) == bpe.token_strings(bpe.encode("the cat"))
    assert sentinel.token_bytes(ids) == bpe.token_bytes(bpe.encode("the cat"))


def test_permutation_is_a_bijection_fixing_exactly_the_specials(tok):
    permutation = tok.permutation
    assert sorted(permutation) == list(range(tok.vocab_size)) == list(range(259))
    specials = set(tok.special_ids.values())
    assert specials == {256, 257, 258} and all(permutation[i] == i for i in specials)
    # a random permutation of 256 ids keeps ~1 in place; the byte ids are essentially all moved
    assert sum(permutation[i] == i for i in range(256)) <= 5
    ids = tok.encode("hi")
    assert ids[0] == 257 and ids[-1] == 258  # <bos> / <eos> stay plaintext, as in the paper


def test_keys_give_different_permutations_and_the_same_key_the_same():
    a, b = SentinelTokenizer(ByteTokenizer(), key="alpha"), SentinelTokenizer(ByteTokenizer(), key="beta")
    assert a.permutation == SentinelTokenizer(ByteTokenizer(), key="alpha").permutation
    assert sum(x == y for x, y in zip(a.permutation, b.permutation)) < 10
    assert a.fingerprint != b.fingerprint
    # the other key cannot read the ids
    assert b.decode(a.encode("secret message")) != "secret message"


def test_keyed_scheme_is_scrypt_then_blake2b_ranks():
    key = hashlib.scrypt(b"pass", salt=b"zoo.text.sentinel/v1", n=2**14, r=8, p=1, dklen=32)
    assert stretch("pass") == key
    rank = {i: hashlib.blake2b(i.to_bytes(8, "little"), key=key, person=b"zoo-sentinel-id", digest_size=16).digest()
            for i in range(1, 20)}
    expected = [0] + sorted(range(1, 20), key=rank.get)
    assert keyed_permutation(key, 20, {0}) == expected
    glide = derive_key("pass", 20, {0}, glide_steps=3).glide
    assert len(glide) == 3 and all(0 < a <= 1 and 0 < b <= 1 for a, b in glide)


def test_paper_scheme_matches_the_reference_code():
    assert paper_seed("llm123") == 475 == sum(map(ord, "llm123")) % 10000
    assert paper_permutation(475, 40, {0, 39}) == REFERENCE_PERMUTATION
    key = derive_key("llm123", 40, {0, 39}, scheme="paper", glide_steps=2)
    assert list(key.permutation) == REFERENCE_PERMUTATION
    assert list(key.glide) == REFERENCE_GLIDE
    # an involution: the halves swap pairwise; ids past the shorter half (and the specials) stay
    assert all(REFERENCE_PERMUTATION[j] == i for i, j in enumerate(REFERENCE_PERMUTATION))
    assert sum(j == i for i, j in enumerate(REFERENCE_PERMUTATION)) == 2 + (38 - 2 * (38 - (38 // 2 + 5)))


def test_paper_seed_collides_for_anagrams_the_keyed_scheme_does_not():
    paper = [SentinelTokenizer(ByteTokenizer(), key=k, scheme="paper") for k in ("llm123", "lml123")]
    keyed = [SentinelTokenizer(ByteTokenizer(), key=k) for k in ("llm123", "lml123")]
    assert paper[0].permutation == paper[1].permutation
    assert keyed[0].permutation != keyed[1].permutation
    assert paper[0].permutation != keyed[0].permutation


def test_save_load_needs_the_key_and_never_stores_it(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_KEY, raising=False)
    passkey = "a-passkey-that-must-not-leak"
    tok = SentinelTokenizer(ByteTokenizer(), key=passkey, glide_steps=3)
    tok.save_pretrained(tmp_path / "enc")
    for path in (tmp_path / "enc").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert passkey.encode() not in data and stretch(passkey).hex().encode() not in data
    record = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert record["config"] == {"base": "base", "scheme": "keyed", "glide_steps": 3, "store_fingerprint": True,
                                "key_fingerprint": tok.fingerprint}
    with pytest.raises(ZooError, match=rf"needs its passkey; pass key=\.\.\. or set \${ENV_KEY}"):
        SentinelTokenizer.from_pretrained(tmp_path / "enc")
    with pytest.raises(ZooError, match="wrong key: its fingerprint does not match"):
        SentinelTokenizer.from_pretrained(tmp_path / "enc", key="another")
    loaded = SentinelTokenizer.from_pretrained(tmp_path / "enc", key=passkey)
    assert loaded.permutation == tok.permutation and loaded.sentinel_key.glide == tok.sentinel_key.glide
    monkeypatch.setenv(ENV_KEY, passkey)
    via_zoo = zoo.load(str(tmp_path / "enc"))
    assert isinstance(via_zoo, SentinelTokenizer) and via_zoo.encode("hé") == tok.encode("hé")


def test_without_a_fingerprint_a_wrong_key_loads_and_gives_other_ids(tmp_path):
    tok = SentinelTokenizer(ByteTokenizer(), key="right", store_fingerprint=False)
    tok.save_pretrained(tmp_path / "enc")
    assert json.loads((tmp_path / "enc" / "config.json").read_text())["config"]["key_fingerprint"] is None
    wrong = SentinelTokenizer.from_pretrained(tmp_path / "enc", key="wrong")
    assert wrong.encode("text") != tok.encode("text")


def test_a_saved_subword_base_round_trips(tmp_path):
    bpe = BPETokenizer(vocab_size=290)
    bpe.fit(["ababab cdcdcd abcd"] * 30)
    tok = SentinelTokenizer(bpe, key="k", scheme="paper")
    tok.save_pretrained(tmp_path / "enc")
    loaded = SentinelTokenizer.from_pretrained(tmp_path / "enc", key="k")
    assert type(loaded.base) is BPETokenizer and loaded.encode("abcd cdab") == tok.encode("abcd cdab")
    assert loaded.scheme == "paper"


def test_errors_name_the_problem():
    with pytest.raises(ZooError, match="passkey must be a non-empty str"):
        SentinelTokenizer(ByteTokenizer(), key="")
    with pytest.raises(ZooError, match=r"scheme must be one of \['keyed', 'paper'\]"):
        SentinelTokenizer(ByteTokenizer(), key="k", scheme="rot13")
    with pytest.raises(ZooError, match="glide_steps must be an int >= 0"):
        SentinelTokenizer(ByteTokenizer(), key="k", glide_steps=-1)
    inner = SentinelTokenizer(ByteTokenizer(), key="k")
    with pytest.raises(ZooError, match="already a SentinelTokenizer"):
        SentinelTokenizer(inner, key="k")
    with pytest.raises(ZooError, match=r"ids must be ints in \[0, 259\)"):
        inner.decode([259])


def test_random_texts_round_trip():
    tok = SentinelTokenizer(ByteTokenizer(), key="fuzz")
    rng = random.Random(0)
    for _ in range(50):
        text = "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x3000),
                                       rng.randrange(0x1F300, 0x1FAFF)])) for _ in range(rng.randrange(0, 40)))
        assert tok.decode(tok.encode(text)) == text
