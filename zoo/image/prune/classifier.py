"""ViTClassifier: a small timm ViT image classifier (CLS-token pooling), the model Zero-TPrune is measured on.

    image [B, 3, S, S] in [0, 1] -> 2x - 1 -> timm VisionTransformer (patch p, CLS token, learned positions)
        -> logits [B, num_classes]

``vit`` is the plain timm module, so ``zoo.image.prune.TokenPrunedViT(classifier.vit, ...)`` prunes it; inputs to
the wrapped module are already scaled to [-1, 1] (``classifier.prepare(images)``).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from zoo.errors import ZooError
from zoo.image.titok.vit import checked_fixed_images, checked_grid
from zoo.pretrained import PretrainedModule


class ViTClassifier(PretrainedModule):
    """timm ViT classifier on square images (see the module docstring)."""

    modality: ClassVar[str] = "image"

    def __init__(self, image_size: int = 32, patch_size: int = 4, width: int = 64, depth: int = 6, heads: int = 4,
                 mlp_ratio: float = 4.0, num_classes: int = 10, label_smoothing: float = 0.1, seed: int = 0):
        super().__init__()
        checked_grid(image_size, patch_size)
        if num_classes < 2:
            raise ZooError(f"num_classes: expected at least 2 classes, got {num_classes}")
        self.image_size, self.label_smoothing = int(image_size), float(label_smoothing)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.vit = VisionTransformer(img_size=image_size, patch_size=patch_size, num_classes=num_classes,
                                         embed_dim=width, depth=depth, num_heads=heads, mlp_ratio=mlp_ratio,
                                         global_pool="token")

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Checked images in ``[0, 1]`` -> the ViT's input in ``[-1, 1]``."""
        return 2.0 * checked_fixed_images(images, self.image_size).to(self.device) - 1.0

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.vit(self.prepare(images))

    def training_losses(self, batch: dict, step: int) -> dict:
        if "image" not in batch or "label" not in batch:
            raise ZooError(f"ViTClassifier: batches need 'image' and 'label' entries (keys: {sorted(batch)})")
        logits = self.logits(batch["image"])
        labels = batch["label"].to(logits.device).long()
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return {"loss": loss, "accuracy": (logits.argmax(-1) == labels).float().mean().detach()}
