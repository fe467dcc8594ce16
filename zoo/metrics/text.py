"""Intrinsic text-tokenizer metrics: compression, word splitting, cross-language parity, Rényi
efficiency, vocabulary categories and scripts, and the share of tokens that are lexicon words.

Encode speed in MB/s is the shared ``throughput`` metric (``encode_mb_per_s``) and vocabulary
utilisation (used types / vocabulary size, LiB's ``mem_usage``) is ``codebook``'s ``usage``.

Words (fertility, continued words) are whitespace-separated runs, with one documented rule for
scripts written without spaces: every character of Han, Hiragana, Katakana, Thai, Lao, Khmer,
Myanmar or Tibetan counts as one word (no segmenter is assumed; a tokenizer that merges two such
characters then has fertility below 1 on them). A token belongs to every word it overlaps; tokens
that only cover whitespace belong to none.
"""

from __future__ import annotations

import math
import unicodedata
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import torch

from zoo.data.token_text import utf8_offsets, vocabulary
from zoo.errors import ZooError
from zoo.metrics.base import EvalContext, Metric
from zoo.metrics.codebook import CodebookUsage

NO_SPACE_SCRIPTS = ("Han", "Hiragana", "Katakana", "Thai", "Lao", "Khmer", "Myanmar", "Tibetan")
_ONE_CHAR = "".join(rf"\p{{{s}}}" for s in NO_SPACE_SCRIPTS)
_WORD = rf"[{_ONE_CHAR}]|[^\s{_ONE_CHAR}]+"


def word_spans(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Byte ``[start, end)`` of each word (see the module docstring)."""
    import regex

    offsets = utf8_offsets(text)
    spans = [(m.start(), m.end()) for m in regex.finditer(_WORD, text)]
    if not spans:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    chars = np.asarray(spans, dtype=np.int64)
    return offsets[chars[:, 0]], offsets[chars[:, 1]]


def token_spans(tokenizer, ids: list[int], text: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Byte ``[start, end)`` of each token, or None when the tokens do not spell ``text`` byte for byte."""
    pieces = tokenizer.token_bytes(ids)
    # The contract's byte form of a string: UTF-8 with lone surrogates kept (zoo.text.base.text_to_bytes, which a
    # metric, a layer below the families, does not import).
    if b"".join(pieces) != text.encode("utf-8", "surrogatepass"):
        return None
    ends = np.cumsum([len(p) for p in pieces], dtype=np.int64)
    return ends - np.asarray([len(p) for p in pieces], dtype=np.int64), ends


def word_split_counts(tokenizer, text: str, ids: list[int]) -> tuple[int, int, int]:
    """``(words, tokens on words, words split into >= 2 tokens)`` for one text.

    Tokens are located by their bytes; for a tokenizer whose tokens do not spell the text (one that
    normalises it), each word is encoded on its own instead, as hgiyt's tokenizer exploration does.
    """
    starts, ends = word_spans(text)
    if not len(starts):
        return 0, 0, 0
    spans = token_spans(tokenizer, ids, text)
    if spans is None:
        counts = [len(tokenizer.encode(text[s:e])) for s, e in _char_spans(text)]
        return len(counts), sum(counts), sum(c >= 2 for c in counts)
    t_start, t_end = spans
    keep = t_end > t_start  # specials and empty tokens cover nothing
    t_start, t_end = t_start[keep], t_end[keep]
    first = np.searchsorted(t_end, starts, side="right")  # first token ending after the word starts
    last = np.searchsorted(t_start, ends, side="left") - 1  # last token starting before the word ends
    per_word = last - first + 1
    on_words = np.zeros(len(t_start) + 1, np.int64)  # difference array: tokens covered by some word
    np.add.at(on_words, first, 1)
    np.add.at(on_words, last + 1, -1)
    return len(starts), int((np.cumsum(on_words)[:-1] > 0).sum()), int((per_word >= 2).sum())


def _char_spans(text: str) -> list[tuple[int, int]]:
    import regex

    return [(m.start(), m.end()) for m in regex.finditer(_WORD, text)]


def _texts(ctx: EvalContext) -> list[str]:
    texts = ctx.inputs
    return [texts] if isinstance(texts, str) else list(texts)


class _PerLanguage(Metric, ABC):
    """Sums kept over all items and, when ``languages`` are named, per language (items carrying ``lang``, as
    ``pycountry-parallel`` yields): ``compute`` then gives ``{"all": value, LANG: value, ...}``.

    Args:
        languages: languages reported one by one (each needs its items' ``lang``); none: one number.
    """

    modalities: ClassVar[tuple[str, ...]] = ("text",)
    width: ClassVar[int] = 2  # numbers summed per item

    def __init__(self, languages: list[str] | None = None) -> None:
        super().__init__()
        self.languages = list(languages or [])
        self.add_state("totals", torch.zeros(self.width, dtype=torch.float64))
        self.add_state("by_language", torch.zeros(len(self.languages), self.width, dtype=torch.float64))

    @abstractmethod
    def counts(self, tokenizer, text: str, ids: list[int]) -> tuple[float, ...]:
        """The ``width`` numbers one text adds to the sums."""

    @abstractmethod
    def value(self, totals: list[float]) -> float:
        """The metric from summed counts."""

    def update(self, ctx: EvalContext) -> None:
        rows = np.asarray([self.counts(ctx.tokenizer, text, list(ids)) for text, ids in zip(_texts(ctx), ctx.ids)],
                          dtype=np.float64).reshape(-1, self.width)
        self.totals = self.totals + torch.from_numpy(rows.sum(axis=0))
        if self.languages:
            langs = ctx.batch.get("lang") if isinstance(ctx.batch, dict) else None
            if langs is None:
                raise ZooError(f"{self.name}: languages {self.languages} were named, but the data's items carry no "
                               f"'lang' (use parallel data such as pycountry-parallel, or drop 'languages')")
            extra = np.zeros((len(self.languages), self.width))
            for lang, row in zip(langs, rows):
                if lang in self.languages:
                    extra[self.languages.index(lang)] += row
            self.by_language = self.by_language + torch.from_numpy(extra)

    def compute(self) -> float | dict[str, float]:
        overall = self.value(self.totals.tolist())
        if not self.languages:
            return overall
        rows = self.by_language.tolist()
        return {"all": overall, **{lang: self.value(row) for lang, row in zip(self.languages, rows)}}


class _Compression(_PerLanguage):
    unit: ClassVar[str] = "bytes"
    higher_is_better: ClassVar[bool | None] = True

    def counts(self, tokenizer, text: str, ids: list[int]) -> tuple[float, ...]:
        units = len(text.encode("utf-8", "surrogatepass")) if self.unit == "bytes" else len(text)
        return units, len(ids)

    def value(self, totals: list[float]) -> float:
        units, tokens = totals
        return units / tokens if tokens else math.nan


class BytesPerToken(_Compression):
    """UTF-8 bytes per token over the data (higher: shorter sequences)."""

    name: ClassVar[str] = "bytes-per-token"
    unit: ClassVar[str] = "bytes"


class CharsPerToken(_Compression):
    """Characters (code points) per token over the data."""

    name: ClassVar[str] = "chars-per-token"
    unit: ClassVar[str] = "chars"


class _WordSplits(_PerLanguage):
    higher_is_better: ClassVar[bool | None] = False
    width: ClassVar[int] = 3  # [words, tokens on words, continued words]

    def counts(self, tokenizer, text: str, ids: list[int]) -> tuple[float, ...]:
        return word_split_counts(tokenizer, text, ids)


class Fertility(_WordSplits):
    """Tokens per word (hgiyt; Rust et al. 2021): 1 when every word is one token."""

    name: ClassVar[str] = "fertility"

    def value(self, totals: list[float]) -> float:
        words, tokens, _ = totals
        return tokens / words if words else math.nan


class ContinuedWords(_WordSplits):
    """Proportion of continued words: words split into two or more tokens (1 - single-token retention)."""

    name: ClassVar[str] = "continued-words"

    def value(self, totals: list[float]) -> float:
        words, _, continued = totals
        return continued / words if words else math.nan


class Parity(Metric):
    """Tokenization parity (Petrov et al. 2023, https://arxiv.org/abs/2305.15425): tokens of each
    language's text over tokens of its reference-language original, summed over a parallel corpus.

    Items need ``lang`` and ``ref`` (the reference text), as ``pycountry-parallel`` yields. 1 is parity;
    2 means the language pays twice as many tokens for the same content.

    Args:
        reference: the reference language (its own items are skipped).
        languages: languages reported one by one; every language of the data enters the summary.
        max_languages: size of the language index (languages beyond it are noted and skipped).
    """

    name: ClassVar[str] = "parity"
    higher_is_better: ClassVar[bool | None] = None
    directions: ClassVar[dict[str, bool | None]] = {"mean": False, "max": False, "min": None, "languages": None}
    modalities: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(self, reference: str = "en", languages: list[str] | None = None, max_languages: int = 512) -> None:
        super().__init__()
        self.reference, self.languages = reference, list(languages or [])
        self.index: dict[str, int] = {lang: i for i, lang in enumerate(self.languages)}
        self.max_languages = max(max_languages, len(self.languages))
        self.notes: list[str] = []
        self.add_state("tokens", torch.zeros(self.max_languages, 2, dtype=torch.float64))  # [lang, (text, ref)]

    def update(self, ctx: EvalContext) -> None:
        langs, refs = ctx.batch.get("lang"), ctx.batch.get("ref")
        if langs is None or refs is None:
            raise ZooError("parity needs parallel data whose items carry 'lang' and 'ref' (e.g. pycountry-parallel)")
        rows = [k for k, lang in enumerate(langs) if lang != self.reference]
        ref_ids = ctx.tokenizer.encode([refs[k] for k in rows]) if rows else []
        for k, ref in zip(rows, ref_ids):
            slot = self._slot(langs[k])
            if slot is not None:
                self.tokens[slot] += torch.tensor([len(ctx.ids[k]), len(ref)], dtype=torch.float64)

    def _slot(self, lang: str) -> int | None:
        # Languages take slots in order of first appearance; processes see the same data order per shard,
        # so a multi-process run must name ``languages`` for the slots to line up.
        if lang not in self.index:
            if len(self.index) >= self.max_languages:
                self.notes.append(f"language {lang!r} skipped: more than {self.max_languages} languages")
                return None
            self.index[lang] = len(self.index)
        return self.index[lang]

    def compute(self) -> dict[str, float]:
        ratios = {
            lang: float(self.tokens[i, 0] / self.tokens[i, 1])
            for lang, i in self.index.items()
            if float(self.tokens[i, 1]) > 0
        }
        if not ratios:
            raise ZooError("parity: no item in a non-reference language was seen")
        values = list(ratios.values())
        result = {"mean": float(np.mean(values)), "max": max(values), "min": min(values), "languages": len(values)}
        result.update({lang: ratios[lang] for lang in self.languages if lang in ratios})
        return result


class RenyiEfficiency(CodebookUsage):
    """Rényi efficiency of the unigram token distribution (Zouhar et al. 2023,
    https://arxiv.org/abs/2306.16842): ``H_α(p) / log2 V`` with ``H_α = log2(Σ p^α) / (1 - α)``.

    Args:
        alpha: the order (2.5 by default; α -> 1 gives Shannon efficiency).
        vocab: ``observed`` (V = token types seen, the tokenization-scorer default) or ``full`` (V = vocab_size).
    """

    name: ClassVar[str] = "renyi-efficiency"
    higher_is_better: ClassVar[bool | None] = True
    modalities: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(self, alpha: float = 2.5, vocab: str = "observed") -> None:
        super().__init__()
        if alpha <= 0 or vocab not in ("observed", "full"):
            raise ZooError(f"renyi-efficiency: need alpha > 0 and vocab in (observed, full), got {alpha}, {vocab!r}")
        self.alpha, self.vocab = float(alpha), vocab

    def compute(self) -> float:
        if not hasattr(self, "counts") or float(self.counts.sum()) == 0:
            raise ZooError("renyi-efficiency: no tokens were seen")
        counts = self.counts[0]
        p = counts[counts > 0] / counts.sum()
        size = len(p) if self.vocab == "observed" else self.counts.shape[1]
        if size <= 1:
            return 0.0
        if abs(self.alpha - 1.0) < 1e-9:
            entropy = float(-(p * p.log2()).sum())
        else:
            entropy = float(torch.log2((p**self.alpha).sum()) / (1.0 - self.alpha))
        return entropy / math.log2(size)

    def figures(self) -> dict:
        return {}  # the histogram is codebook's


# -- the vocabulary itself (Qtok-style) -------------------------------------------------------------------

CATEGORIES = (
    "control",
    "raw_byte",
    "unicode_flank",
    "char_alpha",
    "char_other",
    "char_error",
    "spaced_alpha",
    "spaced_other",
    "spaced_error",
    "inner_alpha",
    "inner_other",
    "inner_error",
)
SCRIPTS = (
    "Latin", "Cyrillic", "Greek", "Armenian", "Georgian", "Arabic", "Hebrew", "Devanagari", "Bengali", "Tamil",
    "Thai", "Han", "Hiragana", "Katakana", "Hangul", "other", "mixed",
)  # fmt: skip
_SCRIPT_PREFIX = {"CJK": "Han", "HANGUL": "Hangul"}


def _char_kind(ch: str) -> str:
    category = unicodedata.category(ch)
    if category[0] in "LM":
        return "alpha"
    if category in ("Cc", "Cs", "Co", "Cn") or ch == "\ufffd":
        return "error"
    return "other"


def token_category(raw: bytes | None, special: bool) -> str | None:
    """Qtok-style class of one token (``nup-csai/Qtok``): control tokens; raw bytes (one non-ASCII byte);
    unicode flanks (several bytes that are not whole characters); otherwise a single character, a
    word-initial (space-led) or a word-inner token, each alpha (letters and marks), other, or error
    (control, unassigned or replacement characters)."""
    if raw is None:
        return None
    if special or not raw:
        return "control"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "raw_byte" if len(raw) == 1 else "unicode_flank"
    if len(text) == 1:
        return f"char_{_char_kind(text)}"
    spaced = text[0] in " \u2581" and len(text) > 1
    body = text[1:] if spaced else text
    kinds = {_char_kind(c) for c in body}
    kind = "error" if "error" in kinds else "alpha" if kinds == {"alpha"} else "other"
    return f"{'spaced' if spaced else 'inner'}_{kind}"


def token_script(text: str) -> str:
    """The Unicode script of a token's letters (from character names), ``mixed`` when several."""
    scripts = set()
    for ch in text:
        if unicodedata.category(ch)[0] != "L":
            continue
        word = unicodedata.name(ch, "UNKNOWN").split()[0]
        script = _SCRIPT_PREFIX.get(word, word.title())
        scripts.add(script if script in SCRIPTS else "other")
    if not scripts:
        return "other"
    return scripts.pop() if len(scripts) == 1 else "mixed"


class _VocabularyShares(Metric):
    """Shares of the vocabulary by class; computed from the tokenizer alone (the data is not read)."""

    higher_is_better: ClassVar[bool | None] = None
    modalities: ClassVar[tuple[str, ...]] = ("text",)
    labels: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        self.add_state("counts", torch.zeros(len(self.labels), dtype=torch.float64))
        self._seen = False

    def reset(self) -> None:
        super().reset()
        self._seen = False

    def setup(self, tokenizer, data_key: str | None = None) -> None:
        self._count(tokenizer)

    def update(self, ctx: EvalContext) -> None:
        self._count(ctx.tokenizer)

    def _count(self, tokenizer) -> None:
        if self._seen:
            return
        pieces, specials = vocabulary(tokenizer)
        counts = torch.zeros(len(self.labels), dtype=torch.float64)
        for i, raw in enumerate(pieces):
            label = self.label(raw, i in specials)
            if label is not None:
                counts[self.labels.index(label)] += 1
        self.counts = self.counts + counts  # processes each add the same counts: shares are unchanged
        self._seen = True

    def label(self, raw: bytes | None, special: bool) -> str | None:
        raise ZooError(f"{type(self).__name__} does not define label()")

    def compute(self) -> dict[str, float]:
        total = float(self.counts.sum())
        if not total:
            raise ZooError(f"{self.name}: the vocabulary has no token of the counted kinds")
        return {label: float(c) / total for label, c in zip(self.labels, self.counts)}


class VocabularyCategories(_VocabularyShares):
    """Shares of the vocabulary per Qtok-style category (``token_category``)."""

    name: ClassVar[str] = "vocab-categories"
    labels: ClassVar[tuple[str, ...]] = CATEGORIES

    def label(self, raw: bytes | None, special: bool) -> str | None:
        return token_category(raw, special)


class VocabularyScripts(_VocabularyShares):
    """Unicode script distribution of the vocabulary's alphabetic tokens (Qtok's unicode table)."""

    name: ClassVar[str] = "vocab-scripts"
    labels: ClassVar[tuple[str, ...]] = SCRIPTS

    def label(self, raw: bytes | None, special: bool) -> str | None:
        category = token_category(raw, special)
        if category is None or not category.endswith("_alpha"):
            return None
        return token_script(raw.decode("utf-8"))


class LexiconShare(CodebookUsage):
    """Share of the tokens used on the data that are words of ``lang``'s wordfreq lexicon, standing as words.

    ``unique`` is over the distinct tokens used (as %TR / %Pure are, Bayram et al. 2025,
    https://arxiv.org/abs/2502.07057; the morpheme-aware versions are ``morph-share``), ``tokens`` weighted by
    use. Candidates are tokens of at least ``min_chars`` characters once whitespace and ``▁`` are stripped,
    compared in lower case (Turkish and Azeri dotted / dotless i kept apart).

    A candidate is a hit when it is a lexicon word (below) and, with ``whole_words``, was used at least once as
    a whole word: its text, past leading whitespace, is a maximal run of letters of the text (nothing alphabetic
    touches it on either side). ``tokens`` then counts those whole-word uses only. Why: wordfreq's lists hold
    every frequent string of their web sources, so word fragments are lexicon words by accident. On Turkish
    treebank sentences a BPE that saw no Turkish (``bpe-32k``) had 69% of its distinct tokens (86% of its token
    uses) in the Turkish list, as many as a BPE trained on Turkish (71%): ``ar``, ``le``, ``tan`` are all there.
    With both rules here the shares are 6.5% and 31% (docs/turkish.md).

    A word counts as a ``lang`` word only if it is more frequent in ``lang`` than in ``contrast`` (English by
    default): the Turkish list holds ``the``, ``and``, ``of``, ``word`` and ``echo`` from English web text.

    Args:
        lang: a wordfreq language code; unsupported codes are an error (wordfreq itself would
            silently fall back to English).
        wordlist: wordfreq's list (``best``, ``large``, ``small``).
        min_chars: shortest candidate token, in characters.
        whole_words: count a token only where it stands as a whole word (False: wherever it is used).
        contrast: a wordfreq language whose words are not ``lang``'s unless more frequent in ``lang``;
            None, or ``lang`` itself, to keep every word of the list.
    """

    name: ClassVar[str] = "lexicon-share"
    higher_is_better: ClassVar[bool | None] = True
    modalities: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(
        self,
        lang: str = "en",
        wordlist: str = "best",
        min_chars: int = 2,
        whole_words: bool = True,
        contrast: str | None = "en",
    ) -> None:
        super().__init__()
        import wordfreq

        supported = wordfreq.available_languages(wordlist=wordlist)
        for code in (lang, contrast):
            if code is not None and code not in supported:
                raise ZooError(
                    f"lexicon-share: wordfreq has no {wordlist!r} list for {code!r} (it would silently use English); "
                    f"supported: {' '.join(sorted(supported))}"
                )
        self.lang, self.wordlist, self.min_chars = lang, wordlist, min_chars
        self.whole_words = bool(whole_words)
        self.contrast = None if contrast == lang else contrast
        self._tokenizer = None

    def setup(self, tokenizer, data_key: str | None = None) -> None:
        super().setup(tokenizer, data_key)
        self._tokenizer = tokenizer
        self.add_state("whole", torch.zeros(int(tokenizer.vocab_size), dtype=torch.float64))

    def update(self, ctx: EvalContext) -> None:
        self._tokenizer = ctx.tokenizer
        super().update(ctx)
        if not hasattr(self, "whole"):
            self.add_state("whole", torch.zeros(self.vocab_size, dtype=torch.float64))
        if self.whole_words:
            for text, ids in zip(_texts(ctx), ctx.ids):
                for i in whole_word_ids(ctx.tokenizer, list(ids), text):
                    self.whole[i] += 1

    def _lower(self, word: str) -> str:
        if self.lang in ("tr", "az"):
            from zoo.metrics.morphology import turkish_lower

            return turkish_lower(word)
        return word.casefold()

    def compute(self) -> dict[str, float]:
        import wordfreq

        if not hasattr(self, "counts") or float(self.counts.sum()) == 0 or self._tokenizer is None:
            raise ZooError("lexicon-share: no tokens were seen")
        lexicon = wordfreq.get_frequency_dict(self.lang, wordlist=self.wordlist)
        foreign = wordfreq.get_frequency_dict(self.contrast, wordlist=self.wordlist) if self.contrast else {}
        counts = self.counts[0]
        used = torch.nonzero(counts).flatten().tolist()
        pieces = self._tokenizer.token_bytes(used)
        words = [self._lower(raw.decode("utf-8", "replace").strip().strip("\u2581")) for raw in pieces]
        candidate = torch.tensor([len(w) >= self.min_chars for w in words], dtype=torch.bool)
        in_lexicon = torch.tensor([lexicon.get(w, 0.0) > foreign.get(w, 0.0) for w in words], dtype=torch.bool)
        uses = self.whole[used] if self.whole_words else counts[used]
        hits = candidate & in_lexicon & (uses > 0)
        if not candidate.any():
            return {"unique": 0.0, "tokens": 0.0}
        return {
            "unique": float(hits.sum() / candidate.sum()),
            "tokens": float(uses[hits].sum() / counts[used][candidate].sum()),
        }

    def figures(self) -> dict:
        return {}


def whole_word_ids(tokenizer, ids: list[int], text: str) -> list[int]:
    """The ids of ``text``'s tokens that stand as whole words (a maximal run of letters, past leading
    whitespace); for a tokenizer whose tokens do not spell the text, each letter run is encoded alone and
    counts when it is one token."""
    import regex

    runs = [(m.start(), m.end()) for m in regex.finditer(r"[\p{L}\p{M}]+", text)]
    if not runs:
        return []
    spans = token_spans(tokenizer, ids, text)
    if spans is None:
        alone = [[i for i in tokenizer.encode(text[s:e]) if tokenizer.token_bytes([i])[0].strip()] for s, e in runs]
        return [pieces[0] for pieces in alone if len(pieces) == 1]
    offsets = utf8_offsets(text)
    words = {(int(offsets[s]), int(offsets[e])) for s, e in runs}
    pieces = tokenizer.token_bytes(ids)
    starts, ends = spans
    return [
        i
        for i, raw, start, end in zip(ids, pieces, starts.tolist(), ends.tolist())
        if (start + len(raw) - len(raw.lstrip()), end) in words
    ]
