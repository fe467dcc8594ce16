"""Equal-Info Windows: lossless on every Python string, fixed-width windows that decode on their own, bit-exact M1
probabilities between writer and reader, save/load, and the errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zoo
from zoo.errors import ZooError

pytest.importorskip("constriction", reason="Equal-Info Windows need `pip install constriction`")

from zoo.generators.equal_info import EOW, EqualInfoTokenizer, _M1Oracle, coding_library  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

# Every code point, lone surrogates included (zoo/text/base.py keeps them as their 3-byte form).
any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)
SETTINGS = [(32, 16), (64, 8), (128, 16)]


def _tiny(window_bits: int = 64, token_bits: int = 16, **overrides) -> EqualInfoTokenizer:
    """A random M1 (its probabilities are far from the text's, so windows hold few bytes and EOW is common)."""
    config = dict(context_length=16, dim=32, depth=1, heads=2, seed=3)
    return EqualInfoTokenizer(window_bits=window_bits, token_bits=token_bits, **{**config, **overrides})


_TINY = {setting: _tiny(*setting) for setting in [*SETTINGS, (64, 16)]}


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: f"w{s[0]}-n{s[1]}")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=any_text)
def test_decode_inverts_encode_on_any_string(setting, text):
    tok = _TINY[setting]
    ids = tok.encode(text)
    assert len(ids) % tok.tokens_per_window == 0
    assert all(isinstance(i, int) and 0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=any_text)
def test_every_window_reads_back_alone(text):
    """Each window is a self-contained code: its bytes come back from its own tokens, with a fresh coder and M1."""
    tok = _TINY[(64, 8)]
    windows = tok.windows(text)
    pieces = [tok.decode_bytes(tok._tokens_of(window.words)) for window in windows]
    assert [len(p) for p in pieces] == [window.held for window in windows]
    assert b"".join(pieces) == text.encode("utf-8", "surrogatepass")
    assert all(1 <= w.held <= tok.context_length and len(w.words) == 2 for w in windows)
    # an ideal coder would need the information content; a window holds at most its bits of it (plus rounding)
    assert all(0 < w.info_bits < tok.window_bits + 1 for w in windows)


def test_empty_one_byte_and_long_texts():
    tok = _TINY[(32, 16)]
    assert tok.encode("") == [] and tok.decode([]) == ""
    assert len(tok.encode("a")) == tok.tokens_per_window  # one window, zero-padded
    long = "The quick brown fox jumps over the lazy dog. " * 12
    assert tok.decode(tok.encode(long)) == long
    for odd in ["\ud800", "a\udfffb\ud83d", "\x00" * 70, "\U0010ffff\ufffe"]:  # lone surrogates, NULs, non-characters
        assert tok.decode(tok.encode(odd)) == odd
    assert tok.encode(["a", long]) == [tok.encode("a"), tok.encode(long)]


def test_windows_the_reader_would_misread_are_never_written():
    """The longest run of bytes that fits is not always readable (the zero padding decodes to further bytes whose
    code is the same window); the writer refuses such candidates, and the texts still round-trip."""
    tok = _TINY[(64, 16)]
    texts = [f"record {i}: {'xyz' * (i % 7)} ends here, {i * 37}" for i in range(15)]
    refused = 0
    for text in texts:
        windows = tok.windows(text)
        refused += sum(window.refused for window in windows)
        assert tok.decode(tok.encode(text)) == text
    assert refused > 0


def test_cached_steps_give_m1s_distributions_bit_identically_on_any_path():
    """The coder's cached one-position steps agree with M1's full forward pass, and a prefix reached after exploring
    other branches (as the writer does) gets exactly the floats a fresh reader computes."""
    tok = _tiny(context_length=32)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 256, (1, 32), generator=generator)
    full = tok.symbol_probs(ids)[0].numpy()
    fresh, explorer = _M1Oracle(tok), _M1Oracle(tok)
    for t in range(32):
        np.testing.assert_allclose(fresh.probs(ids[0, :t].tolist()), full[t], rtol=1e-5, atol=1e-9)
        if t < 31:  # a branch the reader never takes
            explorer.probs([*ids[0, :t].tolist(), (int(ids[0, t]) + 1) % 256])
    for t in range(32):
        assert np.array_equal(explorer.probs(ids[0, :t].tolist()), _M1Oracle(tok).probs(ids[0, :t].tolist()))


def test_probabilities_have_the_floor_and_the_end_of_window_symbol():
    tok = _tiny(eow_bits=10, floor_bits=16)
    probs = tok.symbol_probs(torch.zeros(1, 16, dtype=torch.long))
    assert probs.shape == (1, 16, 257) and probs.dtype == torch.float64
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 16, dtype=torch.float64))
    assert torch.all(probs[..., EOW] == 2.0**-10)
    assert probs[..., :EOW].min() >= (1 - 2.0**-10) * 2.0**-16


def test_words_become_big_endian_tokens():
    words = np.array([0x12345678, 0x9ABCDEF0], dtype=np.uint32)
    for token_bits, expected in [(8, [0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0]),
                                 (16, [0x1234, 0x5678, 0x9ABC, 0xDEF0])]:  # fmt: skip
        tok = _TINY[(64, 8)] if token_bits == 8 else _TINY[(32, 16)]
        assert tok._tokens_of(words) == expected
        assert np.array_equal(tok._words_of(expected), words)


def test_save_load_gives_the_same_tokens(tmp_path):
    tok = _TINY[(64, 8)]
    tok.save_pretrained(tmp_path / "eiw")
    loaded = zoo.load(tmp_path / "eiw")
    assert type(loaded) is EqualInfoTokenizer and loaded.config == tok.config
    text = "save, load, same bits: ünïcödé \U0001f30d"
    assert loaded.encode(text) == tok.encode(text)
    assert loaded.decode(tok.encode(text)) == text


def test_training_losses_are_m1_cross_entropy_in_bits():
    tok = _tiny()
    losses = tok.training_losses({"text": ["hello world", "a much longer text than sixteen bytes", ""]}, step=0)
    assert losses["loss"].requires_grad and torch.isfinite(losses["loss"])
    torch.testing.assert_close(losses["bits_per_byte"], losses["loss"].detach() / np.log(2))
    # Untrained M1 is near uniform over 256 bytes: about 8 bits per byte.
    assert 7.0 < float(losses["bits_per_byte"]) < 9.0


def test_bad_settings_and_ids_are_refused():
    with pytest.raises(ZooError, match="token_bits must be 8 or 16"):
        _tiny(token_bits=12)
    with pytest.raises(ZooError, match="multiple of 32"):
        _tiny(window_bits=48)
    with pytest.raises(ZooError, match="cannot hold one byte"):
        _tiny(window_bits=32, eow_bits=20, floor_bits=20).encode("x")
    tok = _TINY[(64, 16)]
    with pytest.raises(ZooError, match="not whole windows of 4 tokens"):
        tok.decode([1, 2, 3])
    with pytest.raises(ZooError, match=r"ids must be ints in \[0, 65536\)"):
        tok.decode([0, 0, 0, 65536])


def test_missing_coder_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "constriction", None)
    with pytest.raises(ZooError, match="pip install constriction"):
        coding_library()


def test_shipped_m1_compresses_held_out_fortunes_losslessly():
    from zoo.data import load_dataset

    tok = zoo.load("eiw-w64-v65k", pretrained=True)
    text = "\n".join(load_dataset("fortunes", lang="all", split="test", limit=4).texts)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    bits_per_byte = len(ids) * tok.token_bits / len(text.encode())
    assert bits_per_byte < 3.6  # 3.36 here (305 bytes in 16 windows); bytes 8, gzip -9 6.87 on it
