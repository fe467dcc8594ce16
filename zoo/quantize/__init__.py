"""Quantisers: one adapter over vector-quantize-pytorch (``quantizer.py``) and RobusTok's latent
perturbation (``perturb.py``), which training and the pFID metric share."""

from zoo.quantize.quantizer import Quantizer, QuantizerOutput, codebook_perplexity, quantizer_options

__all__ = ["Quantizer", "QuantizerOutput", "codebook_perplexity", "quantizer_options"]
