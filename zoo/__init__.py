"""zoo: discrete tokenizers for text, images and audio behind one interface.

    >>> import zoo
    >>> tok = zoo.load("byte")
    >>> tok.decode(tok.encode("héllo"))
    'héllo'
"""

from __future__ import annotations

from pathlib import Path

from zoo import registry
from zoo._version import __version__  # noqa: F401  (zoo.__version__)
from zoo.errors import ZooError

# The contract's classes pull in torch; they load on first use so `zoo list` starts fast.
_LAZY = {"AudioTokens", "NeuralTokenizer", "Tokenizer", "TokenizerOutput"}


def __getattr__(name: str):
    if name in _LAZY:
        from zoo import tokenizer

        return getattr(tokenizer, name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


__all__ = [
    "AudioTokens",
    "NeuralTokenizer",
    "Tokenizer",
    "TokenizerOutput",
    "ZooError",
    "info",
    "list_tokenizers",
    "load",
    "registry",
]


def load(name_or_dir: str | Path, pretrained: bool = False, trust_remote_code: bool = False, verify: bool = True,
         **overrides):
    """Build a tokenizer by registry name, or load a ``save_pretrained`` folder.

    Registry entries may also name a recipe's other products (SSL models, generators); they load
    the same way.

    Args:
        name_or_dir: a registry name (``"vq-f8-robust"``), a checkpoint folder holding
            ``config.json``, ``"file:PATH"`` for an external tokenizer file or ``"hf://ORG/REPO/FILE"``.
        pretrained: load the entry's shipped weights (verified by sha256). Without it a network
            starts from its seeded initialisation.
        trust_remote_code: let a folder's ``config.json`` (or a user catalog) name classes outside the
            zoo package; off by default, as those files are data (see ``zoo.targets``).
        verify: check a folder's files against the sha256 its ``config.json`` records.
        overrides: constructor arguments replacing the entry's config.
    """
    from zoo.loading import resolve

    return resolve(name_or_dir, pretrained=pretrained, trust_remote_code=trust_remote_code, verify=verify,
                   **overrides).tokenizer


def list_tokenizers(pattern: str = "*", modality: str | None = None, pretrained: bool | None = None) -> list[str]:
    """Registry names matching a wildcard pattern, in natural order (``vq-f8`` before ``vq-f16``)."""
    return registry.default_registry().names(pattern, modality=modality, pretrained=pretrained)


def info(name: str) -> dict:
    """Everything the registry records about one entry, and the pin its weights have (``zoo.hub.pin_of``)."""
    from zoo.hub import pin_of

    entry = registry.get(name)
    record = entry.as_dict()
    if entry.weights is not None:
        record["pin"] = pin_of(entry.weights["path"], entry.weights.get("sha256"), entry.weights.get("revision"))
    return record
