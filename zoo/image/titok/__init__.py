"""TiTok-style 1D image tokenizers (https://arxiv.org/abs/2406.07550): K latent tokens per image.

``vit.py`` the ViT pieces shared with ``zoo.image.seed`` (patchify, timm block stacks, pixel head, checks);
``model.py`` ``TiTokTokenizer``.
"""

from zoo.image.titok.model import TiTokTokenizer

__all__ = ["TiTokTokenizer"]
