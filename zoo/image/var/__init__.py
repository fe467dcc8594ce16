"""VAR's multi-scale VQVAE (https://arxiv.org/abs/2404.02905), ported from the authors' code: no maintained
package implements it.

``network.py`` the encoder / decoder CNN (``models/basic_vae.py``); ``quantizer.py`` the multi-scale residual
quantiser with its phi convs (``models/quant.py``); ``model.py`` the VQVAE (``models/vqvae.py``) and
``VARTokenizer``, the zoo contract (ids ``[B, sum(s_k^2)]``); ``convert.py`` the authors' tensor names -> the
port's. Entries: ``registry/image-var.yaml``; notes and parity: ``docs/image-var.md``.
"""

from zoo.image.var.model import VARTokenizer

__all__ = ["VARTokenizer"]
