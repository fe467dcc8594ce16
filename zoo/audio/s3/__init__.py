"""Supervised semantic speech tokens (S3-style, CosyVoice https://arxiv.org/abs/2407.04051) trained here,
and the published S3Tokenizer (``zoo.audio.s3.published``)."""

from zoo.audio.s3.model import S3Tokenizer

__all__ = ["S3Tokenizer"]
