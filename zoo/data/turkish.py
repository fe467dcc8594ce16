"""Real Turkish text offline: the sentences of Google's Turkish treebanks (``pip install turkish-treebanks``).

The ``turkish-treebanks`` wheel (Apache-2.0, https://github.com/google-research-datasets/turkish-treebanks)
ships two CoNLL-U files: ``web.conllu`` (the Turkish Web Treebank: forums, blogs, news, reviews; 2,541
sentences) and ``wiki.conllu`` (Turkish Wikipedia; 2,310 sentences), about 433k characters in all. An item is
one sentence as it was written (its ``# text =`` line), with ``lang`` ``tr``, its ``section`` and ``doc``.

``split`` cuts 80/10/10 by **document** (a sentence id without its ``:Snnn`` tail), fixed by ``seed``, so
sentences of one blog post or one article never sit on both sides of a train/test cut; ``limit`` keeps the
first sentences of the seeded order.
"""

from __future__ import annotations

from pathlib import Path

from zoo.data.text import TextItems, _check, split_items
from zoo.errors import ZooError

SECTIONS = ("web", "wiki")
_DIST = "turkish-treebanks"


def treebank_file(section: str) -> Path:
    """Where the installed wheel put ``{section}.conllu`` (it installs a top-level ``data/`` folder)."""
    import importlib.metadata

    try:
        files = importlib.metadata.distribution(_DIST).files or []
    except importlib.metadata.PackageNotFoundError:
        raise ZooError(
            f"dataset 'turkish-treebank': the {_DIST} package is not installed; `pip install {_DIST}`"
        ) from None
    for file in files:
        if file.name == f"{section}.conllu":
            path = Path(file.locate())
            if path.is_file():
                return path
    raise ZooError(f"dataset 'turkish-treebank': {_DIST} is installed but has no {section}.conllu; reinstall it")


def conllu_sentences(text: str) -> list[tuple[str, str]]:
    """``(sent_id, text)`` of every sentence block of a CoNLL-U file that has both comments."""
    sentences = []
    for block in text.split("\n\n"):
        meta = dict(line[2:].split(" = ", 1) for line in block.splitlines() if line.startswith("# ") and " = " in line)
        if meta.get("sent_id") and meta.get("text", "").strip():
            sentences.append((meta["sent_id"], meta["text"].strip()))
    return sentences


def turkish_treebank(section: str = "all", split: str = "all", seed: int = 0, limit: int | None = None) -> TextItems:
    """Sentences of the Turkish Web Treebank (``web``), the Wikipedia treebank (``wiki``) or both (``all``)."""
    _check("turkish-treebank", split, limit)
    sections = SECTIONS if section == "all" else (section,)
    if any(s not in SECTIONS for s in sections):
        raise ZooError(f"dataset 'turkish-treebank': section must be one of {SECTIONS} or 'all', got {section!r}")
    documents: dict[str, dict] = {}
    for name in sections:
        for sent_id, text in conllu_sentences(treebank_file(name).read_text(encoding="utf-8")):
            doc = sent_id.rsplit(":S", 1)[0]
            documents.setdefault(doc, {"doc": doc, "section": name, "sentences": []})["sentences"].append(text)
    chosen = split_items(list(documents.values()), split, seed, None)
    items = [
        {"text": text, "lang": "tr", "section": d["section"], "doc": d["doc"]}
        for d in chosen.items
        for text in d["sentences"]
    ]
    return TextItems(items if limit is None else items[:limit])
