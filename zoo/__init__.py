"""zoo: discrete tokenizers for text, images and audio behind one interface.

    >>> import zoo
    >>> tok = zoo.load("byte")
    >>> tok.decode(tok.encode("héllo"))
    'héllo'
"""

from __future__ import annotations

__version__ = "0.1.0"

from pathlib import Path

from zoo import registry
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


def load(name_or_dir: str | Path, pretrained: bool = False, **overrides):
    """Build a tokenizer by registry name, or load a ``save_pretrained`` folder.

    Registry entries may also name a recipe's other products (SSL models, generators); they load
    the same way.

    Args:
        name_or_dir: a registry name (``"vq-f8-robust"``), a checkpoint folder holding
            ``config.json``, or ``"file:PATH"`` for an external tokenizer file.
        pretrained: load the entry's shipped weights (verified by sha256). Without it a network
            starts from its seeded initialisation.
        overrides: constructor arguments replacing the entry's config.
    """
    from zoo.pretrained import import_target, read_config

    text = str(name_or_dir)
    if text.startswith("file:"):
        from zoo.text.external import load_file

        return load_file(text[len("file:"):], **overrides)
    path = Path(text).expanduser()
    if path.is_dir():
        record = read_config(path)
        cls = import_target(record["target"])
        model = cls.from_pretrained(path, **overrides)
        if hasattr(model, "eval"):  # a loaded folder is ready to use, like a registry entry
            model.eval()
        return model
    if "/" in text or text.startswith("."):
        raise ZooError(f"{text}: no such checkpoint folder (expected a folder holding config.json, or a registry name)")
    entry = registry.get(text)
    cls = import_target(entry.target)
    model = cls(**{**entry.config, **overrides})
    if pretrained:
        if entry.weights is not None:
            from zoo.hub import resolve_weights

            model.load_weights(resolve_weights(entry.weights["path"], entry.weights.get("sha256")))
        elif entry.needs_training:
            hint = f" train it with `zoo train {entry.recipe}`" if entry.recipe else ""
            raise ZooError(f"{text!r} ships no pretrained weights;{hint or ' use pretrained=False'}")
    if hasattr(model, "eval"):
        model.eval()
    return model


def list_tokenizers(pattern: str = "*", modality: str | None = None, pretrained: bool | None = None) -> list[str]:
    """Registry names matching a wildcard pattern, in natural order (``vq-f8`` before ``vq-f16``)."""
    return registry.default_registry().names(pattern, modality=modality, pretrained=pretrained)


def info(name: str) -> dict:
    """Everything the registry records about one entry."""
    return registry.get(name).as_dict()
