"""SEEDTokenizer: causal 1D image tokens trained to reconstruct and to discriminate (SEED, arXiv 2307.08041).

    image [B, 3, S, S] -> patches -> ViT encoder (timm blocks) -> patch features [B, N, W]
        -> causal Q-Former (L learned queries, causal self-attention, cross-attention to the patches) [B, L, W]
        -> Linear-Tanh-Linear to code_dim -> quantiser (zoo.quantize) -> ids [B, L]
    ids -> codes [B, L, code_dim] -> Linear-Tanh-Linear -> reconstructed causal embeddings e' [B, L, W]
        -> ViT decoder over [N mask tokens; e'] -> pixels                            (reconstruction head)
        -> LayerNorm(mean over tokens of e') -> linear -> class logits                (discrimination head)

SEED (v2) encodes with a frozen EVA-CLIP ViT and a BLIP-2 Q-Former under a causal mask, 32 queries, an MLP to
32-d and VQ over 8,192 codes; it reconstructs the causal embeddings (cosine) and regresses an unCLIP image
embedding that Stable Diffusion decodes, with an image-text contrastive term for discrimination. Offline, the
discrimination here is classification against the dataset's labels and the pixel decoder is a small ViT; the
cosine reconstruction of the causal embeddings is SEED's ``recon_s``. Training loss::

    loss = l1 |x - x'| + l2 (x - x')^2 (+ LPIPS, + GAN)                     (vq/autoencoder.py)
         + commitment * commit                                              (the quantiser's)
         + feature * mean(1 - cos(e', sg(e)))                               (causal embedding reconstruction)
         + discrimination * cross_entropy(logits, label)                    (batches with a ``label``)

Causal by construction: id i depends on the image and on queries 0..i only (``tests/image/test_seed.py``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ZooError
from zoo.image.seed.qformer import CausalQFormer
from zoo.image.titok.model import MaskTokenDecoder, SequenceTokenizer, map_to_sequence, sequence_to_map
from zoo.image.titok.vit import PatchEmbed, block_stack, checked_grid
from zoo.image.vq.autoencoder import PIXEL_LOSS_DEFAULTS
from zoo.quantize import Quantizer, codebook_perplexity
from zoo.tokenizer import TokenizerOutput

LOSS_DEFAULTS: dict[str, Any] = {**PIXEL_LOSS_DEFAULTS, "commitment": 0.25, "entropy": 0.1, "feature": 1.0,
                                 "discrimination": 0.5}


def tanh_mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    """SEED's Linear-Tanh-Linear between the Q-Former width and the code space (both directions)."""
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.Tanh(), nn.Linear(d_hidden, d_out))


class SEEDTokenizer(SequenceTokenizer):
    """Causal Q-Former image tokenizer with reconstruction and discrimination heads; ids ``[B, num_queries]``."""

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        width: int = 64,
        encoder_depth: int = 2,
        qformer_depth: int = 2,
        decoder_depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        num_queries: int = 32,
        num_classes: int = 10,
        quantizer: dict | None = None,
        loss: dict | None = None,
        seed: int = 0,
    ):
        if num_classes < 2:
            raise ZooError(f"num_classes: the discrimination head needs at least 2 classes, got {num_classes}")
        super().__init__(loss, LOSS_DEFAULTS)
        checked_grid(image_size, patch_size)
        self.image_size, self.patch_size = int(image_size), int(patch_size)
        self.downsample = self.patch_size
        self.num_tokens, self.num_classes = int(num_queries), int(num_classes)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.quantize = Quantizer(quantizer or {"kind": "vq"})
            if self.quantize.num_levels != 1:
                raise ZooError("quantizer: SEED's ids are [B, L]; a residual quantiser (kind 'rvq') is not supported")
            code_dim = self.quantize.code_dim
            self.patch_embed = PatchEmbed(image_size, patch_size, width)
            self.encoder = block_stack(width, encoder_depth, heads, mlp_ratio)
            self.encoder_norm = nn.LayerNorm(width)
            self.qformer = CausalQFormer(self.num_tokens, width, qformer_depth, heads, mlp_ratio)
            self.to_code = tanh_mlp(width, width, code_dim)
            self.from_code = tanh_mlp(code_dim, width, width)
            self.decoder = MaskTokenDecoder(image_size, patch_size, width, decoder_depth, heads, mlp_ratio,
                                            self.num_tokens, width)
            self.classifier = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, self.num_classes))
            self.build_discriminator()

    # -- contract (the rest: SequenceTokenizer) ----------------------------------------------------------------
    @torch.no_grad()
    def classify(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, L]`` -> class logits ``[B, num_classes]`` from the discrimination head."""
        return self.classifier(self.from_code(self.embed(ids)).mean(dim=1))

    # -- pieces ----------------------------------------------------------------------------------------------
    def causal_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """Images in ``[0, 1]`` -> the causal Q-Former's outputs ``[B, L, W]``."""
        patches = self.encoder_norm(self.encoder(self.patch_embed(x)))
        return self.qformer(patches)

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> query outputs in code space ``[B, code_dim, 1, L]`` before quantisation."""
        return sequence_to_map(self.to_code(self.causal_embeddings(x)))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.from_code(map_to_sequence(codes)))

    # -- the loss --------------------------------------------------------------------------------------------
    def training_losses(self, batch: dict, step: int) -> TokenizerOutput:
        if "image" not in batch:
            raise ZooError(f"SEEDTokenizer: batch has no 'image' entry (keys: {sorted(batch)})")
        return self._run(self._check_input(batch["image"]), step=step, labels=batch.get("label"))

    def _run(self, x: torch.Tensor, step: int | None, labels: torch.Tensor | None = None) -> TokenizerOutput:
        embeddings = self.causal_embeddings(x)  # [B, L, W]
        quantized = self.quantize(sequence_to_map(self.to_code(embeddings)))
        rebuilt = self.from_code(map_to_sequence(quantized.quantized))  # e' [B, L, W]
        reconstruction = self.decoder(rebuilt)
        terms = dict(quantized.losses)
        terms["feature"] = (1.0 - F.cosine_similarity(rebuilt, embeddings.detach(), dim=-1)).mean()
        logits = self.classifier(rebuilt.mean(dim=1))
        extras: dict[str, Any] = {"logits": logits}
        if labels is not None:
            labels = labels.to(logits.device).long()
            if labels.shape != (x.shape[0],) or labels.min() < 0 or labels.max() >= self.num_classes:
                raise ZooError(f"SEEDTokenizer: labels must be [B] integers in [0, {self.num_classes}), got shape "
                               f"{list(labels.shape)} and range [{labels.min().item()}, {labels.max().item()}]")
            terms["discrimination"] = F.cross_entropy(logits, labels)
            extras["accuracy"] = (logits.argmax(-1) == labels).float().mean().detach()
        losses = self.pixel_losses(x, reconstruction, terms, step)
        if "accuracy" in extras:
            losses["accuracy"] = extras["accuracy"]  # logged, not weighted: pixel_losses already summed "loss"
        ids = quantized.indices[:, 0]
        extras["perplexity"] = codebook_perplexity(ids.detach(), self.vocab_size)
        return TokenizerOutput(output=reconstruction, indices=ids, losses=losses, extras=extras)

    def extra_repr(self) -> str:
        return (f"image_size={self.image_size}, patch_size={self.patch_size}, queries={self.num_tokens}, "
                f"vocab_size={self.vocab_size}, classes={self.num_classes}")
