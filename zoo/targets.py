"""Which classes a data file may name, and where old class paths live now.

Checkpoint folders (``config.json``), registry catalogs, recipes and nested module specs name the
class to build as a ``target`` string, ``"package.module:Class"``. Those files are data: a target read
from one resolves only to a class of the zoo package (a family, or a building block such as a teacher
network), never to a function and never to another package, unless the caller trusts that code
explicitly (``trust_remote_code=True``, ``allow_modules("mypkg")``, ``ZOO_TRUSTED_MODULES=mypkg,other`` or
``ZOO_TRUST_REMOTE_CODE=1`` for everything), as
transformers asks for ``trust_remote_code``. The check reads the string first, so nothing outside zoo is
imported before it is allowed.

``ALIASES`` maps every class path that an older zoo wrote into ``config.json`` to the class's home now,
so folders saved before a module moved keep loading.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from zoo.errors import ZooError

# Old "module:Class" -> new home; one line per moved class that a saved folder, recipe or catalog may name.
ALIASES: dict[str, str] = {
    "zoo.audio.beats_random:BEATsRandomTokenizer": "zoo.audio.beats.random_projection:BEATsRandomTokenizer",
    "zoo.audio.beats_ssl:BEATsSSL": "zoo.audio.beats.ssl:BEATsSSL",
    "zoo.audio.beats_tokenizer:BEATsTokenizer": "zoo.audio.beats.tokenizer:BEATsTokenizer",
    "zoo.image.vq:VQTokenizer": "zoo.image.vq.model:VQTokenizer",
    "zoo.image.tokenflow:TokenFlowTokenizer": "zoo.image.tokenflow.model:TokenFlowTokenizer",
    "zoo.image.tokenflow_parts:SemanticEncoder": "zoo.image.tokenflow.parts:SemanticEncoder",
    "zoo.image.tokenflow_parts:SemanticDecoder": "zoo.image.tokenflow.parts:SemanticDecoder",
    "zoo.models.gpt:GPT": "zoo.generators.gpt:GPT",
    "zoo.models.token_generator:TokenGenerator": "zoo.generators.token_generator:TokenGenerator",
}

TRUST_ENV = "ZOO_TRUST_REMOTE_CODE"
TRUSTED_MODULES_ENV = "ZOO_TRUSTED_MODULES"
_ZOO = "zoo"
_allowed_modules: set[str] = set()


def allow_modules(*prefixes: str) -> None:
    """Let data files name classes of these packages too (``allow_modules("mypkg")``): code you trust."""
    for prefix in prefixes:
        if not isinstance(prefix, str) or not prefix or prefix.startswith(".") or ":" in prefix:
            raise ZooError(f"allow_modules: expected package names such as 'mypkg', got {prefix!r}")
        _allowed_modules.add(prefix)


def disallow_modules(*prefixes: str) -> None:
    """Undo ``allow_modules``."""
    for prefix in prefixes:
        _allowed_modules.discard(prefix)


def canonical_target(target: str) -> str:
    """``target`` with an old class path replaced by its home now."""
    return ALIASES.get(target, target)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def is_trusted_module(module: str, trust_remote_code: bool = False) -> bool:
    """True when a data file may name a class of ``module``: zoo's own, or code the caller trusts."""
    if _within(module, _ZOO) or trust_remote_code or os.environ.get(TRUST_ENV, "0") not in ("", "0"):
        return True
    from_env = {p.strip() for p in os.environ.get(TRUSTED_MODULES_ENV, "").split(",") if p.strip()}
    return any(_within(module, prefix) for prefix in _allowed_modules | from_env)


def split_target(target: Any, where: str = "target") -> tuple[str, str]:
    if not isinstance(target, str):
        raise ZooError(f"{where}: expected a string 'package.module:Class', got {type(target).__name__}")
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr or ".." in module_name or module_name.startswith("."):
        raise ZooError(f"{where}: target {target!r} is not of the form 'package.module:Attribute'")
    return module_name, attr


def import_target(target: str, where: str = "target") -> Any:
    """Import ``"package.module:Attribute"`` from zoo's own tables (datasets, metrics): no trust check.

    Targets read from files go through ``resolve_class`` instead."""
    module_name, attr = split_target(canonical_target(target), where)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ZooError(f"{where}: target {target!r}: cannot import module {module_name!r} ({err})") from err
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ZooError(f"{where}: target {target!r}: module {module_name!r} has no attribute {attr!r}") from None
    return obj


def resolve_class(target: str, base: type | tuple[type, ...], where: str = "target",
                  trust_remote_code: bool = False) -> type:
    """The class a data file names, after the allow-list check (see the module docstring); it must derive from
    ``base`` (a zoo family: ``Pretrained``; a building block: ``torch.nn.Module``)."""
    module_name, _ = split_target(canonical_target(target), where)
    if not is_trusted_module(module_name, trust_remote_code):
        raise ZooError(
            f"{where}: target {target!r} is outside the zoo package, and a data file may name only zoo classes; "
            f"if you trust that code, pass trust_remote_code=True (CLI: --trust-remote-code), call "
            f"zoo.targets.allow_modules({module_name.split('.')[0]!r}) or set {TRUST_ENV}=1"
        )
    obj = import_target(target, where)
    if not isinstance(obj, type) or not issubclass(obj, base):
        names = " or ".join(b.__name__ for b in (base if isinstance(base, tuple) else (base,)))
        raise ZooError(f"{where}: target {target!r} is not a {names} class; a data file may name only zoo "
                       "families and building blocks, never a function")
    return obj


def import_library_class(target: str, install_hint: str) -> type:
    """``"package.module:Class"`` of a library a family wraps: a path the zoo's own code chose, never one read
    from a data file (those go through ``resolve_class``). Missing: one error with ``install_hint``."""
    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ZooError(f"{target}: not importable ({err}); {install_hint}") from None
