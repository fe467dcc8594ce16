"""WECHSEL: embeddings for a new-language vocabulary through aligned fastText spaces.

Minixhofer, Paischer & Rekabsaz 2022, https://arxiv.org/abs/2112.06598 (steps as ``CPJKU/wechsel``):

1. word vectors for the source and the target language (here: fastText with subword n-grams, trained on
   the user's text, or a fastText ``.bin`` the user gives);
2. an orthogonal map W from the source space into the target space, fitted by Procrustes on the word pairs
   of a bilingual dictionary found in both models;
3. a vector for every token: the fastText vector of the token's decoded text (its subword n-grams);
4. each target token's row = softmax(cos / temperature) over its k nearest source tokens (k = 10,
   temperature 0.1) applied to their source embedding rows; tokens without a vector fall back to
   N(mean, std) of the source rows (``zoo.transfer.embeddings``), special tokens are copied.

Bilingual dictionaries come from offline sources only: a user TSV (``source<TAB>target`` per line),
pycountry's gettext catalogs (country, language and currency names: ``pycountry:de``), CLDR display names
through ``babel`` when it is installed (``cldr:de``), and words spelled identically in both models
(``identical``; Smith et al. 2017, https://arxiv.org/abs/1702.03859). Specs join with ``+``.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Protocol

import torch

from zoo.errors import ZooError

DICTIONARY_SOURCES = ("pycountry:LANG", "cldr:LANG", "identical", "a TSV file")
_WORD = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]", re.UNICODE)


class WordVectors(Protocol):
    """What WECHSEL needs of a word-vector model; fastText's Python models offer exactly this."""

    words: list[str]

    def get_word_vector(self, word: str): ...


# -- bilingual dictionaries ---------------------------------------------------------------------------------


def read_dictionary(path: str | Path) -> list[tuple[str, str]]:
    """Word pairs from a file of ``source<TAB>target`` lines (or two whitespace-separated words, as WECHSEL's)."""
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"bilingual dictionary {path}: no such file (expected source<TAB>target lines)")
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.rstrip("\n").split("\t") if "\t" in line else line.split()
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise ZooError(f"bilingual dictionary {path}, line {number}: expected 'source<TAB>target', got {line!r}")
        pairs.append((parts[0].strip(), parts[1].strip()))
    if not pairs:
        raise ZooError(f"bilingual dictionary {path}: no word pairs")
    return pairs


def _single_words(catalog: dict[str, str]) -> list[tuple[str, str]]:
    """One-word entries of an {English: translation} catalog; multi-word names have no word alignment."""
    return [(s, t) for s, t in sorted(catalog.items()) if len(s.split()) == 1 and len(t.split()) == 1]


def pycountry_dictionary(target: str) -> list[tuple[str, str]]:
    """English -> ``target`` one-word names from pycountry's catalogs (``zoo.data.text.read_mo``)."""
    import pycountry

    from zoo.data.text import CATALOG_DOMAINS, catalog_languages, read_mo

    root = Path(pycountry.LOCALES_DIR)
    pairs: dict[tuple[str, str], None] = {}
    for domain in CATALOG_DOMAINS:
        if target in catalog_languages(domain):
            for pair in _single_words(read_mo(root / target / "LC_MESSAGES" / f"{domain}.mo")):
                pairs[pair] = None
    if not pairs:
        raise ZooError(f"bilingual dictionary pycountry:{target}: pycountry has no catalog for {target!r}")
    return list(pairs)


def cldr_dictionary(target: str) -> list[tuple[str, str]]:
    """English -> ``target`` one-word CLDR display names (languages, territories, months, days) via babel."""
    try:
        from babel import Locale, UnknownLocaleError
    except ImportError:
        raise ZooError(
            "bilingual dictionary cldr:LANG needs babel (`pip install babel`), which is not installed"
        ) from None
    try:
        en, other = Locale("en"), Locale.parse(target)
    except (UnknownLocaleError, ValueError):
        raise ZooError(f"bilingual dictionary cldr:{target}: CLDR has no locale {target!r}") from None
    catalog = {}
    for table in ("languages", "territories", "scripts", "currencies"):
        mine, theirs = getattr(en, table), getattr(other, table)
        catalog.update({mine[key]: theirs[key] for key in mine.keys() & theirs.keys()})
    for table in ("months", "days"):
        for width in ("wide", "abbreviated"):
            mine, theirs = getattr(en, table)["format"][width], getattr(other, table)["format"][width]
            catalog.update({mine[key]: theirs[key] for key in mine.keys() & theirs.keys()})
    return _single_words(catalog)


def identical_dictionary(source: WordVectors, target: WordVectors) -> list[tuple[str, str]]:
    """Words spelled the same in both models (names, numbers, loanwords): Procrustes anchors without a lexicon."""
    target_words = set(target.words)
    return [(w, w) for w in source.words if w in target_words and any(c.isalnum() for c in w)]


def load_dictionary(spec: str | list, source: WordVectors | None = None, target: WordVectors | None = None):
    """Word pairs for a spec (``pycountry:de+identical``, a TSV path) or a list of pairs given as is."""
    if not isinstance(spec, str):
        pairs = [(str(s), str(t)) for s, t in spec]
        if not pairs:
            raise ZooError("bilingual dictionary: the list of word pairs is empty")
        return pairs
    pairs: list[tuple[str, str]] = []
    for part in spec.split("+"):
        kind, _, lang = part.partition(":")
        if kind == "pycountry" and lang:
            pairs += pycountry_dictionary(lang)
        elif kind == "cldr" and lang:
            pairs += cldr_dictionary(lang)
        elif part == "identical":
            if source is None or target is None:
                raise ZooError("bilingual dictionary 'identical' needs both word-vector models")
            pairs += identical_dictionary(source, target)
        elif Path(part).is_file():
            pairs += read_dictionary(part)
        else:
            raise ZooError(
                f"bilingual dictionary {part!r}: expected one of {', '.join(DICTIONARY_SOURCES)} (joined with '+')"
            )
    return pairs


# -- word vectors and alignment -----------------------------------------------------------------------------


def words_of(text: str) -> list[str]:
    """Word and punctuation tokens for fastText (WECHSEL uses NLTK's word tokenizer; this is its offline cousin)."""
    return _WORD.findall(text)


def train_word_vectors(
    texts: list[str], dim: int = 100, epochs: int = 10, min_count: int = 3, minn: int = 3, maxn: int = 6
):
    """fastText word vectors with subword n-grams (CBOW, 10 negatives as WECHSEL trains) on ``texts``.

    n-grams of 3-6 characters (fastText's defaults; the published cc.*.300 models use 5) give short
    tokens of small vocabularies a vector too."""
    try:
        import fasttext
    except ImportError:
        raise ZooError(
            "WECHSEL needs a fastText implementation: `pip install fasttext-wheel` (or `fasttext`) from PyPI"
        ) from None
    lines = [" ".join(words_of(line)) for text in texts for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise ZooError("WECHSEL: no words in the text given for the word vectors")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "words.txt"
        corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        # One thread keeps the vectors reproducible (fastText seeds its own generator).
        return fasttext.train_unsupervised(
            str(corpus),
            model="cbow",
            dim=dim,
            epoch=epochs,
            minCount=min_count,
            minn=minn,
            maxn=maxn,
            neg=10,
            thread=1,
            verbose=0,
        )


def load_word_vectors(path: str | Path):
    """A fastText ``.bin`` model (fastText's own binary format, not a pickle)."""
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"fastText model {path}: no such file (expected a fastText .bin)")
    try:
        import fasttext
    except ImportError:
        raise ZooError("WECHSEL needs a fastText implementation: `pip install fasttext-wheel` from PyPI") from None
    try:
        return fasttext.load_model(str(path))
    except ValueError as err:
        raise ZooError(f"fastText model {path}: cannot be read ({err})") from None


def procrustes(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Orthogonal W minimising ||source W - target||_F: W = U V^T for U S V^T = svd(source^T target).

    source, target [N, d] (row i of each is a translation pair) -> W [d, d] (Schönemann 1966)."""
    if source.shape != target.shape or source.ndim != 2:
        raise ZooError(
            f"procrustes: expected two [N, d] matrices of one shape, got {list(source.shape)} and {list(target.shape)}"
        )
    u, _, vh = torch.linalg.svd(source.double().T @ target.double())
    return (u @ vh).to(source.dtype)


def _known(model: WordVectors) -> set[str]:
    return set(model.words)


def dictionary_vectors(source: WordVectors, target: WordVectors, pairs: list[tuple[str, str]]):
    """[N, d] source and target vectors of the pairs found in both vocabularies (with WECHSEL's case variants)."""
    source_words, target_words = _known(source), _known(target)
    found: dict[tuple[str, str], None] = {}
    for s, t in pairs:
        for a in dict.fromkeys((s, s.lower(), s.title())):
            for b in dict.fromkeys((t, t.lower(), t.title())):
                if a in source_words and b in target_words:
                    found[(a, b)] = None
    if len(found) < 2:
        raise ZooError(
            f"WECHSEL: only {len(found)} of {len(pairs)} dictionary pairs are words of both fastText models; "
            "expected at least 2 (give more text, a larger dictionary, or add 'identical')"
        )
    xs = torch.stack([torch.as_tensor(source.get_word_vector(a)) for a, _ in found]).float()
    ys = torch.stack([torch.as_tensor(target.get_word_vector(b)) for _, b in found]).float()
    return xs, ys


def align(source: WordVectors, target: WordVectors, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, int]:
    """The orthogonal map [d, d] taking source vectors into the target space, and the number of pairs used."""
    xs, ys = dictionary_vectors(source, target, pairs)
    if xs.shape[1] != ys.shape[1]:
        raise ZooError(f"WECHSEL: the fastText models differ in dimension ({xs.shape[1]} vs {ys.shape[1]})")
    return procrustes(xs, ys), len(xs)


def token_vectors(vocab, model: WordVectors) -> tuple[torch.Tensor, torch.Tensor]:
    """fastText vector of each token's decoded, stripped text -> (vectors [V, d], has_vector [V] bool).

    Specials, tokens that decode to nothing (partial UTF-8, whitespace) and tokens without a known n-gram
    (fastText returns zeros) have no vector."""
    rows, mask = [], []
    dim = len(model.get_word_vector("a"))
    for data in vocab.token_bytes:
        text = data.decode("utf-8", errors="ignore").strip() if data is not None else ""
        vector = torch.as_tensor(model.get_word_vector(text)).float() if text else torch.zeros(dim)
        rows.append(vector)
        mask.append(bool(text) and bool(vector.abs().sum() > 0))
    return torch.stack(rows), torch.tensor(mask, dtype=torch.bool)


def wechsel_rows(
    source_vectors: torch.Tensor,
    target_vectors: torch.Tensor,
    source_rows: torch.Tensor,
    k: int = 10,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Rows for target tokens from their k most similar source tokens (https://arxiv.org/abs/2112.06598 §3.2).

    source_vectors [S, d] (aligned), target_vectors [T, d], source_rows [S, D] -> [T, D]:
    row = sum_j softmax(cos_j / temperature) * source_rows[j] over the top-k cosines."""
    if k < 1 or temperature <= 0:
        raise ZooError(f"WECHSEL: need k >= 1 and temperature > 0, got k={k}, temperature={temperature}")
    s = torch.nn.functional.normalize(source_vectors.float(), dim=-1)
    t = torch.nn.functional.normalize(target_vectors.float(), dim=-1)
    rows = []
    for chunk in t.split(1024):  # [c, S] similarities at a time keep memory flat for big vocabularies
        sims, best = (chunk @ s.T).topk(min(k, len(s)), dim=-1)  # [c, k]
        weights = (sims / temperature).softmax(-1)
        rows.append(torch.einsum("ck,ckd->cd", weights, source_rows.float()[best]))
    return torch.cat(rows) if rows else source_rows.new_zeros(0, source_rows.shape[1]).float()


def wechsel_targets(
    old_vocab,
    new_vocab,
    old_rows: torch.Tensor,
    source_model: WordVectors,
    target_model: WordVectors,
    dictionary,
    ids: list[int],
    k: int = 10,
    temperature: float = 0.1,
) -> tuple[dict[int, torch.Tensor], int]:
    """WECHSEL rows for the new-vocabulary ``ids`` that have a vector -> ({id: row [D]}, dictionary pairs used)."""
    pairs = load_dictionary(dictionary, source_model, target_model)
    rotation, used = align(source_model, target_model, pairs)
    src_vectors, src_mask = token_vectors(old_vocab, source_model)
    tgt_vectors, tgt_mask = token_vectors(new_vocab, target_model)
    sources = src_mask.nonzero().flatten()
    wanted = [i for i in ids if tgt_mask[i]]
    if not len(sources) or not wanted:
        return {}, used
    rows = wechsel_rows(src_vectors[sources] @ rotation, tgt_vectors[wanted], old_rows[sources], k, temperature)
    return dict(zip(wanted, rows)), used
