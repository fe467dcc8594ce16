"""Text tokenizers: ``str -> list[int]``, lossless."""
