"""Small real corpora shared by the text tests (fortunes in 12 languages, stdlib code), cached per process."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=4)
def corpus(limit: int = 1500, split: str = "train") -> tuple[str, ...]:
    """Fortune records in every language plus a few standard-library files, mixed by seed."""
    from zoo.data import load_dataset

    quotes = load_dataset("fortunes", lang="all", split=split, limit=limit).texts
    code = load_dataset("stdlib-code", split=split, limit=max(1, limit // 100)).texts
    return tuple(quotes + code)


def held_out(limit: int = 300) -> list[str]:
    return list(corpus(limit, "test"))
