"""Encode engines for zoo's text tokenizers, chosen per vocabulary and used only with identical ids.

An engine is a library that runs a vocabulary the zoo also runs through its reference library
(HF ``tokenizers`` for ``tokenizer.json``, tiktoken for ``.tiktoken`` ranks). Candidates, with what
each can run (measured side by side by ``python -m benchmarks.text_engines``):

- **tiktoken**: byte-level BPE given as ranks + one split regex (``zoo.text.fast`` says when a
  ``tokenizer.json`` BPE is such a vocabulary, and why the ids are then identical).
- **rs-bpe** (``rs_bpe``) and **bpe-openai** (GitHub's linear-time BPE): only the encodings they
  ship (``cl100k_base``, ``o200k_base``); their Python packages take no other vocabulary, so they
  serve a ranks file only when its ranks and split pattern are exactly the shipped ones.
- **kitoken**: reads ``tokenizer.json`` and ``.tiktoken`` files into one rank-based BPE; used for
  ``tokenizer.json`` BPEs that tiktoken refuses only because ``ignore_merges`` is off (with the merge
  table checks of ``zoo.text.fast`` passing, whole-entry lookup and merging give the same ids, so a
  rank-based engine is exact), with its special-token extraction turned off (zoo encodes
  ``<|endoftext|>`` in text as text).
- Unigram: no candidate is exact. SentencePiece's own Unigram (``sentencepiece_unigram``) keeps
  scores as float32 and sums paths in float32, while ``tokenizers`` sums float64; paths that tie up
  to rounding (the same pieces in another order) then flip: 49 of 62 64 KB blocks of fortunes get
  other ids on ``unigram-32k`` (``docs/text-speed.md``), and SentencePiece cannot express the
  byte-level regex pre-tokenizer, which has to run in Python. kitoken's Unigram differs on every
  block. Unigram stays on ``tokenizers``.

Every engine is checked on ``zoo.text.bytelevel.PROBE`` against the reference before it is used; any
disagreement, missing package or refusal gives None and the caller keeps the reference engine.

Batches (``Engine.encode_batch``) are a plain loop over ``encode``: tiktoken's own
``encode_ordinary_batch`` starts a thread pool on every call (2.9x slower than the loop on the
harness's batches, two cores, ``docs/text-speed.md``). With ``threads(n)`` / ``ZOO_TEXT_THREADS=n``
above 1 (the default is 1), engines that release the GIL (tiktoken) split batches of at least
``MIN_PARALLEL_CHARS`` characters per worker into one contiguous chunk per worker of a persistent
pool; smaller batches stay a loop. More threads only help where cores are free.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from zoo.errors import ZooError
from zoo.text.bytelevel import ALPHABET, PROBE, split_pattern

log = logging.getLogger(__name__)

THREADS_ENV = "ZOO_TEXT_THREADS"
MIN_PARALLEL_CHARS = 1 << 16  # per worker: below this a pool's dispatch costs more than it saves

_setting: list[int | None] = [None]
_pool_lock = threading.Lock()
_pool: list = [None, 0]  # the executor and its size


def _check_threads(n, source: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ZooError(f"{source}: the number of encode threads must be an int >= 1, got {n!r}")
    return n


def get_threads() -> int:
    """Threads a batch encode may use: ``set_threads``/``threads``, else ``$ZOO_TEXT_THREADS``, else 1."""
    if _setting[0] is not None:
        return _setting[0]
    value = os.environ.get(THREADS_ENV)
    if value is None or value == "":
        return 1
    try:
        return _check_threads(int(value), f"${THREADS_ENV}")
    except ValueError:
        raise ZooError(f"${THREADS_ENV}: expected an int >= 1, got {value!r}") from None


def set_threads(n: int | None) -> None:
    """Pin batch encodes to ``n`` threads (None: back to ``$ZOO_TEXT_THREADS`` or 1)."""
    _setting[0] = None if n is None else _check_threads(n, "set_threads")


@contextmanager
def threads(n: int | None) -> Iterator[None]:
    """``with threads(1): ...`` pins batch encodes to ``n`` threads inside the block."""
    before = _setting[0]
    set_threads(n)
    try:
        yield
    finally:
        _setting[0] = before


def _executor(size: int) -> ThreadPoolExecutor:
    with _pool_lock:
        if _pool[0] is None or _pool[1] != size:
            if _pool[0] is not None:
                _pool[0].shutdown(wait=False)
            _pool[0], _pool[1] = ThreadPoolExecutor(size, thread_name_prefix="zoo-encode"), size
        return _pool[0]


def map_batch(encode: Callable[[str], list[int]], texts: list[str], n_threads: int | None = None) -> list[list[int]]:
    """``[encode(t) for t in texts]``, split over a persistent pool when ``n_threads`` > 1 and the batch is big."""
    n = get_threads() if n_threads is None else n_threads
    if n > 1 and len(texts) > 1:
        workers = min(n, len(texts), sum(map(len, texts)) // MIN_PARALLEL_CHARS)
        if workers > 1:
            step = -(-len(texts) // workers)
            chunks = [texts[i : i + step] for i in range(0, len(texts), step)]
            futures = [_executor(n).submit(lambda c: [encode(t) for t in c], chunk) for chunk in chunks]
            return [ids for future in futures for ids in future.result()]
    return [encode(t) for t in texts]


@dataclass
class Engine:
    """One library running one vocabulary: ``encode(text) -> ids`` on valid Unicode text."""

    name: str
    encode: Callable[[str], list[int]]
    releases_gil: bool = False  # True: batches may be split over threads
    backend: object = None  # the library's own object (a ``tiktoken.Encoding``, a ``Kitoken``...)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if self.releases_gil:
            return map_batch(self.encode, texts)
        return [self.encode(t) for t in texts]


def agrees(engine: Engine | None, reference: Callable[[str], list[int]], texts: list[str]) -> Engine | None:
    """``engine`` when it gives ``reference``'s ids on every text, else None (logged)."""
    if engine is None:
        return None
    for text in texts:
        try:
            same = list(engine.encode(text)) == list(reference(text))
        except Exception as err:  # an engine that cannot run this text cannot stand in for the reference
            log.info("%s engine off: it failed on the probe (%s)", engine.name, err)
            return None
        if not same:
            log.info("%s engine off: its ids differ from the reference on the probe", engine.name)
            return None
    return engine


# -- tiktoken ------------------------------------------------------------------------------------------


def tiktoken_engine(encoding) -> Engine:
    """A ``tiktoken.Encoding``'s ordinary encode (releases the GIL while it runs)."""
    return Engine("tiktoken", encoding.encode_ordinary, releases_gil=True, backend=encoding)


# -- the encodings rs-bpe and bpe-openai ship ------------------------------------------------------------

SHIPPED = {"cl100k_base": 100256, "o200k_base": 199998}  # name -> number of ranks (a cheap first check)


@functools.lru_cache(maxsize=4)
def shipped_ranks(encoding: str) -> tuple[dict[bytes, int], str] | None:
    """The ranks and split pattern bpe-openai ships for ``encoding`` (offline; read once), or None."""
    try:
        from bpe_openai import registry
    except ImportError:
        return None
    constructor = registry.ENCODING_CONSTRUCTORS.get(encoding)
    if constructor is None:
        return None
    meta = constructor()
    return meta["mergeable_ranks"], meta["pat_str"]


def shipped_encoding(ranks: dict[bytes, int], pattern: str) -> str | None:
    """Which shipped encoding ``ranks`` + ``pattern`` are exactly, or None."""
    for name, size in SHIPPED.items():
        if len(ranks) != size:
            continue
        shipped = shipped_ranks(name)
        if shipped is not None and shipped[1] == pattern and len(shipped[0]) == len(ranks) and shipped[0] == ranks:
            return name
    return None


def rs_bpe_engine(encoding: str) -> Engine | None:
    """rs-bpe's own ``cl100k_base`` / ``o200k_base``, or None (not installed, not shipped)."""
    if encoding not in SHIPPED:
        return None
    try:
        from rs_bpe.bpe import openai
    except ImportError:
        return None
    tokenizer = getattr(openai, encoding)()
    return Engine("rs-bpe", tokenizer.encode, backend=tokenizer)


def bpe_openai_engine(encoding: str) -> Engine | None:
    """bpe-openai's backend for a shipped encoding, or None."""
    if encoding not in SHIPPED:
        return None
    try:
        from bpe_openai import _bindings
    except ImportError:
        return None
    backend = _bindings.tokenizer_for_encoding(encoding)
    return Engine("bpe-openai", lambda text: list(backend.encode(text)), backend=backend)


def rank_engine(ranks: dict[bytes, int], pattern: str, reference: Callable[[str], list[int]]) -> Engine | None:
    """The fastest engine for a ranks vocabulary other than tiktoken itself: rs-bpe when the ranks are
    one it ships (1.2-1.5x tiktoken on cl100k, ``docs/text-speed.md``), checked on the probe; else None.
    rs-bpe rather than bpe-openai (as fast, within noise): its Python API is public, bpe-openai's fast
    path is its private ``_bindings`` module."""
    name = shipped_encoding(ranks, pattern)
    return agrees(rs_bpe_engine(name), reference, [PROBE]) if name else None


# -- kitoken -------------------------------------------------------------------------------------------


def _kitoken_without_extraction(kit) -> None:
    """Special tokens are not cut out of the text (zoo encodes them as text)."""
    definition = kit.definition()
    for special in definition.get("specials", []):
        special["extract"] = False
    kit.set_definition(definition)


def kitoken_engine(tokenizer_json: str) -> Engine | None:
    """kitoken reading a ``tokenizer.json`` (as a string), or None when kitoken is absent or refuses it."""
    try:
        import kitoken
    except ImportError:
        return None
    try:
        kit = kitoken.Kitoken.from_tokenizers(tokenizer_json.encode("utf-8"))
    except Exception as err:  # kitoken refuses what it cannot express
        log.info("kitoken engine off: %s", err)
        return None
    _kitoken_without_extraction(kit)
    return Engine("kitoken", kit.encode, backend=kit)


def kitoken_ranks_engine(ranks: dict[bytes, int], pattern: str | None = None) -> Engine | None:
    """kitoken reading ranks as a ``.tiktoken`` file (kitoken applies cl100k's split unless told otherwise)."""
    import base64

    try:
        import kitoken
    except ImportError:
        return None
    data = "".join(f"{base64.b64encode(token).decode()} {rank}\n" for token, rank in ranks.items()).encode()
    kit = kitoken.Kitoken.from_tiktoken(data)
    if pattern is not None:
        config = kit.config()
        config["split"] = [{"Pattern": {"pattern": {"Regex": pattern}, "behavior": "Isolate"}}]
        kit.set_config(config)
    _kitoken_without_extraction(kit)
    return Engine("kitoken", kit.encode, backend=kit)


# -- SentencePiece for Unigram (measured, not served: see the module docstring) ------------------------

SEPARATOR = "\ue000"  # a private-use character: no byte-level token holds it


def sentencepiece_unigram(state: dict) -> tuple[Engine | None, str | None]:
    """A SentencePiece model proto built from a byte-level Unigram ``tokenizer.json`` state, as an engine,
    or (None, why not). Pieces keep their ids; the regex split runs in Python (``regex``), joined by a
    user-defined separator piece that the Viterbi search cannot cross and that is dropped afterwards.
    Ids are not exactly those of ``tokenizers`` (float32 scores), so the zoo never serves with it."""
    try:
        import regex
        import sentencepiece
        from sentencepiece import sentencepiece_model_pb2 as pb
    except ImportError as err:
        return None, f"{err.name} is not installed"

    model = state.get("model") or {}
    if model.get("type") != "Unigram":
        return None, f"model is {model.get('type')}, not Unigram"
    if state.get("normalizer") is not None:
        return None, "a normalizer rewrites the text"
    pattern = split_pattern(state.get("pre_tokenizer"))
    if pattern is None:
        return None, "the pre-tokenizer is not a regex split followed by the byte-level alphabet"
    proto = pb.ModelProto()
    normal, user, unknown = (pb.ModelProto.SentencePiece.NORMAL, pb.ModelProto.SentencePiece.USER_DEFINED,
                             pb.ModelProto.SentencePiece.UNKNOWN)  # fmt: skip
    for piece, score in model["vocab"]:
        if SEPARATOR in piece:
            return None, f"piece {piece!r} holds the separator character"
        proto.pieces.add(piece=piece, score=score, type=normal)
    separator_id = len(proto.pieces)
    proto.pieces.add(piece=SEPARATOR, score=0.0, type=user)
    proto.pieces.add(piece="<zoo-unk>", score=0.0, type=unknown)  # required by SentencePiece, never produced
    spec = proto.trainer_spec
    spec.model_type, spec.vocab_size = pb.TrainerSpec.UNIGRAM, len(proto.pieces)
    spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id = len(proto.pieces) - 1, -1, -1, -1
    norm = proto.normalizer_spec
    norm.name, norm.add_dummy_prefix, norm.remove_extra_whitespaces, norm.escape_whitespaces = (
        "identity", False, False, False,
    )  # fmt: skip
    processor = sentencepiece.SentencePieceProcessor(model_proto=proto.SerializeToString())
    split = regex.compile(pattern)

    class _ByteChars(dict):
        def __missing__(self, code: int) -> str:
            value = "".join(ALPHABET[b] for b in chr(code).encode("utf-8"))
            self[code] = value
            return value

    table = _ByteChars({ord(SEPARATOR): SEPARATOR})

    def encode(text: str) -> list[int]:
        pieces = split.findall(text)
        if sum(map(len, pieces)) != len(text):
            raise ZooError("sentencepiece_unigram: the split pattern leaves characters unmatched")
        return [i for i in processor.encode(SEPARATOR.join(pieces).translate(table)) if i != separator_id]

    return Engine("sentencepiece", encode, backend=processor), None
