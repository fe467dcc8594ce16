"""LiB: the memory's mechanics, learning multiword chunks, compiled greedy longest-match reading."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

import zoo
from tests._text_corpus import corpus, held_out
from zoo.errors import ZooError
from zoo.text.lib import LiBTokenizer, _Memory


def greedy_reference(chunks: list[bytes], data: bytes) -> list[bytes]:
    """Greedy longest match over bytes, one position at a time (the slow definition)."""
    known = set(chunks) | {bytes([b]) for b in range(256)}
    longest = max(map(len, known))
    out, i = [], 0
    while i < len(data):
        size = next(n for n in range(min(longest, len(data) - i), 0, -1) if data[i : i + n] in known)
        out.append(data[i : i + size])
        i += size
    return out


def _with_chunks(chunks: list[str]) -> LiBTokenizer:
    tok = LiBTokenizer(epochs=0)
    tok._compile(chunks)
    return tok


def test_reading_is_greedy_longest_match_with_byte_fallback():
    tok = _with_chunks(["ab", "abc", "bcd", " the", "é"])
    assert tok.token_strings(tok.encode("abcd the")) == ["abc", "d", " the"]
    assert tok.token_strings(tok.encode("abd")) == ["ab", "d"]
    # an unknown character falls back to its bytes; é is a chunk
    assert tok.token_bytes(tok.encode("€é")) == [b"\xe2", b"\x82", b"\xac", "é".encode()]
    assert tok.encode("a\ud800") == [ord("a"), 0xED, 0xA0, 0x80]  # lone surrogate: its 3 generalised bytes
    assert tok.decode(tok.encode("a\ud800€")) == "a\ud800€"


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(st.text(alphabet="abcé ", min_size=2, max_size=5), max_size=12),
    text=st.text(alphabet="abcé x", max_size=40),
)
def test_automaton_equals_the_slow_definition_and_the_tokenizers_regex(chunks, text):
    tok = _with_chunks(chunks)
    ids = tok.encode(text)
    assert tok.token_bytes(ids) == greedy_reference([c.encode() for c in chunks], text.encode())
    assert tok.hf_tokenizer.encode(text, add_special_tokens=False).ids == ids
    assert tok.decode(ids) == text


def test_memory_match_two_and_moves():
    memory = _Memory(max_len=4)
    for chunk in ["a", "b", "ab", "abc", "x"]:
        memory.append(chunk)
    assert memory.match_two("abcd", 0) == (2, 3)  # "ab" then "abc"
    assert memory.match_two("zz", 0) == (0, 0)
    assert memory.move("x", -1, 0.2, 0)  # rank 4 moves int(4 * 0.2) + 1 = 1 place toward the head
    assert memory.order == ["a", "b", "ab", "x", "abc"]
    assert memory.move("ab", +1, 0.2, 1)  # rank 2 (searched from 1: one earlier move) goes 1 place tailward
    assert memory.order == ["a", "b", "x", "ab", "abc"]


def test_memory_move_toward_tail_and_forgetting():
    memory = _Memory(max_len=4)
    for chunk in "abcdefghij":
        memory.append(chunk)
    assert memory.move("e", +1, 0.5, 0)  # rank 4: step int(4 * 0.5) + 1 = 3 -> index 7
    assert memory.order.index("e") == 7
    memory.reindex()
    assert not memory.move("i", +1, 0.5, 0)  # rank 8: step 5 -> past the tail
    memory.remove_many(["i"])
    assert "i" not in memory and memory.match_two("i", 0) == (0, 0) and len(memory) == 9


@pytest.fixture(scope="module")
def learned() -> LiBTokenizer:
    tok = LiBTokenizer(epochs=2000, seed=0)
    tok.fit(corpus())
    return tok


def test_learning_builds_chunks_across_spaces_and_compresses(learned):
    assert learned.vocab_size > 256 + 200
    assert any(" " in chunk.strip(" ") for chunk in learned.chunks)  # multiword units: "of the", ...
    texts = held_out()
    ids = learned.encode(texts)
    assert sum(map(len, ids)) < 0.75 * sum(len(t.encode()) for t in texts)
    assert learned.decode(ids) == texts


def test_every_training_character_stays_one_token(learned):
    chars = {ch for text in corpus() for ch in text.encode("utf-8", "ignore").decode()}
    assert len(chars) > 1000  # Han characters included
    assert all(len(learned.encode(ch)) == 1 for ch in chars)


def test_learning_is_deterministic_by_seed():
    docs = list(corpus(300))
    one, two, other = (LiBTokenizer(epochs=300, seed=s) for s in (1, 1, 2))
    for tok in (one, two, other):
        tok.fit(docs)
    assert one.chunks == two.chunks
    assert one.chunks != other.chunks


def test_save_load_and_tokenizers_file_agree(learned, tmp_path):
    folder = learned.save_pretrained(tmp_path / "lib")
    again = zoo.load(folder)
    text = "\n".join(held_out(80))
    assert again.encode(text) == learned.encode(text)
    assert Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text, add_special_tokens=False).ids == (
        learned.encode(text)
    )


def test_vocab_size_caps_the_lowest_priority_chunks(learned):
    capped = LiBTokenizer(vocab_size=300)
    capped._compile(learned.chunks)  # what fit does with the learned memory
    assert capped.vocab_size == 300
    assert capped.chunks == learned.chunks[: 300 - 256]


def test_bad_settings_and_inputs_are_errors():
    with pytest.raises(ZooError, match="memory_in"):
        LiBTokenizer(memory_in=2.0)
    with pytest.raises(ZooError, match="at least 256"):
        LiBTokenizer(vocab_size=10)
    with pytest.raises(ZooError, match="no non-empty documents"):
        LiBTokenizer(epochs=1).fit(["", ""])
