"""Equal-Info Windows: text compressed by a small byte-level LM and arithmetic coding, read as fixed-width tokens.

Lester et al., "Training LLMs over Neurally Compressed Text" (TMLR 2024, https://arxiv.org/abs/2404.03626).
A byte-level GPT (``M1``) gives the next-byte distribution and a range coder (``constriction``'s, 32-bit words)
turns the bytes into bits. The coder and M1's context are reset at every *window*, so each window of
``window_bits`` bits decodes on its own; the bits are cut into ``token_bits``-bit tokens (vocabulary
``2 ** token_bits``).

Where a window's bytes end, the decoder must be able to tell from the window alone. The design here:

* M1's alphabet has 257 symbols: the 256 bytes (probabilities floored at ``2 ** -floor_bits`` so every byte is
  codable) and an end-of-window symbol ``EOW`` with the fixed probability ``2 ** -eow_bits``.
* **Reading** a window (``_read_window``): decode symbols from the zero-padded window until ``EOW``, or until
  re-encoding the bytes read so far would no longer fit the window; the window holds the longest prefix whose
  re-encoding, zero-padded, *is* the window.
* **Writing** a window: take the longest run of bytes whose encoding fits (at most M1's context), then run the
  reader on the candidate window and keep it only if it reads back exactly those bytes. If it does not (the
  zero padding happens to decode to more bytes whose code is the same window), try one byte fewer, plainly and
  then closed by ``EOW``, and so on. So no window is ever emitted that does not read back, and ``EOW`` costs its
  ``eow_bits`` only where it is needed (reserving it costs ``-log2(1 - 2 ** -eow_bits)`` bits per byte). A text's
  last window takes ``EOW`` first, as its unused bits would be padding anyway; one byte then ``EOW`` always fits
  (checked), so every string is codable.

M1's probabilities must be bit-identical when writing and reading. Both step M1 one position at a time with a
key/value cache, and a prefix's distribution is always computed from its parent prefix's cache, so the same bytes
give the same floats on both sides. Tokens therefore decode on the software and hardware class that wrote them
(as for any neural compressor).
"""

from __future__ import annotations

import math
from typing import ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from zoo.errors import ZooError
from zoo.generators.gpt import GPT
from zoo.pretrained import PretrainedModule
from zoo.text.base import TextTokenizer, bytes_to_text, text_to_bytes

EOW = 256  # the end-of-window symbol, after the 256 byte values
WORD_BITS = 32  # constriction's RangeEncoder emits 32-bit words


def coding_library():
    """``constriction`` (the entropy coder), or a ZooError saying how to install it."""
    try:
        import constriction
    except ImportError:
        raise ZooError("Equal-Info Windows need the entropy coder 'constriction': `pip install constriction` "
                       "(or `pip install zoo[coding]`)") from None  # fmt: skip
    return constriction


class Window(NamedTuple):
    """One window as written: its words, how many bytes it holds, whether EOW closes it, and M1's information
    content of what it codes (``-log2`` of the bytes' and EOW's probabilities: the bits an ideal coder would use);
    ``refused``: candidate windows the writer dropped because the reader would not have read them back."""

    words: np.ndarray  # [window_bits / 32] uint32
    held: int
    closed: bool
    info_bits: float
    refused: int


class _M1Oracle:
    """M1's next-symbol distribution after each window prefix, one position per step with a key/value cache.

    A prefix's distribution is always computed the same way, from its parent prefix's cache plus one step, so the
    writer and the reader get bit-identical floats for the same bytes whatever else either explored. States are
    kept per window (``reset`` when a window starts: M1's context restarts there)."""

    def __init__(self, tokenizer: EqualInfoTokenizer):
        self.tokenizer = tokenizer
        self.reset()

    def reset(self) -> None:
        self._states: dict[tuple[int, ...], tuple[list[dict], np.ndarray]] = {}

    def probs(self, prefix) -> np.ndarray:
        return self._state(tuple(prefix))[1]

    @torch.inference_mode()
    def _state(self, key: tuple[int, ...]) -> tuple[list[dict], np.ndarray]:
        state = self._states.get(key)
        if state is None:
            m1 = self.tokenizer.m1
            if key:
                parent = self._state(key[:-1])[0]
                caches = [dict(cache) for cache in parent]  # the cache grows by new tensors: the parent's stays
                x = m1.token_embedding(torch.tensor([[key[-1]]], device=m1.device))
            else:
                caches = [{} for _ in m1.blocks]
                x = m1.start_embedding(torch.full((1, 1), m1.num_classes, device=m1.device))  # the unconditional start
            logits = m1._run(x, len(key), caches)[:, -1]  # position len(key) predicts byte len(key) of the window
            state = caches, self.tokenizer.distribution(logits)[0].cpu().numpy()
            self._states[key] = state
        return state


class EqualInfoTokenizer(PretrainedModule, TextTokenizer):
    """Equal-Info Windows over a byte-level GPT (see the module docstring).

    Args:
        window_bits: bits per window, a multiple of 32 (the coder's word) and of ``token_bits``.
        token_bits: bits per token, 8 or 16 (vocabulary 256 or 65,536).
        context_length, dim, depth, heads, seed: M1, the byte-level GPT; a window holds at most
            ``context_length`` bytes.
        eow_bits: the end-of-window symbol has probability ``2 ** -eow_bits``.
        floor_bits: every byte keeps at least probability ``2 ** -floor_bits``, so any string is codable.
    """

    modality: ClassVar[str] = "text"
    lossless: ClassVar[bool] = True

    def __init__(
        self,
        window_bits: int = 64,
        token_bits: int = 16,
        context_length: int = 64,
        dim: int = 128,
        depth: int = 2,
        heads: int = 4,
        eow_bits: int = 10,
        floor_bits: int = 16,
        seed: int = 0,
    ):
        super().__init__()
        if token_bits not in (8, 16):
            raise ZooError(f"EqualInfoTokenizer: token_bits must be 8 or 16, got {token_bits}")
        if window_bits < WORD_BITS or window_bits % WORD_BITS or window_bits % token_bits:
            raise ZooError(f"EqualInfoTokenizer: window_bits must be a positive multiple of {WORD_BITS} (the coder's "
                           f"word) and of token_bits {token_bits}, got {window_bits}")  # fmt: skip
        if not 1 <= eow_bits <= 20 or not 9 <= floor_bits <= 20:
            raise ZooError(f"EqualInfoTokenizer: need 1 <= eow_bits <= 20 and 9 <= floor_bits <= 20, got "
                           f"{eow_bits} and {floor_bits}")  # fmt: skip
        self.window_bits, self.token_bits = window_bits, token_bits
        self.context_length, self.eow_bits, self.floor_bits, self.seed = context_length, eow_bits, floor_bits, seed
        self.m1 = GPT(vocab_size=256, context_length=context_length, dim=dim, depth=depth, heads=heads, seed=seed)
        self.m1.eval()

    # -- shape of the code ---------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return 2**self.token_bits

    @property
    def tokens_per_window(self) -> int:
        return self.window_bits // self.token_bits

    @property
    def _words(self) -> int:
        return self.window_bits // WORD_BITS

    def _tokens_of(self, words: np.ndarray) -> list[int]:
        per_word = WORD_BITS // self.token_bits
        mask = self.vocab_size - 1
        shifts = [WORD_BITS - self.token_bits * (i + 1) for i in range(per_word)]  # big-endian within a word
        return [(int(w) >> s) & mask for w in words for s in shifts]

    def _words_of(self, tokens: list[int]) -> np.ndarray:
        per_word = WORD_BITS // self.token_bits
        words = []
        for i in range(0, len(tokens), per_word):
            value = 0
            for t in tokens[i : i + per_word]:
                value = (value << self.token_bits) | t
            words.append(value)
        return np.asarray(words, dtype=np.uint32)

    # -- M1 ------------------------------------------------------------------------------------------------
    def distribution(self, logits: torch.Tensor) -> torch.Tensor:
        """M1's byte logits [..., 256] -> symbol probabilities [..., 257] float64: floored bytes, then EOW."""
        floor = 2.0**-self.floor_bits
        probs = F.softmax(logits.double(), dim=-1) * (1 - 256 * floor) + floor
        eow = 2.0**-self.eow_bits
        return torch.cat([probs * (1 - eow), torch.full_like(probs[..., :1], eow)], dim=-1)

    @torch.inference_mode()
    def symbol_probs(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, L] bytes -> [B, L, 257]: row t is the distribution of symbol t after ids[:, :t], from one full
        forward pass (the coder itself steps with a cache, see ``_M1Oracle``)."""
        return self.distribution(self.m1(ids))

    def training_losses(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        """M1's next-byte cross-entropy on crops of ``context_length`` bytes of ``batch["text"]`` (a window may
        start anywhere in a text, so crops do too); crop starts are drawn from (seed, step)."""
        if "text" not in batch:
            raise ZooError(f"EqualInfoTokenizer: batch has no 'text' entry (keys: {sorted(batch)})")
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        length = self.context_length
        ids = torch.zeros(len(batch["text"]), length, dtype=torch.long)
        mask = torch.zeros(len(batch["text"]), length, dtype=torch.bool)
        for row, text in enumerate(batch["text"]):
            data = text_to_bytes(text)
            start = int(torch.randint(max(1, len(data) - length + 1), (1,), generator=generator))
            crop = data[start : start + length]
            ids[row, : len(crop)] = torch.tensor(list(crop), dtype=torch.long)
            mask[row, : len(crop)] = True
        if not mask.any():
            raise ZooError("EqualInfoTokenizer: the batch's texts hold no bytes to train M1 on")
        ids, mask = ids.to(self.device), mask.to(self.device)
        logits = self.m1(ids)
        loss = F.cross_entropy(logits[mask], ids[mask])
        return {"loss": loss, "bits_per_byte": loss.detach() / math.log(2)}

    # -- windows -------------------------------------------------------------------------------------------
    def _check_smallest_window(self, coding) -> None:
        """The fallback window (one byte at the floor probability, then EOW) must fit, or some text is not codable."""
        eow = 2.0**-self.eow_bits
        byte_probs = np.full(256, 2.0**-self.floor_bits)
        byte_probs[1] += 1 - byte_probs.sum()
        model = coding.stream.model.Categorical(np.append(byte_probs * (1 - eow), eow), perfect=False)
        encoder = coding.stream.queue.RangeEncoder()
        encoder.encode(0, model)
        encoder.encode(EOW, model)
        if encoder.num_words() > self._words:
            raise ZooError(f"EqualInfoTokenizer: window_bits {self.window_bits} cannot hold one byte at probability "
                           f"2^-{self.floor_bits} plus the end-of-window symbol; use more window_bits or fewer "
                           "floor_bits / eow_bits")  # fmt: skip

    def _padded(self, encoder) -> np.ndarray | None:
        words = encoder.get_compressed()
        if len(words) > self._words:
            return None
        return np.concatenate([words, np.zeros(self._words - len(words), dtype=np.uint32)])

    def _read_window(self, words: np.ndarray, oracle: _M1Oracle, coding) -> bytes | None:
        """The bytes a window holds (the rule in the module docstring), or None if no prefix re-encodes to it."""
        decoder = coding.stream.queue.RangeDecoder(words)
        encoder = coding.stream.queue.RangeEncoder()
        out: list[int] = []
        best = None
        for _ in range(self.context_length):
            model = coding.stream.model.Categorical(oracle.probs(out), perfect=False)
            symbol = int(decoder.decode(model))
            if symbol == EOW:
                return bytes(out)
            encoder.encode(symbol, model)
            if encoder.num_words() > self._words:
                break
            out.append(symbol)
            padded = self._padded(encoder)
            if padded is not None and np.array_equal(padded, words):
                best = len(out)
        return None if best is None else bytes(out[:best])

    def _write_window(self, upcoming: bytes, last: bool, oracle: _M1Oracle, coding) -> Window:
        """The window for the text that starts with ``upcoming`` (at most ``context_length`` bytes); ``last``:
        ``upcoming`` is the rest of the text."""
        Categorical, RangeEncoder = coding.stream.model.Categorical, coding.stream.queue.RangeEncoder  # noqa: N806
        oracle.reset()
        states, models = [RangeEncoder()], []  # states[j]: the coder after j bytes; models[j]: symbol j's model
        for j, byte in enumerate(upcoming):
            models.append(Categorical(oracle.probs(list(upcoming[:j])), perfect=False))
            trial = states[-1].clone()
            trial.encode(byte, models[j])
            if trial.num_words() > self._words:
                break
            states.append(trial)
        fits = len(states) - 1
        # Most bytes first, a plain window before an EOW-closed one of the same bytes; EOW needs a position inside
        # M1's context. The text's last window tries EOW first: its spare bits are padding anyway.
        candidates = [(count, eow) for count in range(fits, 0, -1) for eow in (False, True)
                      if not eow or count < self.context_length]  # fmt: skip
        if last and fits == len(upcoming) and (fits, True) in candidates:
            candidates.remove((fits, True))
            candidates.insert(0, (fits, True))
        for refused, (count, with_eow) in enumerate(candidates):
            encoder = states[count]
            if with_eow:
                encoder = encoder.clone()
                model = models[count] if count < len(models) else Categorical(oracle.probs(list(upcoming[:count])),
                                                                               perfect=False)
                encoder.encode(EOW, model)
            words = self._padded(encoder)
            if words is not None and self._read_window(words, oracle, coding) == upcoming[:count]:
                symbols = [*upcoming[:count], *([EOW] if with_eow else [])]
                info = -sum(math.log2(oracle.probs(list(upcoming[:j]))[s]) for j, s in enumerate(symbols))
                return Window(words, count, with_eow, info, refused)
        raise ZooError(f"EqualInfoTokenizer: no window reads back the bytes {upcoming[:8]!r}...; this is a bug")

    def windows(self, text: str) -> list[Window]:
        """The text's windows, in order."""
        coding = coding_library()
        self._check_smallest_window(coding)
        data, position, out = text_to_bytes(text), 0, []
        oracle = _M1Oracle(self)
        while position < len(data):
            upcoming = data[position : position + self.context_length]
            last = position + len(upcoming) == len(data)
            window = self._write_window(upcoming, last, oracle, coding)
            out.append(window)
            position += window.held
        return out

    # -- the text contract ---------------------------------------------------------------------------------
    def encode_one(self, text: str) -> list[int]:
        return [t for window in self.windows(text) for t in self._tokens_of(window.words)]

    def window_bytes(self, ids: list[int]) -> list[bytes]:
        """The bytes each window of ``ids`` holds."""
        if len(ids) % self.tokens_per_window:
            raise ZooError(f"EqualInfoTokenizer.decode: {len(ids)} ids are not whole windows of "
                           f"{self.tokens_per_window} tokens ({self.window_bits} bits / {self.token_bits} bits)")
        coding, oracle, out = coding_library(), _M1Oracle(self), []
        step = self.tokens_per_window
        for index in range(0, len(ids), step):
            oracle.reset()
            data = self._read_window(self._words_of(ids[index : index + step]), oracle, coding)
            if data is None:
                raise ZooError(f"EqualInfoTokenizer.decode: window {index // step} does not decode; the ids were not "
                               "written by this tokenizer (its M1 weights and window settings)")  # fmt: skip
            out.append(data)
        return out

    def decode_bytes(self, ids: list[int]) -> bytes:
        return b"".join(self.window_bytes(ids))

    def decode_one(self, ids: list[int]) -> str:
        return bytes_to_text(self.decode_bytes(ids))

    def token_bytes(self, ids: list[int]) -> list[bytes]:
        """A window's bytes on its first token, ``b""`` on the others: tokens are bits, not pieces of text."""
        ids = list(ids)
        step = self.tokens_per_window
        return [data if i == 0 else b"" for data in self.window_bytes(ids) for i in range(step)]

    def token_strings(self, ids: list[int]) -> list[str]:
        return [f"<{i:0{self.token_bits // 4}x}>" for i in ids]
