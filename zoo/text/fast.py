"""Encode byte-level BPE vocabularies through tiktoken, with ids identical to HF ``tokenizers``.

tiktoken (https://github.com/openai/tiktoken) merges, inside each regex piece, the adjacent pair
whose concatenation has the lowest rank, and maps a piece that is a whole vocabulary entry straight
to it. A ``tokenizers`` BPE gives the same ids when:

- its pre-tokenizer is one regex split (kept pieces) followed by the byte-level alphabet, or
  GPT-2's built-in byte-level regex, and there is no normalizer;
- ``ignore_merges`` is on (whole-entry lookup, as tiktoken does), no dropout, no affixes;
- every added token is special: ``tokenizers`` matches non-special added tokens in the text even
  with ``encode_special_tokens`` on, and tiktoken's ordinary encode has no such step;
- all 256 bytes are tokens and merge ``k`` creates the ``k``-th new token, ids rising with merge
  order, so rank-by-merge and rank-by-id agree;
- merging the bytes of each token by the merge list gives back that token. tiktoken merges any
  adjacent pair whose concatenation is a token, ``tokenizers`` only the listed pair: with merges
  ``b+c``, ``a+b``, ``ab+c``, the piece ``abcx`` becomes ``a|bc|x`` in ``tokenizers`` but
  ``abc|x`` in tiktoken. Such an unlisted pair ``x+y = t`` can only meet, with every merge ranked
  below ``t`` done, if the merge list turns the bytes of ``t`` alone into ``x|y`` (merges inside a
  span do not depend on what lies outside it), so this check rules the disagreement out.

``TiktokenPath.build`` checks these, then encodes a built-in multilingual probe both ways and uses
tiktoken only when the ids agree; otherwise it returns None and the caller keeps ``tokenizers``.

``build_engine`` picks the engine a ``tokenizers`` BPE is served by (``zoo.text.engines``): tiktoken
when the checks above pass; kitoken when they fail only because ``ignore_merges`` is off (every
token's bytes merge back to that token, so whole-entry lookup changes nothing and a rank-based
engine is exact), checked on the probe; else None (``tokenizers`` itself). Batches are a loop over
the single-text encode (``zoo.text.engines.map_batch``), never tiktoken's per-call thread pool.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from zoo.text.bytelevel import PROBE, from_byte_chars, split_pattern
from zoo.text.engines import Engine, agrees, kitoken_engine, map_batch, tiktoken_engine

log = logging.getLogger(__name__)

@dataclass
class TiktokenPath:
    """A tiktoken ``Encoding`` standing in for a ``tokenizers`` BPE."""

    encoding: object

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # Not ``encode_ordinary_batch``: it starts an 8-thread pool on every call (docs/text-speed.md).
        return map_batch(self.encoding.encode_ordinary, texts)

    @staticmethod
    def why_not(tk) -> str | None:
        """Why tiktoken cannot run this tokenizer, or None when it can (structure only)."""
        state = json.loads(tk.to_str())
        model = state.get("model") or {}
        if model.get("type") != "BPE":
            return f"model is {model.get('type')}, not BPE"
        if state.get("normalizer") is not None:
            return "a normalizer rewrites the text"
        if not model.get("ignore_merges"):
            return "ignore_merges is off (tiktoken maps whole vocabulary entries directly)"
        if model.get("dropout") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
            return "dropout or subword affixes"
        if model.get("byte_fallback"):
            return "byte_fallback vocabularies are not byte-level"
        if split_pattern(state.get("pre_tokenizer")) is None:
            return "the pre-tokenizer is not a regex split followed by the byte-level alphabet"
        plain = sorted(t.content for t in tk.get_added_tokens_decoder().values() if not t.special)
        if plain:  # tokenizers cuts these out of the text even with encode_special_tokens on; tiktoken does not
            return f"added tokens that are not special ({plain[:3]}) are matched in the text by tokenizers"
        return None

    @classmethod
    def build(cls, tk) -> TiktokenPath | None:
        """A checked tiktoken path for ``tk``, or None (logged) when it would not give identical ids."""
        try:
            import tiktoken
        except ImportError:
            log.info("tiktoken fast path off: tiktoken is not installed")
            return None
        reason = cls.why_not(tk)
        if reason is None:
            state = json.loads(tk.to_str())
            ranks, reason = _ranks(state["model"], tk)
        if reason is None:
            specials = {t.content: i for i, t in tk.get_added_tokens_decoder().items()}
            pattern = split_pattern(state["pre_tokenizer"])
            try:
                encoding = tiktoken.Encoding("zoo", pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)
            except ValueError as err:  # a regex that Oniguruma reads and fancy-regex does not (``\X``...)
                encoding, reason = None, f"tiktoken cannot use the split pattern ({err})"
        if reason is None:
            path = cls(encoding)
            if path.encode(PROBE) != tk.encode(PROBE, add_special_tokens=False).ids:
                reason = "tiktoken and tokenizers disagree on the probe text"
            else:
                return path
        log.info("tiktoken fast path off: %s", reason)
        return None


def build_engine(tk) -> Engine | None:
    """The fastest engine giving ``tk``'s ids (module docstring), or None to keep ``tokenizers``."""
    path = TiktokenPath.build(tk)
    if path is not None:
        return tiktoken_engine(path.encoding)
    reason = TiktokenPath.why_not(tk)
    if reason is None or not reason.startswith("ignore_merges"):
        return None
    from tokenizers import Tokenizer

    state = json.loads(tk.to_str())
    state["model"]["ignore_merges"] = True  # the same vocabulary with whole-entry lookup must pass every other check
    if TiktokenPath.why_not(Tokenizer.from_str(json.dumps(state))) is not None or _ranks(state["model"], tk)[1]:
        return None
    engine = kitoken_engine(tk.to_str())
    return agrees(engine, lambda text: tk.encode(text, add_special_tokens=False).ids, [PROBE])


def _ranks(model: dict, tk) -> tuple[dict[bytes, int] | None, str | None]:
    """tiktoken's ``mergeable_ranks`` (token bytes -> id), or the reason the ids cannot be ranks."""
    vocab: dict[str, int] = model["vocab"]
    added = set(tk.get_added_tokens_decoder())
    ranks: dict[bytes, int] = {}
    for token, i in vocab.items():
        if i in added:  # specials live in the model's vocabulary too; tiktoken keeps them apart
            continue
        raw = from_byte_chars(token)
        if raw is None:
            return None, f"token {token!r} is not in the byte-level alphabet"
        ranks[raw] = i
    if sum(len(raw) == 1 for raw in ranks) != 256:
        return None, "not every byte is a token"
    previous = -1
    made: set[int] = set()
    for merge in model.get("merges", []):
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        new = vocab.get(left + right)
        if new is None or new <= previous or new <= vocab[left] or new <= vocab[right]:
            return None, f"merge {left!r}+{right!r} does not create a new token of a higher id than the last"
        previous = new
        made.add(new)
    multibyte = {i for raw, i in ranks.items() if len(raw) > 1}
    if multibyte != made:
        return None, "some multi-byte tokens are not made by exactly one merge"
    return ranks, _unlisted_split(model)


def _unlisted_split(model: dict) -> str | None:
    """The first token the merge list does not rebuild from its own bytes, as a reason, or None."""
    from tokenizers import models

    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model.get("merges", [])]
    by_merges = models.BPE(vocab=model["vocab"], merges=merges, ignore_merges=False)  # no whole-entry lookup
    for left, right in merges:
        parts = [t.value for t in by_merges.tokenize(left + right)]
        if len(parts) != 1:
            return f"the merge list spells token {left + right!r} as {parts}, which tiktoken would merge"
    return None
