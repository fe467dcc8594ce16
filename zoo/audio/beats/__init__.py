"""BEATs (https://arxiv.org/abs/2212.09058): acoustic tokenizers and the masked SSL models they train.

=========================  =================================================================
``frontend.py``            16 kHz waveform -> normalised log-mel fbank patches
``transformer.py``         patch embedding, positions, the ViT encoder every model shares
``base.py``                ``BEATsModel``: encode with padding, frozen references, export
``random_projection.py``   the first iteration's random-projection tokenizer
``ssl.py``                 the masked SSL model that predicts a tokenizer's labels
``quantizer.py``           the l2-normalised EMA codebook of the distilled tokenizers
``tokenizer.py``           the distilled acoustic tokenizer (iterations 2, 3, ...)
=========================  =================================================================
"""

from zoo.audio.beats.random_projection import BEATsRandomTokenizer
from zoo.audio.beats.ssl import BEATsSSL
from zoo.audio.beats.tokenizer import BEATsTokenizer

__all__ = ["BEATsRandomTokenizer", "BEATsSSL", "BEATsTokenizer"]
