"""Models over tokens: ``GPT``, a causal transformer over token ids (language model), and ``TokenGenerator``,
a class-conditional GPT over a frozen image tokenizer's tokens (the generator behind gFID)."""

from zoo.generators.gpt import GPT, filter_logits

__all__ = ["GPT", "filter_logits"]
