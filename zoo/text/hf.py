"""Trainable subword tokenizers on HF ``tokenizers``: byte-level BPE, byte-level Unigram, WordPiece.

Each is a ``tokenizers.Tokenizer`` pipeline (split pattern from ``zoo.text.digits`` -> byte-level
alphabet -> subword model) trained by ``fit(texts)`` and saved as one ``tokenizer.json`` that
``tokenizers.Tokenizer.from_file`` and transformers' ``PreTrainedTokenizerFast(tokenizer_file=...)``
load as they are. Built untrained (``zoo.load(name)``), a byte-level tokenizer already works: its
vocabulary is the 256 byte characters, so every string encodes.

Byte-level tokenizers are lossless on every Python string: zoo decodes ids through the byte table
itself (``decode(encode(s)) == s``, byte-exact) and keeps lone surrogates as their 3-byte form
(``zoo.text.base``). Special tokens in input text are encoded as plain text, never parsed as
specials, so user text cannot inject control tokens; ``decode`` drops special ids.

BPE vocabularies are encoded through the fastest engine that gives ids identical to the
``tokenizers`` path (``zoo.text.fast.build_engine``: tiktoken, else kitoken, else ``tokenizers``;
``fast=False`` keeps ``tokenizers``); ``engine`` names it. ``encode(list)`` is at least as fast as a
loop over ``encode(str)``: a loop, split over threads only for big batches when ``zoo.text.engines``
allows more than one thread (``docs/text-speed.md``).

What ``fit`` gives is exactly what the saved file holds: the trained pipeline is re-read from its
JSON, and Unigram scores are kept to 15 significant digits, which ``tokenizers``' float reader reads
back bit for bit. BPE training is deterministic (same texts, same ``tokenizer.json``). Unigram and
WordPiece training are not, and zoo cannot seed them: their trainers iterate Rust hash maps with
random per-instance seeds (Unigram: the order of words, hence the float sums of EM, so scores move
in the third decimal; WordPiece: the ids of ``##`` continuation characters, which break ties between
equally frequent pairs). Keep the saved ``tokenizer.json`` to reproduce one.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import ClassVar

from zoo.errors import ZooError
from zoo.text.base import TextTokenizer, bytes_to_text, reject_lone_surrogates
from zoo.text.bytelevel import ALPHABET, encode_keeping_surrogates, from_byte_chars, has_lone_surrogate
from zoo.text.digits import byte_level_pre_tokenizer, split_pattern

DEFAULT_SPECIALS = ("<|endoftext|>",)


def _training_texts(texts: Iterable[str], owner: str) -> Iterator[str]:
    """Texts for a trainer: lone surrogates (not Unicode, refused by the Rust engine) are dropped."""
    if isinstance(texts, str):
        raise ZooError(f"{owner}.fit: expected an iterable of texts, got one str (wrap it in a list)")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ZooError(f"{owner}.fit: text {i} is a {type(text).__name__}, expected str")
        yield text.encode("utf-8", "ignore").decode("utf-8") if has_lone_surrogate(text) else text


class HFTokenizer(TextTokenizer):
    """Shared machinery for tokenizers that are one ``tokenizers.Tokenizer``; weights = ``tokenizer.json``."""

    weights_name: ClassVar[str] = "tokenizer.json"
    model_type: ClassVar[str] = ""  # the ``model.type`` a loaded tokenizer.json must have
    byte_level: ClassVar[bool] = True

    # -- pipeline ---------------------------------------------------------------------------------
    @abstractmethod
    def _build_untrained(self, with_specials: bool = True):
        """The ``tokenizers.Tokenizer`` pipeline before training."""

    @abstractmethod
    def _trainer(self):
        """The ``tokenizers`` trainer ``fit`` runs."""

    def _set_tokenizer(self, tk, source: str | None = None) -> None:
        """Adopt a ``tokenizers.Tokenizer`` and rebuild the id tables decoding relies on.

        ``source`` names the file the pipeline came from, for errors about its vocabulary."""
        source = source or type(self).__name__
        tk.encode_special_tokens = True  # text is text: "<|endoftext|>" in input is not a control token
        added = {token.content: i for i, token in tk.get_added_tokens_decoder().items() if token.special}
        vocab = tk.get_vocab(with_added_tokens=True)
        if not tk.get_vocab(with_added_tokens=False):  # only added tokens: every ordinary text fails to encode
            raise ZooError(
                f"{source}: the model's vocabulary is empty; expected at least one token besides the added ones"
            )
        size = _check_ids_are_dense(vocab, source)
        self.special_ids: dict[str, int] = added
        id_bytes: list[bytes | None] = [None] * size  # None: an id no token has (a gap)
        byte_ids: list[int | None] = [None] * 256
        special = set(added.values())
        for token, i in vocab.items():
            if i in special:
                id_bytes[i] = b""
                continue
            raw = from_byte_chars(token) if self.byte_level else None
            id_bytes[i] = raw if raw is not None else token.encode("utf-8")
            if raw is not None and len(raw) == 1 and byte_ids[raw[0]] is None:
                byte_ids[raw[0]] = i
        if self.byte_level and None in byte_ids:
            missing = [b for b, i in enumerate(byte_ids) if i is None]
            raise ZooError(
                f"{source}: byte-level vocabulary lacks {len(missing)} of the 256 byte tokens "
                f"(e.g. byte {missing[0]}); it could not encode every string"
            )
        self._tk = tk
        self._id_bytes = id_bytes
        self._byte_ids = byte_ids
        self._fast = None  # built lazily (zoo.text.fast)

    @property
    def hf_tokenizer(self):
        """The underlying ``tokenizers.Tokenizer`` (the pipeline that ``tokenizer.json`` holds)."""
        return self._tk

    @property
    def vocab_size(self) -> int:
        return len(self._id_bytes)  # highest id + 1, gaps included (tiktoken's n_vocab)

    @property
    def lossless(self) -> bool:
        return self.byte_level

    # -- encode / decode --------------------------------------------------------------------------
    def _fast_encoder(self):
        """The engine standing in for ``tokenizers`` (``zoo.text.fast.build_engine``), else False."""
        if self._fast is None:
            from zoo.text.fast import build_engine

            self._fast = (getattr(self, "fast", False) and build_engine(self._tk)) or False
        return self._fast

    @property
    def engine(self) -> str:
        """The library encode runs through: ``tiktoken``, ``kitoken`` or ``tokenizers``."""
        fast = self._fast_encoder()
        return fast.name if fast else "tokenizers"

    @property
    def uses_tiktoken(self) -> bool:
        """True when encode runs through tiktoken."""
        return self.engine == "tiktoken"

    @property
    def tiktoken_encoding(self):
        """The ``tiktoken.Encoding`` encode runs through, or None (for benchmarks and export)."""
        fast = self._fast_encoder()
        return fast.backend if fast and fast.name == "tiktoken" else None

    def _encode_valid(self, text: str) -> list[int]:
        fast = self._fast_encoder()
        if fast:
            return fast.encode(text)
        try:
            return self._tk.encode(text, add_special_tokens=False).ids
        except Exception as err:  # e.g. a character outside a vocabulary that has no unknown token
            raise ZooError(f"{type(self).__name__}: tokenizers could not encode the text ({err})") from None

    def encode_one(self, text: str) -> list[int]:
        if not self.byte_level:
            reject_lone_surrogates(text, type(self).__name__)
            return self._encode_valid(text)
        return encode_keeping_surrogates(text, self._encode_valid, self._byte_ids)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if any(has_lone_surrogate(t) for t in texts):
            return [self.encode_one(t) for t in texts]
        fast = self._fast_encoder()
        if fast:
            return fast.encode_batch(texts)
        from zoo.text.engines import MIN_PARALLEL_CHARS, get_threads

        n = get_threads()
        if n == 1 or sum(map(len, texts)) < 2 * MIN_PARALLEL_CHARS:
            # One thread, or too little text to gain from rayon's workers: the loop (encode_batch_fast would
            # still hand the texts to rayon's pool, which is sized at start-up, not by zoo's setting).
            return [self._encode_valid(t) for t in texts]
        try:
            return [e.ids for e in self._tk.encode_batch_fast(texts, add_special_tokens=False)]
        except Exception:  # find the text at fault, and say why
            return [self._encode_valid(t) for t in texts]

    def decode_one(self, ids: list[int]) -> str:
        if self.byte_level:
            try:
                return bytes_to_text(b"".join([self._id_bytes[i] for i in ids]))
            except TypeError:  # None: an unused id
                self._refuse_gap(ids)
        return self._tk.decode(ids, skip_special_tokens=True)

    def token_bytes(self, ids: Iterable[int]) -> list[bytes]:
        """Each id's bytes; special tokens give ``b""`` (decode drops them)."""
        out = [self._id_bytes[i] for i in ids]
        if None in out:
            self._refuse_gap(ids)
        return out

    def _refuse_gap(self, ids) -> None:
        gap = next(i for i in ids if self._id_bytes[i] is None)
        raise ZooError(f"{type(self).__name__}: id {gap} is unused in this vocabulary (no token has it)")

    def to_transformers(self):
        """This tokenizer as transformers' ``PreTrainedTokenizerFast`` (same pipeline, same ids)."""
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast(tokenizer_object=self._tk)

    # -- training ---------------------------------------------------------------------------------
    def fit(self, texts: Iterable[str]) -> None:
        """Train the vocabulary from scratch on ``texts`` (the trainer calls this, then ``save_pretrained``)."""
        from tokenizers import Tokenizer

        # Specials are registered after training: the trainer puts them first in the model's vocabulary and
        # the added-token table then takes those ids (registered before, it would keep stale ones).
        tk = self._build_untrained(with_specials=False)
        tk.train_from_iterator(_training_texts(texts, type(self).__name__), trainer=self._trainer())
        # The trained pipeline is re-read from its own JSON, so the model zoo encodes with is the one every
        # loader of the saved tokenizer.json gets (no state that only lives in memory).
        state = json.loads(tk.to_str())
        self._after_training(state)
        self._set_tokenizer(_with_specials(Tokenizer.from_str(json.dumps(state)), self.special_tokens))

    def _after_training(self, state: dict) -> None:
        """Hook to edit the trained pipeline's JSON state (settings a trainer resets, values a reader changes)."""

    # -- weights ----------------------------------------------------------------------------------
    def _has_weights(self) -> bool:
        return True

    def _save_weights(self, path: Path) -> None:
        self._tk.save(str(path))

    def _load_weights(self, path: Path) -> None:
        from tokenizers import Tokenizer

        try:
            tk = Tokenizer.from_file(str(path))
        except Exception as err:  # the Rust side raises plain Exceptions for every parse error
            raise ZooError(f"{path}: not a tokenizers tokenizer.json ({err})") from None
        kind = json.loads(tk.to_str()).get("model", {}).get("type")
        if kind != self.model_type:
            raise ZooError(f"{path}: holds a {kind} model, but {type(self).__name__} expects {self.model_type}")
        self._set_tokenizer(tk, str(path))


def _check_ids_are_dense(vocab: dict[str, int], source: str) -> int:
    """The id table's size (highest id + 1). One token per id: a shared id could not round-trip. Gaps are allowed
    (cl100k has no token at 100256 and its specials skip 100261..100275, as tiktoken numbers them), but no more gaps
    than tokens: decoding indexes a table by id, and a model needs a row for every id below the highest."""
    if not vocab:
        raise ZooError(f"{source}: the vocabulary is empty; expected at least one token")
    seen: dict[int, str] = {}
    for token, i in sorted(vocab.items(), key=lambda item: item[1]):
        if i in seen:
            raise ZooError(f"{source}: tokens {seen[i]!r} and {token!r} share id {i}; expected one token per id")
        seen[i] = token
    top = max(seen)
    if top >= 2 * len(vocab):
        raise ZooError(
            f"{source}: token {seen[top]!r} has id {top}, but the vocabulary has {len(vocab)} tokens; "
            f"expected ids below {2 * len(vocab)} (at most as many unused ids as tokens)"
        )
    return top + 1


def _with_specials(tk, special_tokens: Iterable[str]):
    specials = list(special_tokens)
    if specials:
        tk.add_special_tokens(specials)
    return tk


class BPETokenizer(HFTokenizer):
    """Byte-level BPE (Sennrich et al. 2016, https://arxiv.org/abs/1508.07909; GPT-2's byte alphabet).

    Args:
        vocab_size: target size after ``fit`` (the 256 byte tokens, merges and specials).
        min_frequency: a pair must occur this often to be merged.
        digits: how digit runs are pre-split: ``single``, ``l2r3`` or ``r2l3`` (``zoo.text.digits``).
        special_tokens: control tokens added to the vocabulary (never produced by ``encode``).
        fast: encode through tiktoken when it can run this vocabulary (identical ids).
    """

    model_type: ClassVar[str] = "BPE"

    def __init__(
        self,
        vocab_size: int = 32000,
        min_frequency: int = 2,
        digits: str = "l2r3",
        special_tokens: tuple[str, ...] | list[str] = DEFAULT_SPECIALS,
        fast: bool = True,
    ):
        if vocab_size < 256 + len(special_tokens):
            raise ZooError(f"BPETokenizer: vocab_size must cover the 256 bytes and the specials, got {vocab_size}")
        self.target_vocab_size = vocab_size
        self.min_frequency = min_frequency
        self.pattern = split_pattern(digits)
        self.special_tokens = list(special_tokens)
        self.fast = fast
        self._set_tokenizer(self._build_untrained())

    def _build_untrained(self, with_specials: bool = True):
        from tokenizers import Tokenizer, decoders, models

        # ignore_merges: a piece that is a whole vocabulary entry is that entry (as tiktoken does), so the
        # tokenizers path and the tiktoken fast path agree id for id.
        tk = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(ALPHABET)}, merges=[], ignore_merges=True))
        tk.pre_tokenizer = byte_level_pre_tokenizer(self.pattern)
        tk.decoder = decoders.ByteLevel()
        return _with_specials(tk, self.special_tokens if with_specials else ())

    def _trainer(self):
        from tokenizers import trainers

        return trainers.BpeTrainer(
            vocab_size=self.target_vocab_size,
            min_frequency=self.min_frequency,
            special_tokens=self.special_tokens,
            initial_alphabet=ALPHABET,
            show_progress=False,
        )

    def _after_training(self, state: dict) -> None:
        state["model"]["ignore_merges"] = True  # the trainer builds a fresh BPE model with it off


class UnigramTokenizer(HFTokenizer):
    """Byte-level Unigram language model (Kudo 2018, https://arxiv.org/abs/1804.10959): Viterbi
    segmentation into pieces of the byte-level alphabet, so it is lossless like byte-level BPE.

    Args:
        vocab_size: target size after ``fit``.
        digits: digit pre-splitting, as for BPE.
        max_piece_length: longest piece, in bytes.
        special_tokens: control tokens (never produced by ``encode``).
    """

    model_type: ClassVar[str] = "Unigram"

    def __init__(
        self,
        vocab_size: int = 32000,
        digits: str = "l2r3",
        max_piece_length: int = 16,
        special_tokens: tuple[str, ...] | list[str] = DEFAULT_SPECIALS,
    ):
        if vocab_size < 256 + len(special_tokens):
            raise ZooError(f"UnigramTokenizer: vocab_size must cover the 256 bytes and the specials, got {vocab_size}")
        self.target_vocab_size = vocab_size
        self.pattern = split_pattern(digits)
        self.max_piece_length = max_piece_length
        self.special_tokens = list(special_tokens)
        self._set_tokenizer(self._build_untrained())

    def _build_untrained(self, with_specials: bool = True):
        from tokenizers import Tokenizer, decoders, models

        tk = Tokenizer(models.Unigram([(c, 0.0) for c in ALPHABET], unk_id=None, byte_fallback=False))
        tk.pre_tokenizer = byte_level_pre_tokenizer(self.pattern)
        tk.decoder = decoders.ByteLevel()
        return _with_specials(tk, self.special_tokens if with_specials else ())

    def _trainer(self):
        from tokenizers import trainers

        return trainers.UnigramTrainer(
            vocab_size=self.target_vocab_size,
            special_tokens=self.special_tokens,
            initial_alphabet=ALPHABET,
            max_piece_length=self.max_piece_length,
            show_progress=False,
        )

    def _after_training(self, state: dict) -> None:
        # tokenizers reads tokenizer.json floats with serde_json's fast parser, which misreads some 16-17 digit
        # numbers by one ulp (about 80 of 1200 trained scores). Viterbi paths that tie up to rounding (the same
        # pieces in another order) then flip, so a reloaded file encoded differently from the trained model.
        # A decimal of at most 15 significant digits is read exactly, so the scores are rounded to that.
        state["model"]["vocab"] = [[piece, float(f"{score:.15g}")] for piece, score in state["model"]["vocab"]]


class WordPieceTokenizer(HFTokenizer):
    """BERT's WordPiece (Wu et al. 2016, https://arxiv.org/abs/1609.08144): whitespace-split words,
    greedy longest-match-first with ``##`` continuations. Not lossless: whitespace is normalised away
    and characters outside the vocabulary become ``[UNK]`` (``lossless`` is False).
    """

    model_type: ClassVar[str] = "WordPiece"
    byte_level: ClassVar[bool] = False

    def __init__(
        self,
        vocab_size: int = 30000,
        min_frequency: int = 2,
        digits: str = "single",
        lowercase: bool = False,
        special_tokens: tuple[str, ...] | list[str] = ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"),
    ):
        if not special_tokens or special_tokens[0] != "[UNK]":
            raise ZooError("WordPieceTokenizer: special_tokens must start with '[UNK]' (the unknown-word token)")
        self.target_vocab_size = vocab_size
        self.min_frequency = min_frequency
        self.pattern = split_pattern(digits)
        self.lowercase = lowercase
        self.special_tokens = list(special_tokens)
        self._set_tokenizer(self._build_untrained())

    def _build_untrained(self, with_specials: bool = True):
        from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

        tk = Tokenizer(models.WordPiece({"[UNK]": 0}, unk_token="[UNK]", continuing_subword_prefix="##"))
        steps = [normalizers.NFC()] + ([normalizers.Lowercase()] if self.lowercase else [])
        tk.normalizer = normalizers.Sequence(steps)
        tk.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(self.pattern), behavior="isolated")]
        )
        tk.decoder = decoders.WordPiece(prefix="##")
        return _with_specials(tk, self.special_tokens if with_specials else ())

    def _trainer(self):
        from tokenizers import trainers

        return trainers.WordPieceTrainer(
            vocab_size=self.target_vocab_size,
            min_frequency=self.min_frequency,
            special_tokens=self.special_tokens,
            continuing_subword_prefix="##",
            show_progress=False,
        )
