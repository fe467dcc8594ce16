"""Exact byte-level probabilities from a tokenized language model.

Phan et al., "Exact Byte-Level Probabilities from Tokenized Language Models for FIM-Tasks and Model
Ensembles" (ICLR 2025, https://arxiv.org/abs/2410.09303; code
``facebookresearch/Exact-Byte-Level-Probabilities-from-Tokenized-LMs``). A token-level LM defines a
distribution over byte strings; the probability that the bytes *start with* ``x`` is the total mass of
its covers (the lemma P(x) = sum over cover(x) of P(t)):

    a cover of x is a token sequence c_1..c_k whose first k-1 tokens spell a strict prefix x[:j] of x and
    whose last token starts with the rest x[j:] (so c reaches or passes the end of x).

Only *valid* sequences count: those the tokenizer itself would produce (``encode(bytes(c)) == c``). A
valid cover's first k-1 tokens spell x[:j] and are valid, so they are the canonical encoding of x[:j]:
the covers are found with one encoding per split point and a prefix search of the vocabulary. The result
is exact when the LM gives invalid sequences no mass (``ValidOnlyLM`` makes any LM so); for a trained LM
that puts little mass there it is the paper's approximation.

From prefix probabilities the next byte follows: P(x + b) is the mass of the covers of x whose leftover
starts with b, plus the mass of the canonical encoding of x times its next-token probabilities grouped by
first byte. So LMs over different tokenizers are compared in bits per byte, and sampled byte by byte
without the prompt-boundary problem (a prompt that ends inside a token).

Tokens with no bytes (specials) carry no text; ``end_id`` names the one that ends a text, if any.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

import torch

from zoo.errors import ZooError

END = 256  # index of "end of text" in a next-byte distribution (after the 256 byte values)


def logsumexp(values: Sequence[float]) -> float:
    if not values:
        return -math.inf
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


class TokenLM:
    """What the byte-level view needs of a language model: next-token log-probabilities after a prefix.

    Subclasses return a float64 tensor ``[vocab_size]`` (log-probabilities summing to one)."""

    vocab_size: int

    def next_token_logprobs(self, prefix: tuple[int, ...]) -> torch.Tensor:
        raise ZooError(f"{type(self).__name__} must implement next_token_logprobs(prefix)")


class GPTTokenLM(TokenLM):
    """``zoo.generators.GPT`` as a TokenLM (its start token conditions the empty prefix)."""

    def __init__(self, gpt):
        self.gpt, self.vocab_size = gpt, gpt.vocab_size

    @torch.no_grad()
    def next_token_logprobs(self, prefix: tuple[int, ...]) -> torch.Tensor:
        if len(prefix) + 1 > self.gpt.context_length:
            raise ZooError(f"GPTTokenLM: a prefix of {len(prefix)} tokens exceeds the context of "
                           f"{self.gpt.context_length} - 1")  # fmt: skip
        ids = torch.tensor([[*prefix, 0]], dtype=torch.long)  # the last id is a placeholder: only its logits count
        logits = self.gpt.eval()(ids)[0, -1].double()
        return torch.log_softmax(logits, dim=-1)


class ValidOnlyLM(TokenLM):
    """An LM restricted to valid sequences: a token that would make the prefix invalid gets no mass, the rest is
    renormalised. Exactness for the cover algorithm at the cost of one encoding per vocabulary token per step
    (for small vocabularies and tests)."""

    def __init__(self, lm: TokenLM, view: ByteLevelLM):
        self.lm, self.view, self.vocab_size = lm, view, lm.vocab_size

    def next_token_logprobs(self, prefix: tuple[int, ...]) -> torch.Tensor:
        logprobs = self.lm.next_token_logprobs(prefix).clone()
        for token in range(self.vocab_size):
            if self.view.token_bytes[token] and not self.view.is_valid((*prefix, token)):
                logprobs[token] = -math.inf
        return logprobs - torch.logsumexp(logprobs, dim=0)


def byte_encoder(tokenizer) -> Callable[[bytes], list[int]]:
    """The tokenizer's canonical encoding of any byte string, including prefixes that end inside a character.

    Byte-level tokenizers serve every byte string (the byte tokenizer; tiktoken encodings, whose ranks are the
    ids); others encode text, so a byte string must be UTF-8."""
    from zoo.text.byte import ByteTokenizer

    if isinstance(tokenizer, ByteTokenizer) and not tokenizer.add_special_tokens:
        return list
    encoding = getattr(tokenizer, "_encoding", None)  # zoo.text.external.TiktokenTokenizer
    if encoding is not None and hasattr(encoding, "_encode_bytes"):
        return encoding._encode_bytes  # tiktoken's own byte-level BPE (its public API takes str only)

    def through_text(data: bytes) -> list[int]:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ZooError(f"{type(tokenizer).__name__} encodes text only: the byte string {data[-8:]!r} ends inside "
                           "a character; use a byte-level tokenizer (byte, tiktoken) for byte-level probabilities"
                           ) from None  # fmt: skip
        return list(tokenizer.encode(text))

    return through_text


class ByteLevelLM:
    """A tokenizer and a token-level LM seen as a distribution over bytes.

    Args:
        tokenizer: a zoo text tokenizer (``token_bytes`` gives each id's bytes).
        lm: a ``TokenLM`` over the same ids.
        end_id: the id that ends a text (its probability becomes the "end" outcome), or None.
        encode_bytes: canonical encoder of byte strings; by default ``byte_encoder(tokenizer)``.
    """

    def __init__(self, tokenizer, lm: TokenLM, end_id: int | None = None,
                 encode_bytes: Callable[[bytes], list[int]] | None = None):  # fmt: skip
        if lm.vocab_size < tokenizer.vocab_size:
            raise ZooError(f"ByteLevelLM: the LM has {lm.vocab_size} ids, the tokenizer {tokenizer.vocab_size}")
        self.tokenizer, self.lm, self.end_id = tokenizer, lm, end_id
        self.encode_bytes = encode_bytes or byte_encoder(tokenizer)
        self.token_bytes: list[bytes] = list(tokenizer.token_bytes(list(range(tokenizer.vocab_size))))
        self.token_bytes += [b""] * (lm.vocab_size - len(self.token_bytes))
        # The vocabulary sorted by bytes: the tokens starting with s form one run from bisect_left(s).
        pairs = sorted((raw, i) for i, raw in enumerate(self.token_bytes) if raw)
        self._sorted_bytes = [raw for raw, _ in pairs]
        self._sorted_ids = [i for _, i in pairs]
        self._next: dict[tuple[int, ...], torch.Tensor] = {}
        self._prefix: dict[tuple[int, ...], float] = {(): 0.0}
        self._encoded: dict[bytes, tuple[int, ...]] = {}

    # -- pieces -------------------------------------------------------------------------------------------
    def encode(self, data: bytes) -> tuple[int, ...]:
        if data not in self._encoded:
            self._encoded[data] = tuple(self.encode_bytes(data))
        return self._encoded[data]

    def spell(self, ids: Sequence[int]) -> bytes:
        return b"".join(self.token_bytes[i] for i in ids)

    def is_valid(self, ids: tuple[int, ...]) -> bool:
        """The tokenizer's own encoding of these tokens' bytes is these tokens."""
        return self.encode(self.spell(ids)) == tuple(ids)

    def tokens_starting_with(self, data: bytes) -> list[int]:
        start = bisect.bisect_left(self._sorted_bytes, data)
        out = []
        for at in range(start, len(self._sorted_bytes)):
            if not self._sorted_bytes[at].startswith(data):
                break
            out.append(self._sorted_ids[at])
        return out

    def next_token_logprobs(self, prefix: tuple[int, ...]) -> torch.Tensor:
        if prefix not in self._next:
            self._next[prefix] = self.lm.next_token_logprobs(prefix).double()
        return self._next[prefix]

    def token_logprob(self, ids: tuple[int, ...]) -> float:
        """log P(the token sequence starts with ids), by the chain rule."""
        if ids not in self._prefix:
            head = ids[:-1]
            self._prefix[ids] = self.token_logprob(head) + float(self.next_token_logprobs(head)[ids[-1]])
        return self._prefix[ids]

    # -- the lemma ------------------------------------------------------------------------------------------
    def covers(self, data: bytes) -> list[tuple[tuple[int, ...], float]]:
        """The valid covers of ``data`` with their log-probabilities (the empty string's one cover is ())."""
        if not data:
            return [((), 0.0)]
        found = []
        for split in range(len(data)):
            left = self.encode(data[:split])
            if self.spell(left) != data[:split]:
                continue  # a lossy encoding spells something else: no valid sequence starts this way
            for token in self.tokens_starting_with(data[split:]):
                candidate = (*left, token)
                if self.is_valid(candidate):
                    found.append((candidate, self.token_logprob(candidate)))
        return found

    def prefix_logprob(self, data: bytes) -> float:
        """log P(the generated bytes start with ``data``)."""
        return logsumexp([logprob for _, logprob in self.covers(data)])

    def next_byte_logprobs(self, data: bytes) -> torch.Tensor:
        """log P(next byte | the bytes start with ``data``): ``[257]``, the last entry "the text ends here"."""
        mass: list[list[float]] = [[] for _ in range(END + 1)]
        for ids, logprob in self.covers(data):
            leftover = self.spell(ids)[len(data):]
            if leftover:
                mass[leftover[0]].append(logprob)
        exact = self.encode(data)
        if self.spell(exact) == data:  # the sequences that reach exactly the end of data go through exact
            base = self.token_logprob(exact)
            following = self.next_token_logprobs(exact)
            for token, raw in enumerate(self.token_bytes):
                if raw and following[token] > -math.inf and self.is_valid((*exact, token)):
                    mass[raw[0]].append(base + float(following[token]))
            if self.end_id is not None:
                mass[END].append(base + float(following[self.end_id]))
        totals = torch.tensor([logsumexp(m) for m in mass], dtype=torch.float64)
        norm = torch.logsumexp(totals, dim=0)
        if norm == -math.inf:
            raise ZooError(f"ByteLevelLM: the bytes {data[-16:]!r} have no probability under this LM")
        return totals - norm

    def text_logprob(self, data: bytes, include_end: bool = False) -> float:
        """log P(data) byte by byte (chain rule over ``next_byte_logprobs``), optionally ending there."""
        total = 0.0
        for at in range(len(data)):
            total += float(self.next_byte_logprobs(data[:at])[data[at]])
        if include_end:
            total += float(self.next_byte_logprobs(data)[END])
        return total

    def bits_per_byte(self, data: bytes) -> float:
        if not data:
            raise ZooError("ByteLevelLM.bits_per_byte: expected at least one byte")
        return -self.text_logprob(data) / (len(data) * math.log(2))

    def sample(self, prompt: bytes, max_bytes: int, generator: torch.Generator | None = None) -> bytes:
        """Continue ``prompt`` byte by byte (it may end inside a token or a character), until ``max_bytes`` more or
        the end of the text."""
        data = bytes(prompt)
        for _ in range(max_bytes):
            probs = self.next_byte_logprobs(data).exp()
            choice = int(torch.multinomial(probs, 1, generator=generator))
            if choice == END:
                break
            data += bytes([choice])
        return data
