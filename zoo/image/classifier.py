"""A small convolutional image classifier: the offline semantic teacher for Fashion-MNIST.

TokenFlow distils its semantic codebook from a frozen teacher's patch features (CLIP, SigLIP).
Offline there is no CLIP, so a recipe stage first trains this classifier on the dataset's labels; its
last feature map then plays the part of CLIP's patch tokens::

    image [B, 3, H, W] in [0, 1] -> stem conv -> residual levels (stride-2 between them)
        -> features [B, channels * channel_mult[-1], H / f, W / f]     (f = 2 ** (len(channel_mult) - 1))
        -> GroupNorm, SiLU, global mean -> linear -> logits [B, num_classes]

``features(images)`` returns that map (any zoo teacher spec may point at a checkpoint of this class);
``training_losses`` is cross-entropy with label smoothing, logging accuracy.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ZooError
from zoo.image.vq.vqgan import ResBlock, group_norm
from zoo.pretrained import PretrainedModule
from zoo.tokenizer import check_images


class ImageClassifier(PretrainedModule):
    """Residual CNN classifier whose last feature map is a teacher's patch grid (see the module docstring)."""

    modality: ClassVar[str] = "image"

    def __init__(
        self,
        num_classes: int = 10,
        channels: int = 32,
        channel_mult: tuple[int, ...] = (1, 2, 4),
        num_res_blocks: int = 1,
        dropout: float = 0.1,
        label_smoothing: float = 0.1,
        seed: int = 0,
    ):
        super().__init__()
        channel_mult = [int(m) for m in channel_mult]
        if num_classes < 2:
            raise ZooError(f"num_classes: expected at least 2 classes, got {num_classes}")
        if not channel_mult or any(m < 1 for m in channel_mult):
            raise ZooError(f"channel_mult: expected positive multipliers, got {channel_mult}")
        self.downsample = 2 ** (len(channel_mult) - 1)
        self.feature_dim = channels * channel_mult[-1]
        self.label_smoothing = float(label_smoothing)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.stem = nn.Conv2d(3, channels, 3, padding=1)
            layers: list[nn.Module] = []
            width = channels
            for level, mult in enumerate(channel_mult):
                for _ in range(num_res_blocks):
                    layers.append(ResBlock(width, channels * mult))
                    width = channels * mult
                if level < len(channel_mult) - 1:
                    layers.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
            self.body = nn.Sequential(*layers)
            self.norm = group_norm(width)
            self.dropout = nn.Dropout(dropout)
            self.head = nn.Linear(width, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in ``[0, 1]`` -> feature map ``[B, feature_dim, H / f, W / f]``."""
        x = check_images(images).to(self.device)
        return self.body(self.stem(2.0 * x - 1.0))

    def pooled_features(self, images: torch.Tensor) -> torch.Tensor:
        """The pre-logit embedding ``[B, feature_dim]``: normalised, activated, globally averaged features
        (what FID reads from a classifier, as Inception's pool3)."""
        return F.silu(self.norm(self.features(images))).mean(dim=(2, 3))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.pooled_features(images)))

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class ids ``[B]``."""
        return self.logits(images).argmax(dim=-1)

    def training_losses(self, batch: dict, step: int) -> dict:
        if "image" not in batch or "label" not in batch:
            raise ZooError(f"ImageClassifier: batches need 'image' and 'label' entries (keys: {sorted(batch)})")
        logits = self.logits(batch["image"])
        labels = batch["label"].to(logits.device).long()
        if labels.numel() and (labels.min() < 0 or labels.max() >= logits.shape[-1]):
            raise ZooError(f"ImageClassifier: labels must lie in [0, {logits.shape[-1]}), got "
                           f"[{labels.min().item()}, {labels.max().item()}]")
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        accuracy = (logits.argmax(-1) == labels).float().mean().detach()
        return {"loss": loss, "accuracy": accuracy}
