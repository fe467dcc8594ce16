"""Open-MAGVIT2's lookup-free (LFQ) image tokenizer, ported from the authors' code (no maintained package has it)."""

from zoo.image.magvit2.tokenizer import Magvit2Tokenizer

__all__ = ["Magvit2Tokenizer"]
