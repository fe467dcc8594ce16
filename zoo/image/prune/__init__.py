"""Zero-TPrune (https://arxiv.org/abs/2305.17328): zero-shot token pruning of a ViT from its attention graph.

``importance.py`` Weighted PageRank, EIR / VHF head combination, the I' -> S -> I selection and the random /
top-k-attention baselines; ``vit.py`` ``TokenPrunedViT``, the inference wrapper over any timm ViT, with its FLOP
count; ``classifier.py`` ``ViTClassifier``, the small timm ViT it is measured on (benchmarks/zero_tprune.py);
``tokenizers.py`` ``prune_encoder``, the same selection inside the TiTok / SEED tokenizers' ViT encoders
(benchmarks/zero_tprune_tokenizers.py).
"""

from zoo.image.prune.classifier import ViTClassifier
from zoo.image.prune.vit import TokenPrunedViT

__all__ = ["TokenPrunedViT", "ViTClassifier"]
