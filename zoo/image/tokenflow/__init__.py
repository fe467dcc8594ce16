"""TokenFlow (https://arxiv.org/abs/2412.03069): one index into a semantic and a pixel codebook.

``dual_codebook.py`` the shared-index quantiser (and its VAR-style multi-scale form); ``parts.py`` the
semantic encoder / decoder and the distillation loss; ``model.py`` ``TokenFlowTokenizer``.
"""

from zoo.image.tokenflow.model import TokenFlowTokenizer

__all__ = ["TokenFlowTokenizer"]
