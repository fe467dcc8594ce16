"""SEED-style causal 1D image tokens (https://arxiv.org/abs/2307.08041).

``qformer.py`` the causal Q-Former (learned queries, causal self-attention, cross-attention to patch features);
``model.py`` ``SEEDTokenizer`` (ViT encoder, Q-Former, quantiser, reconstruction and discrimination heads).
"""

from zoo.image.seed.model import SEEDTokenizer

__all__ = ["SEEDTokenizer"]
