"""Exact byte-level probabilities: the cover algorithm against brute-force marginalisation over every token
sequence of a tiny LM (agreement to 1e-9), next-byte distributions, the chain rule, byte-by-byte sampling."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from zoo.errors import ZooError
from zoo.generators.byte_probs import END, ByteLevelLM, GPTTokenLM, TokenLM, ValidOnlyLM, byte_encoder
from zoo.generators.gpt import GPT
from zoo.text.byte import ByteTokenizer
from zoo.text.external import TiktokenTokenizer

END_ID = 259
MAX_TOKENS = 4  # the toy LM ends every text by its fifth token


def toy_tokenizer() -> TiktokenTokenizer:
    """256 bytes plus the merges ab, bc, abc (ab + c), one pre-token per text, and an end token."""
    tok = TiktokenTokenizer(pattern=r"[\s\S]+", special_tokens={"<end>": END_ID}, name="toy")
    ranks = {bytes([b]): b for b in range(256)}
    ranks.update({b"ab": 256, b"bc": 257, b"abc": 258})
    tok._adopt(ranks)
    return tok


class MarkovLM(TokenLM):
    """Random next-token probabilities given the last token, over a, b, c, ab, bc, abc and the end."""

    SUPPORT = [ord("a"), ord("b"), ord("c"), 256, 257, 258, END_ID]

    def __init__(self, seed: int = 0):
        self.vocab_size = END_ID + 1
        generator = torch.Generator().manual_seed(seed)
        self.table = torch.randn(self.vocab_size + 1, len(self.SUPPORT), generator=generator, dtype=torch.float64)

    def next_token_logprobs(self, prefix):
        out = torch.full((self.vocab_size,), -math.inf, dtype=torch.float64)
        if len(prefix) >= MAX_TOKENS:
            out[END_ID] = 0.0
            return out
        row = self.table[prefix[-1] if prefix else self.vocab_size]
        out[self.SUPPORT] = torch.log_softmax(row, dim=0)
        return out


@pytest.fixture(scope="module")
def exact():
    tok = toy_tokenizer()
    view = ByteLevelLM(tok, MarkovLM(), end_id=END_ID)
    return ByteLevelLM(tok, ValidOnlyLM(MarkovLM(), view), end_id=END_ID)


def brute_force(lm: TokenLM, spell) -> dict[bytes, float]:
    """Probability of every complete text (its bytes), summing over all token sequences that spell it."""
    texts: dict[bytes, float] = {}
    stack = [((), 0.0)]
    while stack:
        prefix, logprob = stack.pop()
        following = lm.next_token_logprobs(prefix)
        for token in torch.nonzero(following > -math.inf).flatten().tolist():
            step = logprob + float(following[token])
            if token == END_ID:
                text = spell(prefix)
                texts[text] = texts.get(text, 0.0) + math.exp(step)
            else:
                stack.append(((*prefix, token), step))
    return texts


@pytest.fixture(scope="module")
def marginals(exact):
    return brute_force(exact.lm, exact.spell)


def _strings(max_length: int):
    for length in range(max_length + 1):
        for letters in itertools.product(b"abc", repeat=length):
            yield bytes(letters)


def test_the_brute_force_distribution_is_a_distribution(marginals):
    assert sum(marginals.values()) == pytest.approx(1.0, abs=1e-12)
    assert len(marginals) > 50  # many texts, most with several tokenizations before the validity mask


def test_prefix_probabilities_equal_brute_force_marginalisation(exact, marginals):
    worst = 0.0
    for prefix in _strings(5):
        expected = sum(p for text, p in marginals.items() if text.startswith(prefix))
        got = math.exp(exact.prefix_logprob(prefix)) if expected > 0 else 0.0
        worst = max(worst, abs(got - expected))
        assert got == pytest.approx(expected, abs=1e-9, rel=1e-9), prefix
    assert worst < 1e-9


def test_next_byte_distributions_equal_the_ratio_of_prefix_masses(exact, marginals):
    for prefix in _strings(3):
        mass = sum(p for text, p in marginals.items() if text.startswith(prefix))
        if mass == 0:
            continue
        probs = exact.next_byte_logprobs(prefix).exp()
        assert float(probs.sum()) == pytest.approx(1.0, abs=1e-12)
        for byte in b"abc":
            following = sum(p for text, p in marginals.items() if text.startswith(prefix + bytes([byte])))
            assert float(probs[byte]) == pytest.approx(following / mass, abs=1e-9), (prefix, byte)
        assert float(probs[END]) == pytest.approx(marginals.get(prefix, 0.0) / mass, abs=1e-9)


def test_the_byte_chain_rule_gives_the_token_likelihood_of_the_canonical_encoding(exact, marginals):
    for text in [b"abc", b"abab", b"cab", b"bcbc"]:
        assert math.exp(exact.text_logprob(text, include_end=True)) == pytest.approx(marginals[text], abs=1e-12)


def test_covers_of_a_prompt_ending_inside_a_token(exact):
    covers = dict(exact.covers(b"ab"))
    spelled = sorted(exact.spell(ids) for ids in covers)
    # "ab" alone, "abc" (one token) and the valid two-token covers that pass the end of the prompt
    assert b"ab" in spelled and b"abc" in spelled
    assert all(s.startswith(b"ab") for s in spelled)
    assert all(exact.is_valid(ids) for ids in covers)


def test_sampling_byte_by_byte_is_seeded_and_stays_in_the_support(exact):
    first = exact.sample(b"a", 10, generator=torch.Generator().manual_seed(3))
    again = exact.sample(b"a", 10, generator=torch.Generator().manual_seed(3))
    assert first == again and first.startswith(b"a") and set(first) <= set(b"abc")


def test_over_the_byte_tokenizer_the_bytes_are_the_gpt_tokens():
    """With one token per byte there is one cover per prefix: the next-byte distribution is the GPT's own,
    renormalised over the 256 byte tokens (the specials carry no bytes)."""
    tok = ByteTokenizer()
    gpt = GPT(vocab_size=tok.vocab_size, context_length=16, dim=32, depth=1, heads=2, seed=0)
    view = ByteLevelLM(tok, GPTTokenLM(gpt))
    prefix = b"hi\xe6"  # ends inside a character: byte-level tokenizers serve it
    own = GPTTokenLM(gpt).next_token_logprobs(tuple(prefix))[:256]
    expected = own - torch.logsumexp(own, dim=0)
    assert torch.allclose(view.next_byte_logprobs(prefix)[:256], expected, atol=1e-9)
    assert view.next_byte_logprobs(prefix)[END] == -math.inf
    assert view.bits_per_byte(b"hello") > 0


def test_a_text_only_tokenizer_refuses_a_prefix_inside_a_character():
    from zoo.text.hf import BPETokenizer

    tok = BPETokenizer(vocab_size=270)
    tok.fit(["héllo wörld"] * 5)
    encode = byte_encoder(tok)
    assert encode("héllo".encode()) == tok.encode("héllo")
    with pytest.raises(ZooError, match="ends inside a character; use a byte-level tokenizer"):
        encode("hé".encode()[:2])


def test_an_lm_smaller_than_the_tokenizer_is_refused():
    class Tiny(TokenLM):
        vocab_size = 10

    with pytest.raises(ZooError, match="the LM has 10 ids, the tokenizer 259"):
        ByteLevelLM(ByteTokenizer(), Tiny())
