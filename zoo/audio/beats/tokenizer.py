"""BEATs' iteration-k acoustic tokenizer, self-distilled from the previous iteration's SSL model.

BEATs (https://arxiv.org/abs/2212.09058, Sec. 3.2.2; ``Tokenizers.py``): a ViT encoder over patches,
then Linear -> Tanh -> Linear to the code dimension, then the normalised-EMA VQ (1024 x 256, k-means
init). In training, a 3-layer Transformer estimator reads the quantized vectors and predicts the
teacher SSL model's last layer; the objective is
``max sum_t cos(o_t, o^_t) - ||sg[l2(e_t)] - l2(v)||^2 - ||l2(e_t) - sg[l2(v)]||^2``: cosine distillation
plus the commitment term (the codebook term is the EMA update).

The teacher (``teacher``: a checkpoint folder or registry name) is frozen and never saved; the estimator
exists only while a teacher is configured, and ``save_pretrained`` exports the tokenizer without both.

``target_norm="batch"`` (not in BEATs, off by default) standardises each teacher channel over the batch's
valid patches before the cosine. A small teacher's features share one dominant direction (cosine ~0.8
with their mean), so the raw target is met by a handful of codes and the codebook collapses; without
the shared part the codes must carry what differs between patches (as data2vec normalises its targets).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.audio.beats.base import BEATsModel, audio_batch, reference_config
from zoo.audio.beats.frontend import BEATS_FBANK_MEAN, BEATS_FBANK_STD
from zoo.audio.beats.quantizer import NormEMAVectorQuantizer
from zoo.audio.beats.transformer import PatchPositions, TransformerEncoder, init_weights
from zoo.errors import ZooError


class Estimator(nn.Module):
    """Quantized vectors ``[B, N, code_dim]`` -> predicted teacher features ``[B, N, teacher_dim]``."""

    def __init__(self, code_dim: int, dim: int, depth: int, heads: int, teacher_dim: int, bands: int, mlp_ratio: float):
        super().__init__()
        self.proj_in = nn.Linear(code_dim, dim)
        self.positions = PatchPositions(dim, bands)
        self.blocks = TransformerEncoder(dim, depth, heads, mlp_ratio)
        self.proj_out = nn.Linear(dim, teacher_dim)

    def forward(self, quantized: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        hidden = self.proj_in(quantized) + self.positions(quantized.shape[1], quantized.device)
        return self.proj_out(self.blocks(hidden, pad))


class BEATsTokenizer(BEATsModel):
    """The self-distilled BEATs acoustic tokenizer (iteration 2 onward).

    Args:
        codebook_size, codebook_dim: the VQ codebook (paper: 1024 x 256).
        dim, depth, heads, mlp_ratio: the encoder (paper: 768, 12, 12, 4.0).
        patch_dim, patch_size: patch embedding width (512) and patch side (16).
        dropout: dropout of the encoder.
        ema_decay, beta, kmeans_iters: the quantizer (0.99, 1.0, 10).
        dead_code_threshold: restart codes used less than this per batch (0: never, as BEATs).
        target_norm: ``none`` (BEATs) or ``batch``: standardise teacher channels over the batch (training only).
        teacher: checkpoint folder or registry name of the SSL teacher (training only).
        estimator_dim, estimator_depth, estimator_heads: the estimator (paper: 768, 3, 12; training only).
        fbank_mean, fbank_std: front-end normalisation.
    """

    training_only = ("teacher",)

    def __init__(
        self,
        codebook_size: int = 1024,
        codebook_dim: int = 256,
        dim: int = 768,
        depth: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        patch_dim: int = 512,
        patch_size: int = 16,
        dropout: float = 0.1,
        ema_decay: float = 0.99,
        beta: float = 1.0,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 0.0,
        target_norm: str = "none",
        teacher: str | None = None,
        estimator_dim: int = 768,
        estimator_depth: int = 3,
        estimator_heads: int = 12,
        fbank_mean: float = BEATS_FBANK_MEAN,
        fbank_std: float = BEATS_FBANK_STD,
    ):
        super().__init__()
        if target_norm not in ("none", "batch"):
            raise ZooError(f"BEATsTokenizer: target_norm must be 'none' or 'batch', got {target_norm!r}")
        self.target_norm = target_norm
        if dim % heads or estimator_dim % estimator_heads:
            raise ZooError(f"BEATsTokenizer: dim {dim} and estimator_dim {estimator_dim} must divide by the heads")
        self._init_encoder(patch_size, patch_dim, dim, depth, heads, mlp_ratio, dropout, fbank_mean, fbank_std)
        self.to_code = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, codebook_dim))
        self.quantizer = NormEMAVectorQuantizer(
            codebook_size, codebook_dim, ema_decay, beta, kmeans_iters, dead_code_threshold
        )
        self.estimator = None
        if teacher is not None:
            teacher_dim = int(reference_config(teacher).get("dim", 768))
            self.estimator = Estimator(
                codebook_dim, estimator_dim, estimator_depth, estimator_heads, teacher_dim, self.bands, mlp_ratio
            )
        init_weights(self)

    @property
    def vocab_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def codebook(self) -> torch.Tensor:
        return self.quantizer.codebook

    def encode_patches(self, audio: torch.Tensor, lengths: torch.Tensor):
        """Encoder output ``[B, N, dim]``, patch lengths ``[B]`` and padding mask ``[B, N]``."""
        patches, patch_lengths, pad = self.embed_patches(audio, lengths)
        return self.encoder(patches, pad), patch_lengths, pad

    def features(self, audio: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's last layer ``([B, N, dim], patch lengths [B])``, for probes."""
        hidden, patch_lengths, _ = self.encode_patches(audio, lengths)
        return hidden, patch_lengths

    def tokenize(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, patch_lengths, pad = self.encode_patches(audio, lengths)
        _, ids, _ = self.quantizer(self.to_code(hidden), pad)
        return ids, patch_lengths

    def training_losses(self, batch: dict, step: int) -> dict:
        if self.estimator is None:
            raise ZooError("BEATsTokenizer: training needs a teacher (config key 'teacher': an SSL checkpoint folder)")
        audio, lengths = audio_batch(batch, type(self).__name__)
        teacher = self.frozen("teacher")
        with torch.no_grad():
            target, _ = teacher.features(audio, lengths)  # [B, N, teacher_dim]
        hidden, _, pad = self.encode_patches(audio, lengths)
        quantized, ids, commitment = self.quantizer(self.to_code(hidden), pad)
        if target.shape[:2] != pad.shape:
            raise ZooError(f"BEATsTokenizer: teacher gives {target.shape[1]} patches, the tokenizer {pad.shape[1]}")
        predicted = self.estimator(quantized, pad)
        valid = ~pad
        target = target[valid].float()  # [M, teacher_dim]
        if self.target_norm == "batch":
            target = (target - target.mean(0)) / (target.std(0) + 1e-5)
        cosine = F.cosine_similarity(predicted[valid], target.to(predicted.dtype), dim=-1)
        distillation = (1 - cosine).mean()
        used = torch.unique(ids[valid]).numel()
        return {
            "loss": distillation + commitment,
            "distillation": distillation.detach(),
            "commitment": commitment.detach(),
            "codes_used": torch.tensor(float(used)),
        }
