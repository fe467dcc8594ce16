"""A learned byte-to-word pooling tokenizer ("Learn Your Tokens" / MAGNET line): docs/pooling.md.

``segments.py`` the boundary rule, ``model.py`` the byte encoder, decoder and boundary predictor,
``corrections.py`` the id layout (a code per segment, then keep / escape ids), ``tokenizer.py`` the tokenizer
(codes, spellings, training losses)."""

from zoo.text.pooling.tokenizer import PoolingTokenizer, SegmentEncoding

__all__ = ["PoolingTokenizer", "SegmentEncoding"]
