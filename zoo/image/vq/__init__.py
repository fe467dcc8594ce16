"""VQGAN-style image tokenizers: ``vqgan.py`` (conv encoder / decoder), ``losses.py`` (perceptual, patch GAN),
``autoencoder.py`` (what every pixel tokenizer with a GAN shares), ``model.py`` (``VQTokenizer``)."""

from zoo.image.vq.model import VQTokenizer

__all__ = ["VQTokenizer"]
