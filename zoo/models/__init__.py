"""Models that consume tokens: ``GPT``, a causal transformer over token ids (language model or token generator)."""

from zoo.models.gpt import GPT, filter_logits

__all__ = ["GPT", "filter_logits"]
