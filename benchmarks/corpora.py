"""Offline text categories for the analysis studies: Debian fortunes per language, and stdlib Python code.

Each category is a list of records (one fortune, or one source file), split into disjoint pools by a
seeded shuffle so that a tokenizer is never scored on text it was trained on.
"""

from __future__ import annotations

import random
import sysconfig
from pathlib import Path

FORTUNES = Path("/usr/share/games/fortunes")
DPKG_INFO = Path("/var/lib/dpkg/info")
# language -> Debian packages holding its fortune files
FORTUNE_PACKAGES = {
    "en": ("fortunes", "fortunes-min"),
    "de": ("fortunes-de",),
    "ru": ("fortunes-ru",),
    "es": ("fortunes-es",),
    "it": ("fortunes-it",),
    "pl": ("fortunes-pl",),
    "cs": ("fortunes-cs",),
    "zh": ("fortunes-zh",),
    "pt": ("fortunes-br",),
}


def fortune_files(language: str) -> list[Path]:
    """The fortune files a language's packages install (dpkg's file lists), without index files."""
    files: dict[Path, Path] = {}
    for package in FORTUNE_PACKAGES[language]:
        listing = DPKG_INFO / f"{package}.list"
        if not listing.is_file():
            raise FileNotFoundError(f"{listing}: install the Debian package {package} (apt-get install {package})")
        for line in listing.read_text().splitlines():
            path = Path(line)
            if path.is_relative_to(FORTUNES) and path.suffix not in (".dat", ".u8") and path.is_file():
                files.setdefault(path.resolve(), path)
    return sorted(files.values())


def fortune_records(language: str) -> list[str]:
    """One string per fortune (records are separated by lines holding only ``%``)."""
    records = []
    for path in fortune_files(language):
        text = path.read_text(encoding="utf-8", errors="replace")
        records.extend(r.strip("\n") + "\n" for r in text.split("\n%\n") if r.strip())
    return records


def stdlib_code_records() -> list[str]:
    """The Python standard library's own modules (tests and site-packages excluded), one string per file."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [
        p for p in sorted(root.rglob("*.py")) if not ({"test", "tests", "site-packages", "idle_test"} & set(p.parts))
    ]
    return [p.read_text(encoding="utf-8", errors="replace") for p in files]


def category_records(name: str) -> list[str]:
    return stdlib_code_records() if name == "code" else fortune_records(name)


def split_pools(records: list[str], fractions: tuple[float, ...], seed: int = 0) -> list[list[str]]:
    """Disjoint pools holding about ``fractions`` of the records' bytes, after a seeded shuffle."""
    shuffled = records[:]
    random.Random(seed).shuffle(shuffled)
    total = sum(len(r.encode()) for r in shuffled)
    pools: list[list[str]] = [[] for _ in fractions]
    bounds = [total * sum(fractions[: i + 1]) for i in range(len(fractions))]
    seen, pool = 0, 0
    for record in shuffled:
        while pool < len(pools) - 1 and seen >= bounds[pool]:
            pool += 1
        pools[pool].append(record)
        seen += len(record.encode())
    return pools


def take_bytes(records: list[str], num_bytes: int, seed: int = 0) -> str:
    """About ``num_bytes`` of whole records in a seeded order, cycling through them again if needed."""
    if not records:
        raise ValueError("no records to take text from")
    rng = random.Random(seed)
    order = records[:]
    rng.shuffle(order)
    out, size, i = [], 0, 0
    while size < num_bytes:
        record = order[i % len(order)]
        out.append(record)
        size += len(record.encode())
        i += 1
    return "".join(out)
