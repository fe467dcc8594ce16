"""Vocabulary expansion: a byte-level BPE grown with a new language's tokens, every old id keeping its meaning.

``expand_bpe(base, texts_or_tokenizer, new_tokens)`` trains a BPE on the new texts with the base's own split
pattern (or takes a tokenizer already trained), then appends that tokenizer's tokens to the base, in the order it
learnt them, as long as each is one merge of two tokens the merged vocabulary already holds:

- every base token keeps its id and its bytes, and the base merge list is kept whole and first;
- a candidate token is skipped when the base has it already (``in_base``), or when the merge list so far cannot
  build it with one more merge (``unreachable``: BPE over the merged list leaves its bytes in three or more parts).
  Otherwise the merge appended is the pair BPE leaves of its bytes: both parts are tokens already, and usually
  they are the new tokenizer's own pair;
- appended ids start after the last id (specials inside the id range keep theirs), one per appended merge, so ids
  rise with merge order and the merged vocabulary runs on the tiktoken fast path and exports like the base.

Because every appended merge ranks after every base merge and no base merge involves an appended token, BPE with
the merged list first does exactly what the base does, then only appended merges: on text where none applies the
ids are the base's ids, and elsewhere each merged token spans whole base tokens.

Why every appended token must be built by its own merge: tiktoken merges any adjacent pair whose concatenation is a
token, ``tokenizers`` only listed pairs. Were two parts ``x|y`` of a token ``T`` ever adjacent with ``(x, y)``
unlisted, the merges that made them lie inside ``T``'s span, so BPE over ``T``'s bytes alone would stop at ``x|y``
too; since it ends at ``T`` for every token (the base's, as ``zoo.text.fast`` checks, and each appended one by
construction), the two libraries give the same ids on the merged vocabulary as well.

``fertility_table`` compares tokens per word (the ``fertility`` metric, ``zoo.metrics.text``) of the base and the
expanded tokenizer on a text sample (``docs/vocab-expansion.md``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from zoo.errors import ZooError
from zoo.text.base import TextTokenizer
from zoo.text.bytelevel import ALPHABET, from_byte_chars, to_byte_chars

SKIP_REASONS = ("in_base", "unreachable", "special")
log = logging.getLogger(__name__)


@dataclass
class ExpandedBPE:
    """The merged tokenizer and what was appended to the base.

    Attributes:
        tokenizer: the merged zoo tokenizer (same class as the base).
        added_ids: the appended ids, in merge order (``base_size`` onwards).
        added_tokens: each appended token's text (UTF-8; bytes that are not, as ``\\xNN``).
        base_size: the base's vocabulary size; ids below it mean what they meant in the base.
        added_bytes: each appended token's bytes.
        base_ids: the base ids each appended token stands for (the base's BPE of its bytes), e.g. to initialise
            its embedding from theirs.
        skipped: candidate tokens of the new tokenizer left out, by reason (module docstring).
    """

    tokenizer: TextTokenizer
    added_ids: list[int]
    added_tokens: list[str]
    base_size: int
    added_bytes: list[bytes] = field(default_factory=list)
    base_ids: list[list[int]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def expand_bpe(base, texts_or_tokenizer, new_tokens: int, seed: int = 0, min_frequency: int = 2) -> ExpandedBPE:
    """Append up to ``new_tokens`` tokens of a new language to the byte-level BPE ``base`` (module docstring).

    ``base``: a zoo byte-level BPE (``BPETokenizer``, a byte-level BPE ``tokenizer.json`` loaded with
    ``file:``) or a ``TiktokenTokenizer``. ``texts_or_tokenizer``: texts to train the new BPE on (with the base's
    pre-tokenizer, pairs seen at least ``min_frequency`` times), or a trained byte-level BPE (a zoo tokenizer of
    those kinds or a ``tokenizers.Tokenizer``). ``seed`` is kept for the callers' records: byte-level BPE training
    is deterministic and does not depend on the order of the texts, so the result is the same for every seed.
    Fewer than ``new_tokens`` are appended when the new tokenizer has no more usable tokens.
    """
    if isinstance(new_tokens, bool) or not isinstance(new_tokens, int) or new_tokens < 1:
        raise ZooError(f"expand_bpe: new_tokens must be a positive int, got {new_tokens!r}")
    table = _BaseTable.of(base)
    if _is_tokenizer(texts_or_tokenizer):
        candidates, pre_tokenizer = _candidates(texts_or_tokenizer)
        if pre_tokenizer != table.pre_tokenizer:
            log.warning("expand_bpe: the new tokenizer splits text unlike the base, so some of its tokens may span "
                        "the base's pieces and never be produced; train it with the base's pre-tokenizer")
        added = table.extend(candidates, new_tokens)
    else:
        added = _extend_from_texts(table, _checked_texts(texts_or_tokenizer), new_tokens, min_frequency)
    merged = table.build(base)
    return ExpandedBPE(
        tokenizer=merged,
        added_ids=[a.id for a in added],
        added_tokens=[a.token.decode("utf-8", "backslashreplace") for a in added],
        base_size=base.vocab_size,
        added_bytes=[a.token for a in added],
        base_ids=[a.base_ids for a in added],
        skipped=dict(table.skipped),
    )


def fertility_table(tokenizers: dict[str, object], texts: list[str]) -> list[dict]:
    """One row per tokenizer: fertility (tokens per word), tokens, and bytes per token over ``texts``."""
    from zoo.metrics.base import EvalContext
    from zoo.metrics.text import Fertility

    size = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)
    rows = []
    for name, tok in tokenizers.items():
        metric = Fertility()
        ctx = EvalContext(tokenizer=tok, batch={"text": list(texts)})
        metric.update(ctx)
        tokens = sum(len(ids) for ids in ctx.ids)
        rows.append({"tokenizer": name, "vocab_size": tok.vocab_size, "fertility": metric.compute(),
                     "tokens": tokens, "bytes_per_token": size / tokens if tokens else float("nan")})
    return rows


class _Added(NamedTuple):
    id: int
    token: bytes
    pair: tuple[bytes, bytes]  # the merge that makes it
    base_ids: list[int]  # what the base makes of its bytes


# -- the base, as bytes and merge ranks ----------------------------------------------------------------------------

class _BaseTable:
    """A byte-level BPE as token bytes -> id plus the rule BPE merges adjacent parts by, grown in place."""

    def __init__(self, ids: dict[bytes, int], next_id: int, pre_tokenizer: dict, specials: Iterable[str],
                 merges: dict[tuple[bytes, bytes], int] | None = None):
        self.ids = ids
        # A token spelling a special's text would take the special's place in a tokenizer.json vocabulary.
        self.reserved = set(specials)
        self.next_id = next_id
        self.pre_tokenizer = pre_tokenizer  # the base's, as tokenizer.json states it: new texts are split alike
        # tokenizers ranks listed merge pairs; tiktoken (no merges) ranks any pair by its concatenation's rank
        self.kind = "tiktoken" if merges is None else "tokenizers"
        self.merges = merges
        self.base_ids = dict(ids)
        self._pair_rank = _ranked_by(ids, merges)  # grows with the tables
        self._base_rank = _ranked_by(self.base_ids, None if merges is None else dict(merges))
        self.added: list[_Added] = []
        self.skipped = dict.fromkeys(SKIP_REASONS, 0)

    @classmethod
    def of(cls, base) -> _BaseTable:
        from zoo.text.external import TiktokenTokenizer
        from zoo.text.hf import HFTokenizer

        if isinstance(base, TiktokenTokenizer):
            ranks = dict(base._ranks)
            top = max([*ranks.values(), *base.special_tokens.values()])
            return cls(ranks, top + 1, _pre_tokenizer_state(base.pattern), base.special_tokens)
        if isinstance(base, HFTokenizer) and base.byte_level:
            state = json.loads(base.hf_tokenizer.to_str())
            model = state.get("model") or {}
            if model.get("type") == "BPE" and not model.get("continuing_subword_prefix") and not model.get(
                    "end_of_word_suffix") and state.get("normalizer") is None:
                ids = _byte_vocab(model["vocab"], {t["id"] for t in state.get("added_tokens", [])}, "the base")
                merges = {pair: rank for rank, pair in enumerate(_byte_merges(model, "the base"))}
                top = max(base.hf_tokenizer.get_vocab(with_added_tokens=True).values())
                specials = [t["content"] for t in state.get("added_tokens", [])]
                return cls(ids, top + 1, state["pre_tokenizer"], specials, merges)
        raise ZooError(f"expand_bpe: the base is a {type(base).__name__}; expected a byte-level BPE (BPETokenizer, a "
                       "byte-level BPE tokenizer.json loaded with file:, or a TiktokenTokenizer)")

    def extend(self, candidates: Iterable[bytes], limit: int) -> list[_Added]:
        """Append candidates in order until ``limit`` tokens are appended in all; returns what was appended."""
        for token in candidates:
            if len(self.added) >= limit:
                break
            if token in self.ids:  # a base token (or one appended already)
                self.skipped["in_base"] += token in self.base_ids
                continue
            if to_byte_chars(token) in self.reserved or token.decode("utf-8", "replace") in self.reserved:
                self.skipped["special"] += 1
                continue
            parts = bpe(token, self._pair_rank)
            if len(parts) != 2:
                self.skipped["unreachable"] += 1
                continue
            self._append(token, (parts[0], parts[1]))
        return self.added

    def _append(self, token: bytes, pair: tuple[bytes, bytes]) -> None:
        new_id = self.next_id
        self.next_id += 1
        self.ids[token] = new_id
        if self.merges is not None:
            self.merges[pair] = len(self.merges)
        self.added.append(_Added(new_id, token, pair, [self.base_ids[p] for p in bpe(token, self._base_rank)]))

    def build(self, base):
        """A tokenizer of ``base``'s class holding the base and the appended tokens."""
        if self.kind == "tiktoken":
            return _tiktoken_build(base, self)
        return _tokenizers_build(base, self)


def _pre_tokenizer_state(pattern: str) -> dict:
    """A tiktoken split pattern as a ``tokenizers`` pre-tokenizer (Oniguruma's spelling), in JSON."""
    from tokenizers import Tokenizer, models

    from zoo.text.digits import byte_level_pre_tokenizer
    from zoo.text.export import oniguruma_pattern

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = byte_level_pre_tokenizer(oniguruma_pattern(pattern))
    return json.loads(tk.to_str())["pre_tokenizer"]


def _ranked_by(ids: dict[bytes, int], merges: dict | None) -> Callable[[bytes, bytes], int | None]:
    if merges is None:
        return lambda left, right: ids.get(left + right)
    return lambda left, right: merges.get((left, right))


def bpe(token: bytes, pair_rank: Callable[[bytes, bytes], int | None]) -> list[bytes]:
    """The parts BPE leaves of ``token``'s bytes: merge the lowest-ranked adjacent pair (the leftmost on ties)
    until none ranks, as ``tokenizers`` (ranked pairs) and tiktoken (ranked concatenations) both do."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 1:
        best, at = None, -1
        for i in range(len(parts) - 1):
            rank = pair_rank(parts[i], parts[i + 1])
            if rank is not None and (best is None or rank < best):
                best, at = rank, i
        if best is None:
            break
        parts[at : at + 2] = [parts[at] + parts[at + 1]]
    return parts


# -- reading tokenizers.BPE states ---------------------------------------------------------------------------------

def _byte_vocab(vocab: dict[str, int], skip: set[int], owner: str) -> dict[bytes, int]:
    out = {}
    for token, i in vocab.items():
        if i in skip:
            continue
        raw = from_byte_chars(token)
        if raw is None:
            raise ZooError(f"expand_bpe: {owner} has token {token!r}, which is not in the byte-level alphabet")
        out[raw] = i
    return out


def _byte_merges(model: dict, owner: str) -> list[tuple[bytes, bytes]]:
    merges = []
    for merge in model.get("merges") or []:
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        pair = from_byte_chars(left), from_byte_chars(right)
        if pair[0] is None or pair[1] is None:
            raise ZooError(f"expand_bpe: {owner} has merge {left!r} {right!r} outside the byte-level alphabet")
        merges.append(pair)
    return merges


# -- the new language's tokens -------------------------------------------------------------------------------------

def _is_tokenizer(obj) -> bool:
    return hasattr(obj, "encode") and not isinstance(obj, (str, bytes, list, tuple))


def _candidates(tok) -> tuple[list[bytes], dict | None]:
    """The multi-byte tokens of a trained byte-level BPE, in the order it learnt them, and its pre-tokenizer."""
    from tokenizers import Tokenizer

    from zoo.text.external import TiktokenTokenizer
    from zoo.text.hf import HFTokenizer

    kind = type(tok).__name__
    if isinstance(tok, TiktokenTokenizer):
        ranked = sorted(tok._ranks.items(), key=lambda item: item[1])
        return [t for t, _ in ranked if len(t) > 1], _pre_tokenizer_state(tok.pattern)
    if isinstance(tok, HFTokenizer) and tok.byte_level:
        tok = tok.hf_tokenizer
    if isinstance(tok, Tokenizer):
        state = json.loads(tok.to_str())
        model = state.get("model") or {}
        if model.get("type") == "BPE":
            return [left + right for left, right in _byte_merges(model, "the new tokenizer")], state["pre_tokenizer"]
    raise ZooError(f"expand_bpe: the new tokenizer is a {kind}; expected a byte-level BPE "
                   "(BPETokenizer, TiktokenTokenizer, a tokenizers.Tokenizer) or a list of texts")


def _checked_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise ZooError("expand_bpe: expected a list of texts or a tokenizer, got one str (wrap it in a list)")
    try:
        texts = list(texts)
    except TypeError:
        raise ZooError(f"expand_bpe: expected a list of texts or a tokenizer, got {type(texts).__name__}") from None
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ZooError(f"expand_bpe: text {i} is a {type(text).__name__}, expected str")
    if not any(texts):
        raise ZooError("expand_bpe: the texts are empty; expected text in the new language to train on")
    # Lone surrogates are not Unicode and the Rust trainer refuses them; they carry nothing to learn.
    return [t.encode("utf-8", "ignore").decode("utf-8") for t in texts]


def _extend_from_texts(table: _BaseTable, texts: list[str], limit: int, min_frequency: int):
    """Train on ``texts`` with the base's pre-tokenizer, learning more merges until ``limit`` are appended or the
    trainer runs out (BPE training is greedy, so a longer run's merges begin with a shorter run's)."""
    tried = 0
    size = 2 * limit
    while True:
        merges = _train(table, texts, size, min_frequency)
        table.extend(merges[tried:], limit)
        tried = len(merges)
        if len(table.added) >= limit or len(merges) < size:
            return table.added
        # Grow by the yield so far (a base that knows the language already takes most candidates itself).
        size = max(2 * size, int(1.25 * size * limit / max(len(table.added), 1)))


def _train(table: _BaseTable, texts: list[str], merges: int, min_frequency: int) -> list[bytes]:
    from tokenizers import Tokenizer, models, trainers

    state = json.loads(Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(ALPHABET)}, merges=[])).to_str())
    state["pre_tokenizer"] = table.pre_tokenizer
    tk = Tokenizer.from_str(json.dumps(state))
    trainer = trainers.BpeTrainer(vocab_size=256 + merges, min_frequency=min_frequency, initial_alphabet=ALPHABET,
                                  show_progress=False)
    tk.train_from_iterator(texts, trainer=trainer)
    return _candidates(tk)[0]


# -- building the merged tokenizer ---------------------------------------------------------------------------------

def _tokenizers_build(base, table: _BaseTable):
    from tokenizers import Tokenizer

    from zoo.text.external import HFFileTokenizer

    state = json.loads(base.hf_tokenizer.to_str())
    model = state["model"]
    for special in state.get("added_tokens", []):  # in the model's vocabulary too, so its ids have no gaps
        model["vocab"].setdefault(special["content"], special["id"])
    as_lists = not model.get("merges") or isinstance(model["merges"][0], list)
    for added in table.added:
        model["vocab"][to_byte_chars(added.token)] = added.id
        pair = [to_byte_chars(part) for part in added.pair]
        model.setdefault("merges", []).append(pair if as_lists else " ".join(pair))
    tk = Tokenizer.from_str(json.dumps(state))
    config = base.config
    if "vocab_size" in config:
        config["vocab_size"] = tk.get_vocab_size(with_added_tokens=True)
    merged = type(base)(**config)
    if isinstance(merged, HFFileTokenizer):
        merged.byte_level = True
    merged._set_tokenizer(tk, "the expanded tokenizer")
    return merged


def _tiktoken_build(base, table: _BaseTable):
    merged = type(base)(**base.config)
    merged._adopt(dict(table.ids), "the expanded tokenizer")
    return merged
