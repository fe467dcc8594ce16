"""The one resolver: a registry name, a checkpoint folder, ``file:PATH`` or ``hf://...`` -> a tokenizer.

Every part of the zoo that takes "a tokenizer" from a user, a recipe or a suite (``zoo.load``, the CLI,
evaluation, token datasets, frozen teachers, BEATs' references, vocabulary analysis) asks here, so the
rules are written once:

=====================  =========================================================================
``NAME``               a registry entry; with ``pretrained=None`` its shipped weights are loaded
                       when it has them (a ready tokenizer), else its seeded initialisation
``FOLDER``             a ``save_pretrained`` folder (``config.json`` + weights), loaded as saved
``file:PATH``          a tokenizer file in another format (``tokenizer.json``, ``.tiktoken``, ``.model``)
``hf://ORG/REPO/FILE`` the same, fetched into ``$ZOO_CACHE`` (offline: one error naming where to put it)
an object             a tokenizer built in Python, used as it is
=====================  =========================================================================

Families are imported through their registered ``target`` strings, never named here, so the ground
floor stays below every family.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ZooError

# External text formats; a lazy string, so this ground-floor module never imports a family.
_EXTERNAL_FILE_LOADER = "zoo.text.external:load_file"


@dataclass
class Resolved:
    """A tokenizer and where it came from (what results files record)."""

    tokenizer: Any
    source: str  # "registry:NAME", the folder or file as given, or "object"
    entry: Any = None  # the registry Entry, for names
    folder: Path | None = None  # the checkpoint folder, for folders
    pretrained: bool | None = None  # for names: whether shipped weights were loaded


def looks_like_path(text: str) -> bool:
    """Registry names never hold '/' or start with '.' or '~': anything that does is meant as a path."""
    return "/" in text or text.startswith((".", "~")) or "\\" in text


def resolve(spec: Any, pretrained: bool | None = None, trust_remote_code: bool = False, verify: bool = True,
            dtype_cast: bool = False, **overrides) -> Resolved:
    """Build the tokenizer ``spec`` names (see the module docstring); ``overrides`` replace config values.

    ``verify``: check a folder's files against the sha256 its ``config.json`` records; ``dtype_cast``: cast
    weights stored in another dtype to the network's instead of refusing them."""
    from zoo import registry
    from zoo.pretrained import from_folder

    if not isinstance(spec, (str, Path)):
        if hasattr(spec, "encode") and hasattr(spec, "modality"):
            if overrides:
                raise ZooError(f"{type(spec).__name__}: a tokenizer object takes no overrides, got {sorted(overrides)}")
            return Resolved(spec, "object")
        raise ZooError(f"tokenizer {spec!r}: expected a registry name, a checkpoint folder, 'file:PATH', "
                       "'hf://ORG/REPO/FILE' or a tokenizer object")
    text = str(spec)
    if text.startswith("file:"):
        return Resolved(_load_external(text[len("file:"):], **overrides), text)
    if text.startswith("hf://"):
        from zoo.hub import resolve_weights

        return Resolved(_load_external(resolve_weights(text), **overrides), text)
    path = Path(text).expanduser()
    if path.is_dir():
        tokenizer = from_folder(path, trust_remote_code=trust_remote_code, verify=verify, dtype_cast=dtype_cast,
                                **overrides)
        return Resolved(_ready(tokenizer), text, folder=path)
    if looks_like_path(text) or isinstance(spec, Path):
        raise ZooError(f"{text}: no such checkpoint folder (expected a folder holding config.json, or a registry name)")
    entry = registry.get(text)
    model = build_entry(entry, trust_remote_code=trust_remote_code, **overrides)
    use_weights = entry.pretrained if pretrained is None else bool(pretrained)
    if use_weights:
        if entry.weights is not None:
            from zoo.hub import resolve_entry_weights

            weights = resolve_entry_weights(entry.weights)
            model.load_weights(weights, dtype_cast=dtype_cast)
        elif entry.needs_training:
            hint = f" train it with `zoo train {entry.recipe}`" if entry.recipe else " use pretrained=False"
            raise ZooError(f"{text!r} ships no pretrained weights;{hint}")
    return Resolved(_ready(model), f"registry:{text}", entry=entry, pretrained=use_weights and entry.pretrained)


def build_entry(entry, trust_remote_code: bool = False, **overrides):
    """A registry entry's object from its config (no weights)."""
    from zoo.pretrained import Pretrained, build_checked
    from zoo.targets import resolve_class

    where = f"{entry.source}: entry {entry.name!r}"
    cls = resolve_class(entry.target, base=Pretrained, where=where,
                        trust_remote_code=trust_remote_code or getattr(entry, "trusted", False))
    return build_checked(cls, {**entry.config, **overrides}, where)


def load_tokenizer(spec: Any, pretrained: bool | None = None, *, frozen: bool = False, modality: str | None = None,
                   owner: str | None = None, trust_remote_code: bool = False, **overrides):
    """``resolve(...).tokenizer``, optionally frozen (eval mode, no gradients) and of one modality.

    ``owner`` names who asked (``"teacher"``, ``"image-tokens"``), so an error says whose input was wrong.
    """
    try:
        tokenizer = resolve(spec, pretrained=pretrained, trust_remote_code=trust_remote_code, **overrides).tokenizer
    except ZooError as err:
        raise ZooError(f"{owner}: {err}") if owner else err from None
    if modality is not None and getattr(tokenizer, "modality", None) != modality:
        raise ZooError(f"{owner or 'tokenizer'}: {str(spec)!r} is a {getattr(tokenizer, 'modality', '?')} "
                       f"tokenizer; expected a {modality} tokenizer")
    if frozen and hasattr(tokenizer, "requires_grad_"):
        tokenizer.eval().requires_grad_(False)
    return tokenizer


def _ready(model):
    if hasattr(model, "eval"):  # a loaded tokenizer is ready to use: dropout off, batch statistics fixed
        model.eval()
    return model


def _load_external(path, **overrides):
    from zoo.targets import import_target

    return import_target(_EXTERNAL_FILE_LOADER)(path, **overrides)
