"""Built-in text corpora that work offline, and user text files.

Every builder returns a dataset of ``{"text": str, ...}`` items (``lang`` where known). ``split`` is
``train`` / ``val`` / ``test`` (80 / 10 / 10 %, by document, per language), fixed by ``seed``, or
``all``; each split is shuffled by the seed, so ``limit=N`` keeps the same N items on every run.

======================  =========================================================================
``fortunes``            quotes from the Debian ``fortunes*`` packages, one ``%``-separated record
                        per item (exact duplicates dropped); ``lang`` is one code, several joined
                        by ``+`` (``en+de+zh``) or ``all``. ANSI colour codes (in the Chinese
                        files) are stripped.
``stdlib-code``         the interpreter's own ``Lib/**/*.py`` files, one file per item (test
                        suites left out unless ``tests=true``): ~12 MB of real code.
``text-files``          user files: ``.txt`` (one item per file, or per line / blank-line
                        paragraph with ``unit=``) and ``.jsonl`` (one item per record, ``field``).
                        ``path`` is a file, a folder (searched recursively) or a glob.
``text-mix``            several text specs in one dataset (``sources``: a list of specs).
``pycountry-parallel``  country, language and currency names from pycountry's gettext catalogs:
                        short parallel strings, each item a translation with its English ``ref``
                        and an ``id`` shared by the translations of one string.
======================  =========================================================================
"""

from __future__ import annotations

import glob
import json
import re
import struct
import sysconfig
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from zoo.errors import ZooError

SPLITS = ("train", "val", "test", "all")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
# Language -> files (relative to FORTUNES_DIR); folders mean every record file inside them.
FORTUNE_SOURCES: dict[str, tuple[str, ...]] = {
    "bg": ("bg",),
    "cs": ("cs",),
    "de": ("de",),
    "eo": ("eo",),
    "es": ("es",),
    "it": ("it",),
    "pl": ("pl",),
    "pt": ("brasil",),
    "ru": ("ru",),
    "sk": ("sk",),
    "zh": ("chinese", "tang300", "song100"),
}
_NOT_ENGLISH = {name for files in FORTUNE_SOURCES.values() for name in files}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class TextItems(Dataset):
    """A list of ``{"text": ...}`` dicts as a dataset."""

    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.items):
            raise IndexError(index)
        return dict(self.items[index])

    @property
    def texts(self) -> list[str]:
        return [item["text"] for item in self.items]


def _check(name: str, split: str, limit: int | None) -> None:
    if split not in SPLITS:
        raise ZooError(f"dataset {name!r}: split must be one of {SPLITS}, got {split!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ZooError(f"dataset {name!r}: limit must be a non-negative integer, got {limit!r}")


def split_items(items: list[dict], split: str, seed: int, limit: int | None, group: str | None = None) -> TextItems:
    """Shuffle by ``seed`` and cut 80/10/10 (within each ``group`` value, so every language is in every split)."""
    groups: dict = {}
    for item in items:
        groups.setdefault(item.get(group) if group else None, []).append(item)
    chosen: list[dict] = []
    for salt, key in enumerate(sorted(groups, key=str)):
        members = groups[key]
        order = np.random.default_rng([seed, salt]).permutation(len(members))
        n_val = n_test = len(members) // 10
        cut = {
            "train": order[n_val + n_test :],
            "val": order[:n_val],
            "test": order[n_val : n_val + n_test],
            "all": order,
        }[split]
        chosen += [members[i] for i in cut]
    if len(groups) > 1:  # interleave groups by seed so a limit keeps a mixture
        chosen = [chosen[i] for i in np.random.default_rng([seed, 999]).permutation(len(chosen))]
    return TextItems(chosen if limit is None else chosen[:limit])


# -- fortunes ------------------------------------------------------------------------------------------


def _fortune_files(lang: str) -> list[Path]:
    if lang == "en":  # the `fortunes` package: record files at the top level
        names = [p for p in FORTUNES_DIR.iterdir() if p.is_file() and not p.is_symlink()]
        return sorted(p for p in names if p.suffix not in (".dat", ".u8") and p.name not in _NOT_ENGLISH)
    files: list[Path] = []
    for name in FORTUNE_SOURCES[lang]:
        path = FORTUNES_DIR / name
        if path.is_dir():
            files += [p for p in sorted(path.iterdir()) if p.is_file() and p.suffix not in (".dat", ".u8")]
        elif path.is_file():
            files.append(path)
    return files


def _strip_ansi(text: str) -> str:
    # Some escapes are broken by others nested inside them ("\x1b[;\x1b[34;1mm"): strip until none is left.
    while True:
        cleaned = _ANSI.sub("", text)
        if cleaned == text:
            return cleaned
        text = cleaned


def fortune_records(lang: str) -> list[str]:
    """All records of one language, in file order."""
    files = _fortune_files(lang)
    if not files:
        package = "fortunes" if lang == "en" else f"fortunes-{'br' if lang == 'pt' else lang}"
        raise ZooError(f"dataset 'fortunes': no {lang!r} files under {FORTUNES_DIR}; `apt-get install {package}`")
    records = []
    for path in files:
        text = _strip_ansi(path.read_bytes().decode("utf-8", "replace"))
        records += [r.strip("\n") for r in re.split(r"^%$", text, flags=re.M)]
    # The packages repeat some quotes across files; one copy each keeps test records out of train.
    return list(dict.fromkeys(r for r in records if r.strip()))


def fortunes(lang: str = "en", split: str = "train", seed: int = 0, limit: int | None = None) -> TextItems:
    """Fortune records in one or more languages (``en``, ``de``, ``en+zh``, ``all``)."""
    _check("fortunes", split, limit)
    known = ["en", *FORTUNE_SOURCES]
    langs = known if lang == "all" else str(lang).split("+")
    unknown = [code for code in langs if code not in known]
    if unknown:
        raise ZooError(f"dataset 'fortunes': unknown language(s) {unknown}; known: {', '.join(known)} or 'all'")
    items = [{"text": record, "lang": code} for code in langs for record in fortune_records(code)]
    return split_items(items, split, seed, limit, group="lang")


# -- the standard library ------------------------------------------------------------------------------


def stdlib_code(split: str = "train", seed: int = 0, limit: int | None = None, tests: bool = False) -> TextItems:
    """The running interpreter's standard library sources, one ``.py`` file per item."""
    _check("stdlib-code", split, limit)
    root = Path(sysconfig.get_paths()["stdlib"])
    items = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if parts[0] in ("site-packages", "dist-packages") or (
            not tests and any(p in ("test", "tests", "idle_test") for p in parts)
        ):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):  # a few test fixtures are deliberately not UTF-8
            continue
        if text.strip():
            items.append({"text": text, "lang": "python", "path": str(path.relative_to(root))})
    if not items:
        raise ZooError(f"dataset 'stdlib-code': no .py files under {root}")
    return split_items(items, split, seed, limit)


# -- user files ------------------------------------------------------------------------------------------

UNITS = ("file", "line", "paragraph")


def _expand(path: str) -> list[Path]:
    candidate = Path(path).expanduser()
    if candidate.is_dir():
        return sorted(p for p in candidate.rglob("*") if p.suffix.lower() in (".txt", ".jsonl"))
    if candidate.is_file():
        return [candidate]
    return sorted(Path(p) for p in glob.glob(str(candidate), recursive=True) if Path(p).is_file())


def text_files(
    path: str,
    split: str = "all",
    seed: int = 0,
    limit: int | None = None,
    unit: str = "file",
    field: str = "text",
) -> TextItems:
    """Items from ``.txt`` / ``.jsonl`` files (a file, a folder or a glob)."""
    _check("text-files", split, limit)
    if unit not in UNITS:
        raise ZooError(f"dataset 'text-files': unit must be one of {UNITS}, got {unit!r}")
    files = _expand(str(path))
    if not files:
        raise ZooError(f"dataset 'text-files': {path} matches no .txt or .jsonl file")
    items: list[dict] = []
    for file in files:
        try:
            content = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ZooError(f"dataset 'text-files': {file} is not UTF-8 ({err.reason} at byte {err.start})") from None
        if file.suffix.lower() == ".jsonl":
            items += _jsonl_items(file, content, field)
        elif unit == "file":
            items.append({"text": content})
        elif unit == "line":
            items += [{"text": line} for line in content.splitlines() if line.strip()]
        else:
            items += [{"text": block.strip("\n")} for block in re.split(r"\n\s*\n", content) if block.strip()]
    return split_items(items, split, seed, limit)


def _jsonl_items(file: Path, content: str, field: str) -> list[dict]:
    items = []
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ZooError(f"dataset 'text-files': {file} line {number} is not JSON ({err.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get(field), str):
            raise ZooError(f"dataset 'text-files': {file} line {number} has no string field {field!r}")
        items.append({"text": record[field]})
    return items


def text_mix(sources: list, split: str = "train", seed: int = 0, limit: int | None = None) -> TextItems:
    """Several text dataset specs as one dataset (each built with this split and seed)."""
    from zoo.data import load_dataset

    if isinstance(sources, str):
        sources = [s for s in sources.split("+") if s]
    if not sources:
        raise ZooError("dataset 'text-mix': sources must name at least one text dataset spec")
    _check("text-mix", split, limit)
    items: list[dict] = []
    for spec in sources:
        part = load_dataset(spec, split=split, seed=seed)
        items += [part[i] for i in range(len(part))]
    if any("text" not in item for item in items[:1]):
        raise ZooError(f"dataset 'text-mix': {sources} yield items without 'text'")
    order = np.random.default_rng([seed, 7]).permutation(len(items))
    mixed = [items[i] for i in order]
    return TextItems(mixed if limit is None else mixed[:limit])


# -- pycountry's gettext catalogs: short parallel strings ----------------------------------------------------

CATALOG_DOMAINS = ("iso3166-1", "iso639-3", "iso4217")


def read_mo(path: str | Path) -> dict[str, str]:
    """A gettext ``.mo`` catalog as {English msgid: translation} (entries with a translation only)."""
    data = Path(path).read_bytes()
    if len(data) < 20:
        raise ZooError(f"{path}: too short to be a gettext .mo file")
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic == 0x950412DE else ">" if magic == 0xDE120495 else None
    if endian is None:
        raise ZooError(f"{path}: not a gettext .mo file (bad magic number)")
    count, originals, translations = struct.unpack(endian + "III", data[8:20])
    catalog = {}
    for k in range(count):
        olen, ooff = struct.unpack(endian + "II", data[originals + 8 * k : originals + 8 * k + 8])
        tlen, toff = struct.unpack(endian + "II", data[translations + 8 * k : translations + 8 * k + 8])
        source = data[ooff : ooff + olen].decode("utf-8", "replace")
        target = data[toff : toff + tlen].decode("utf-8", "replace")
        if source and target and "\x00" not in source:  # skip the header and plural forms
            catalog[source] = target
    return catalog


def catalog_languages(domain: str = "iso3166-1") -> list[str]:
    """Locales with a pycountry catalog for ``domain``."""
    import pycountry

    root = Path(pycountry.LOCALES_DIR)
    return sorted(p.parent.parent.name for p in root.glob(f"*/LC_MESSAGES/{domain}.mo"))


def pycountry_parallel(
    langs: str = "all",
    split: str = "all",
    seed: int = 0,
    limit: int | None = None,
    domain: str = "iso3166-1",
    include_english: bool = True,
) -> TextItems:
    """Translations of pycountry's names with their English source (``ref``) and a shared ``id``."""
    import pycountry

    _check("pycountry-parallel", split, limit)
    if domain not in CATALOG_DOMAINS:
        raise ZooError(f"dataset 'pycountry-parallel': domain must be one of {CATALOG_DOMAINS}, got {domain!r}")
    available = catalog_languages(domain)
    chosen = available if langs == "all" else [c for c in str(langs).split("+") if c != "en"]
    unknown = [c for c in chosen if c not in available]
    if unknown:
        raise ZooError(f"dataset 'pycountry-parallel': no {domain} catalog for {unknown}; known: {' '.join(available)}")
    root = Path(pycountry.LOCALES_DIR)
    catalogs = {lang: read_mo(root / lang / "LC_MESSAGES" / f"{domain}.mo") for lang in chosen}
    sources = sorted({source for catalog in catalogs.values() for source in catalog})
    ids = {source: i for i, source in enumerate(sources)}
    items = [
        {"text": target, "lang": lang, "ref": source, "id": ids[source]}
        for lang, catalog in catalogs.items()
        for source, target in sorted(catalog.items())
    ]
    if include_english:
        items += [{"text": source, "lang": "en", "ref": source, "id": ids[source]} for source in sources]
    return split_items(items, split, seed, limit, group="lang")
