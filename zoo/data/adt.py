"""ADT items: questions whose key words a tokenizer segments across their boundary.

After "Tokenization Matters!" (Wang et al., https://arxiv.org/abs/2405.17067), whose ADT-Auto pipeline
builds adversarial texts from an open vocabulary. No code or data of theirs is public; the steps here are
our reading of the abstract, made deterministic and offline:

1. two frequent words A and B (wordfreq's list for the language) are written together, ``AB``, the way
   hashtags, identifiers, compounds and Chinese text join words;
2. with ``tokenizer`` named (ADT-Auto), the pair is found from that tokenizer's vocabulary: a token
   ``t = tail(A) + head(B)`` joins the end of A with the start of B, and the item is kept only when the
   tokenizer really emits a token across the A|B junction in the question (and none across either
   word's edge in the clean version). Without ``tokenizer`` the pairs are drawn at random: one common
   set on which every tokenizer is measured, adversarial for some and not for others;
3. answerability: ``AB`` is not itself a word of the lexicon and has no other split into two lexicon
   words, so the intended reading is the only one.

The question asks for the first or the last word of ``AB`` (multiple choice, scored by an LM's
log-likelihood, ``zoo.metrics.adt``). The choices are A, B and two misreadings that cut ``AB`` where the
trap token starts and ends (``AB[:s]``, ``AB[:e]``; for random pairs, one or two characters either side
of the junction). The clean version asks the same question about ``"A B"``, the words apart.

Item fields: ``text`` and ``question`` (the adversarial prompt), ``clean_question``, ``choices``,
``answer``, ``answer_index``, ``close`` (the closing quote each choice is scored with, so a shorter
choice is not favoured for being a prefix of a longer one), ``words`` ([A, B]), ``spans`` and
``clean_spans`` (character ``[start, end)`` of A and B in each question), ``junction`` (character offset
of the A|B junction in the question), ``task`` (``first`` / ``last``), ``lang``, and for ADT-Auto items
``trap`` (the token emitted across the junction) and ``trap_tokenizer``. Words are split 80/10/10 into
train / val / test by seed, and an item of a split uses only that split's words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zoo.data.text import TextItems, _check, split_items
from zoo.data.token_text import utf8_offsets, vocabulary
from zoo.errors import ZooError

TASKS = ("first", "last")


@dataclass(frozen=True)
class Template:
    """A language's question: ``{text}`` is the word pair; the prompt ends with the opening quote of the answer."""

    first: str
    last: str
    close: str
    min_chars: int  # shortest word used (single letters are not words a question can be about)


TEMPLATES: dict[str, Template] = {
    "en": Template('Question: Which word comes first in "{text}"?\nAnswer: "',
                   'Question: Which word comes last in "{text}"?\nAnswer: "', '"', 3),
    "de": Template('Frage: Welches Wort steht zuerst in "{text}"?\nAntwort: "',
                   'Frage: Welches Wort steht zuletzt in "{text}"?\nAntwort: "', '"', 3),
    "zh": Template("问题：“{text}”中的第一个词是什么？\n答案：“",
                   "问题：“{text}”中的最后一个词是什么？\n答案：“", "”", 2),
}
SEPARATOR = " "  # the clean version writes the words apart


# -- token boundaries --------------------------------------------------------------------------------------


def token_spans(tokenizer, text: str) -> list[tuple[int, int]]:
    """Character ``[start, end)`` of each token of ``text``; a token that starts or ends inside a character (a
    byte-level piece) is widened to whole characters. Tokens that do not spell ``text`` byte for byte (a
    tokenizer that normalises) have no location: that is an error."""
    pieces = tokenizer.token_bytes(tokenizer.encode(text))
    raw = text.encode("utf-8", "surrogatepass")
    if b"".join(pieces) != raw:
        raise ZooError(f"{type(tokenizer).__name__}: its tokens do not spell the text byte for byte (it normalises "
                       "text), so word boundaries cannot be located in its segmentation")
    offsets = utf8_offsets(text)  # byte offset of every character boundary
    ends = np.cumsum([len(p) for p in pieces], dtype=np.int64)
    starts = ends - np.asarray([len(p) for p in pieces], dtype=np.int64)
    keep = ends > starts  # specials cover nothing
    first = np.searchsorted(offsets, starts[keep], side="right") - 1
    last = np.searchsorted(offsets, ends[keep], side="left")
    return list(zip(first.tolist(), last.tolist()))


def crossing_token(spans: list[tuple[int, int]], offset: int) -> tuple[int, int] | None:
    """The token that covers characters on both sides of ``offset`` (it cuts across that boundary), or None."""
    return next(((s, e) for s, e in spans if s < offset < e), None)


def word_cut(text: str, spans: list[tuple[int, int]], start: int, end: int) -> bool:
    """True when a token holding part of the word ``text[start:end]`` also holds a character beside it that is
    not whitespace: the word is not segmented at its boundary. (A leading space in a token, the GPT-2
    convention, does not count.)"""
    for s, e in spans:
        if s < end and e > start and (text[s:start].strip() or text[end:e].strip()):
            return True
    return False


# -- words ------------------------------------------------------------------------------------------------


def _languages(lang: str) -> list[str]:
    langs = list(TEMPLATES) if lang == "all" else str(lang).split("+")
    unknown = [code for code in langs if code not in TEMPLATES]
    if unknown:
        raise ZooError(f"dataset 'adt': no question template for {unknown}; known: {', '.join(TEMPLATES)} or 'all'")
    return langs


def word_pool(lang: str, words: int, split: str, seed: int) -> tuple[list[str], set[str]]:
    """The ``words`` most frequent alphabetic words of ``lang`` in ``split`` (80/10/10 by seed), and the lexicon
    (a larger list) that decides answerability."""
    import wordfreq

    if lang not in wordfreq.available_languages():
        raise ZooError(f"dataset 'adt': wordfreq has no list for {lang!r}")  # it would silently use English
    lexicon = {w for w in wordfreq.top_n_list(lang, max(50_000, words)) if w.isalpha()}
    ranked = [w for w in wordfreq.top_n_list(lang, words) if w.isalpha() and len(w) >= TEMPLATES[lang].min_chars]
    chosen = split_items([{"text": w} for w in ranked], split, seed, None).texts
    rank = {w: i for i, w in enumerate(ranked)}
    return sorted(chosen, key=rank.__getitem__), lexicon


def answerable(a: str, b: str, lexicon: set[str]) -> bool:
    """``a + b`` reads only one way: it is no lexicon word, and its one split into two lexicon words is a|b."""
    joined = a + b
    if a == b or joined in lexicon:
        return False
    return not any(joined[:i] in lexicon and joined[i:] in lexicon for i in range(1, len(joined)) if i != len(a))


# -- items ------------------------------------------------------------------------------------------------


def make_item(a: str, b: str, lang: str, task: str, cuts: tuple[int, int], rng: np.random.Generator) -> dict:
    """One question about ``a + b``; ``cuts`` are the two misreading cut points in ``a + b`` (before and after
    the junction ``len(a)``)."""
    template = TEMPLATES[lang]
    form = template.first if task == "first" else template.last
    joined, head = a + b, form.index("{text}")
    misread = [joined[:cut] if task == "first" else joined[cut:] for cut in cuts]
    choices = list(dict.fromkeys([a, b, *(m for m in misread if m)]))
    choices = [choices[i] for i in rng.permutation(len(choices))]
    answer = a if task == "first" else b
    clean = a + SEPARATOR + b
    return {
        "text": form.format(text=joined),
        "question": form.format(text=joined),
        "clean_question": form.format(text=clean),
        "choices": choices,
        "answer": answer,
        "answer_index": choices.index(answer),
        "close": template.close,
        "words": [a, b],
        "spans": [[head, head + len(a)], [head + len(a), head + len(joined)]],
        "clean_spans": [[head, head + len(a)], [head + len(a) + len(SEPARATOR), head + len(clean)]],
        "junction": head + len(a),
        "task": task,
        "lang": lang,
    }


def _random_cuts(a: str, b: str, rng: np.random.Generator) -> tuple[int, int]:
    k = int(rng.integers(1, 3))
    return max(1, len(a) - k), min(len(a) + len(b) - 1, len(a) + k)


def random_items(lang: str, pool: list[str], lexicon: set[str], count: int, seed: int) -> list[dict]:
    """``count`` answerable pairs of pool words, drawn by seed (the tokenizer-free set)."""
    rng = np.random.default_rng([seed, 1])
    items, seen = [], set()
    for _ in range(count * 50):
        if len(items) == count:
            break
        a, b = (pool[i] for i in rng.integers(0, len(pool), 2))
        if (a, b) in seen or not answerable(a, b, lexicon):
            continue
        seen.add((a, b))
        items.append(make_item(a, b, lang, TASKS[int(rng.integers(2))], _random_cuts(a, b, rng), rng))
    return items


def vocabulary_strings(tokenizer) -> list[str]:
    """The vocabulary's tokens that are whole words of letters (2+ characters), for the trap search."""
    pieces, _ = vocabulary(tokenizer)
    strings = []
    for raw in pieces:
        if raw is None:  # an unused id
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:  # part of a character
            continue
        if len(text) >= 2 and text.isalpha():
            strings.append(text)
    return sorted(set(strings))


def trap_items(tokenizer, name: str, lang: str, pool: list[str], lexicon: set[str], count: int,
               seed: int) -> list[dict]:
    """ADT-Auto: pairs whose junction a vocabulary token ``tail(A) + head(B)`` covers, kept when ``tokenizer``
    emits a token across the junction of the question and respects both words' edges in the clean version."""
    ends: dict[str, list[str]] = {}
    starts: dict[str, list[str]] = {}
    for word in pool:
        for k in range(1, len(word) + 1):
            ends.setdefault(word[-k:], []).append(word)
            starts.setdefault(word[:k], []).append(word)
    candidates = [(token, i) for token in vocabulary_strings(tokenizer) for i in range(1, len(token))
                  if token[:i] in ends and token[i:] in starts]
    rng = np.random.default_rng([seed, 2])
    items, seen = [], set()
    for index in rng.permutation(len(candidates)):
        if len(items) == count:
            break
        token, i = candidates[index]
        a = ends[token[:i]][int(rng.integers(len(ends[token[:i]])))]
        b = starts[token[i:]][int(rng.integers(len(starts[token[i:]])))]
        if (a, b) in seen or token == a + b or not answerable(a, b, lexicon):
            continue
        seen.add((a, b))
        task = TASKS[int(rng.integers(2))]
        probe = make_item(a, b, lang, task, (len(a), len(a)), rng)
        crossing = crossing_token(token_spans(tokenizer, probe["question"]), probe["junction"])
        clean_spans = token_spans(tokenizer, probe["clean_question"])
        if crossing is None or any(word_cut(probe["clean_question"], clean_spans, *w) for w in probe["clean_spans"]):
            continue
        offset = probe["spans"][0][0]  # the trap's cut points, in a + b
        cuts = (max(1, crossing[0] - offset), min(len(a + b) - 1, crossing[1] - offset))
        item = make_item(a, b, lang, task, cuts, rng)
        item.update(trap=item["question"][crossing[0] : crossing[1]], trap_tokenizer=name)
        items.append(item)
    return items


def adt(lang: str = "en", tokenizer: str | None = None, items: int = 300, words: int = 5000, split: str = "test",
        seed: int = 0, limit: int | None = None) -> TextItems:
    """ADT questions in one or more languages (``en``, ``de``, ``zh``, ``en+de+zh``, ``all``): ``items`` per
    language, from ``tokenizer``'s vocabulary (ADT-Auto) or, without one, from random word pairs."""
    _check("adt", split, limit)
    if isinstance(items, bool) or not isinstance(items, int) or items < 1:
        raise ZooError(f"dataset 'adt': items must be an integer >= 1 (questions per language), got {items!r}")
    if isinstance(words, bool) or not isinstance(words, int) or words < 20:
        raise ZooError(f"dataset 'adt': words must be an integer >= 20 (most frequent words used), got {words!r}")
    source = None
    if tokenizer is not None:
        from zoo.loading import load_tokenizer

        source = load_tokenizer(str(tokenizer), modality="text", owner="dataset 'adt'")
    built: list[dict] = []
    for salt, code in enumerate(_languages(lang)):
        pool, lexicon = word_pool(code, words, split, seed)
        if source is None:
            built += random_items(code, pool, lexicon, items, seed * 1_000 + salt)
        else:
            built += trap_items(source, str(tokenizer), code, pool, lexicon, items, seed * 1_000 + salt)
    if not built:
        raise ZooError(f"dataset 'adt': {tokenizer!r} emits no token across a word junction for any pair of the "
                       f"{words} most frequent {lang} words (its vocabulary has no trap for them)")
    order = np.random.default_rng([seed, 3]).permutation(len(built))  # languages interleaved, so a limit mixes
    kept = [built[i] for i in order]
    return TextItems(kept if limit is None else kept[:limit])
