"""BEATs' audio SSL model: masked patch prediction of a tokenizer's discrete labels.

BEATs (https://arxiv.org/abs/2212.09058, Sec. 3.3): 75% of the patches are masked; a ViT encoder sees
only the visible ones; a label predictor gets the encoder outputs with mask tokens at the masked
positions and is trained with cross-entropy on the masked positions against the labels a tokenizer
gives the unmasked clip: ``L = -sum_{t in M} log p(z_t | X^U)``. The tokenizer (``label_tokenizer``:
a checkpoint folder or registry name) is frozen and is not part of the saved model.

As a tokenizer, the SSL model's tokens are its predicted labels for the whole (unmasked) clip, in
the label tokenizer's vocabulary; ``features`` gives the encoder's last layer, for probes and as the
teacher of the next tokenizer. The label predictor is a light Transformer (3 layers at paper scale,
as ESPnet's OpenBEATs pre-training predictor).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import repeat
from torch import nn

from zoo.audio.beats.base import BEATsModel, audio_batch
from zoo.audio.beats.frontend import BEATS_FBANK_MEAN, BEATS_FBANK_STD
from zoo.audio.beats.transformer import PatchPositions, TransformerEncoder, init_weights
from zoo.errors import ZooError


def random_visible(pad: torch.Tensor, mask_ratio: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Choose visible patches at random, ``round(len * (1 - mask_ratio))`` (at least 1) per item.

    Returns ``visible_index [B, V]`` (positions of the visible patches), ``visible_pad [B, V]`` (True
    where an item has fewer visible patches than the widest) and ``masked [B, N]`` (valid and hidden).
    """
    lengths = (~pad).sum(1)
    keep = (lengths.float() * (1 - mask_ratio)).round().long().clamp(min=1)
    keep = torch.minimum(keep, lengths)
    noise = torch.rand(pad.shape, device=pad.device).masked_fill(pad, float("inf"))
    order = noise.argsort(dim=1)  # valid patches first, in random order
    width = max(int(keep.max()), 1) if len(keep) else 1
    visible_index = order[:, :width]
    visible_pad = torch.arange(width, device=pad.device).unsqueeze(0) >= keep.unsqueeze(1)
    visible = torch.zeros_like(pad)
    visible.scatter_(1, visible_index, ~visible_pad)
    return visible_index, visible_pad, ~visible & ~pad


class BEATsSSL(BEATsModel):
    """The BEATs audio SSL model (a ViT over fbank patches) with its label predictor.

    Args:
        vocab_size: size of the label tokenizer's vocabulary (1024).
        dim, depth, heads, mlp_ratio: the encoder (paper: 768, 12, 12, 4.0).
        patch_dim, patch_size: patch embedding width (512) and patch side (16).
        predictor_dim, predictor_depth, predictor_heads: the label predictor (paper scale: 768, 3, 12).
        mask_ratio: fraction of patches hidden from the encoder in training (0.75).
        dropout: dropout of attention and projections (0.1).
        label_smoothing: of the cross-entropy.
        label_tokenizer: checkpoint folder or registry name giving the training labels (training only).
        fbank_mean, fbank_std: front-end normalisation.
    """

    training_only = ("label_tokenizer",)

    def __init__(
        self,
        vocab_size: int = 1024,
        dim: int = 768,
        depth: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        patch_dim: int = 512,
        patch_size: int = 16,
        predictor_dim: int = 768,
        predictor_depth: int = 3,
        predictor_heads: int = 12,
        mask_ratio: float = 0.75,
        dropout: float = 0.1,
        label_smoothing: float = 0.0,
        label_tokenizer: str | None = None,
        fbank_mean: float = BEATS_FBANK_MEAN,
        fbank_std: float = BEATS_FBANK_STD,
    ):
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ZooError(f"BEATsSSL: mask_ratio must lie in (0, 1), got {mask_ratio}")
        if dim % heads or predictor_dim % predictor_heads:
            raise ZooError(f"BEATsSSL: dim {dim} / predictor_dim {predictor_dim} must divide by their head counts")
        self.mask_ratio = mask_ratio
        self.label_smoothing = label_smoothing
        self._vocab_size = vocab_size
        self._init_encoder(patch_size, patch_dim, dim, depth, heads, mlp_ratio, dropout, fbank_mean, fbank_std)
        self.predictor_in = nn.Linear(dim, predictor_dim)
        self.mask_token = nn.Parameter(torch.zeros(predictor_dim))
        self.predictor_positions = PatchPositions(predictor_dim, self.bands)
        self.predictor = TransformerEncoder(predictor_dim, predictor_depth, predictor_heads, mlp_ratio, dropout)
        self.head = nn.Linear(predictor_dim, vocab_size)
        init_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def codebook(self) -> torch.Tensor:
        """The label classifier's weight rows, one vector per label ``[V, predictor_dim]``."""
        return self.head.weight

    # -- encoder and predictor --------------------------------------------------------------------------
    def predict(self, encoded: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """Label logits ``[B, N, V]`` from predictor inputs ``[B, N, predictor_dim]`` (mask tokens included)."""
        hidden = encoded + self.predictor_positions(encoded.shape[1], encoded.device)
        return self.head(self.predictor(hidden, pad))

    def features(self, audio: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's last layer on the whole clip: ``([B, N, dim], patch lengths [B])``."""
        patches, patch_lengths, pad = self.embed_patches(audio, lengths)
        return self.encoder(patches, pad), patch_lengths

    def tokenize(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        patches, patch_lengths, pad = self.embed_patches(audio, lengths)
        logits = self.predict(self.predictor_in(self.encoder(patches, pad)), pad)
        return logits.argmax(dim=-1), patch_lengths

    # -- training -----------------------------------------------------------------------------------------
    def masked_prediction(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a random 25% of the patches, predict all: logits ``[B, N, V]`` and the masked positions ``[B, N]``."""
        patches, _, pad = self.embed_patches(audio, lengths)
        visible_index, visible_pad, masked = random_visible(pad, self.mask_ratio)
        visible = patches.gather(1, repeat(visible_index, "b v -> b v d", d=patches.shape[-1]))  # [B, V, dim]
        encoded = self.predictor_in(self.encoder(visible, visible_pad))  # [B, V, predictor_dim]
        batch, num = pad.shape
        # Scatter the encoded patches back among mask tokens; padded visible slots go to a spare column.
        slots = self.mask_token.expand(batch, num + 1, -1).clone()
        target = visible_index.masked_fill(visible_pad, num)
        slots = slots.scatter(1, repeat(target, "b v -> b v d", d=slots.shape[-1]), encoded)
        return self.predict(slots[:, :num], pad), masked

    def training_losses(self, batch: dict, step: int) -> dict:
        audio, lengths = audio_batch(batch, type(self).__name__)
        labeller = self.frozen("label_tokenizer")
        if labeller.vocab_size != self.vocab_size:
            raise ZooError(
                f"BEATsSSL: vocab_size {self.vocab_size} differs from the label tokenizer's {labeller.vocab_size} "
                f"({self.config['label_tokenizer']}); set vocab_size: {labeller.vocab_size}"
            )
        labels = labeller.encode(audio, lengths).ids.to(self.device)  # [B, N], -1 at padding
        logits, masked = self.masked_prediction(audio, lengths)
        if labels.shape != masked.shape:
            raise ZooError(f"BEATsSSL: label tokenizer gives {labels.shape[1]} patches, the model {masked.shape[1]}")
        if not masked.any():
            raise ZooError("BEATsSSL: no clip in the batch is long enough for one patch (0.17 s at 16 kHz)")
        loss = F.cross_entropy(logits[masked], labels[masked], label_smoothing=self.label_smoothing)
        accuracy = (logits[masked].argmax(-1) == labels[masked]).float().mean()
        return {"loss": loss, "masked_accuracy": accuracy.detach()}

