"""Named things, looked up the same way everywhere: lazy ``"module:object"`` tables and did-you-mean.

Datasets, metrics and the registry's tokenizers are addressed by name. Each table maps a name to a
``"module:object"`` string that is imported only when the name is used (a text suite never imports
image code); an unknown name answers with the closest names.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from zoo.errors import ZooError


def suggest(name: str, known: Iterable[str], fallback: str | None = None) -> str:
    """``"did you mean 'a', 'b'?"`` for the known names closest to ``name`` (by spelling, then by substring)."""
    known = list(known)
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
    close += [k for k in sorted(known) if name and str(name) in k and k not in close][: 3 - len(close)]
    if close:
        return "did you mean " + ", ".join(repr(k) for k in close) + "?"
    return fallback or f"known: {', '.join(sorted(known))}"


class LazyTable(dict):
    """``{name: "module:object"}``; ``table.load(name)`` imports the object, an unknown name says what is known.

    A plain dict underneath, so tests and plugins add entries with ``table[name] = "pkg.mod:obj"``.
    """

    def __init__(self, kind: str, entries: dict[str, str]):
        super().__init__(entries)
        self.kind = kind

    def check(self, name: Any) -> str:
        if not isinstance(name, str) or name not in self:
            raise ZooError(f"unknown {self.kind} {name!r}; {suggest(str(name), self)}")
        return name

    def load(self, name: str) -> Any:
        from zoo.targets import import_target

        return import_target(self[self.check(name)], where=f"{self.kind} {name!r}")
