"""Minimal trainable families for the trainer's tests, defined here so the tests depend on no real family.

- ``ToyVQ``: a tiny conv autoencoder with a vector quantiser over images (VQ-VAE,
  https://arxiv.org/abs/1711.00937), latent noise drawn from the global RNG (so resuming must
  restore RNG state), a usage buffer (so processes must agree on buffers), and optionally a patch
  discriminator with a hinge loss from ``disc_start`` on (so the GAN path runs).
- ``ToyCharTokenizer``: a text tokenizer trained without gradients by ``fit(texts)``.

``trace_dir`` makes a model append what each process saw at each step to ``rank-R.jsonl``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ZooError
from zoo.pretrained import atomic_write_text
from zoo.text.base import TextTokenizer
from zoo.tokenizer import NeuralTokenizer, TokenizerOutput, check_images


class ToyVQ(NeuralTokenizer):
    modality: ClassVar[str] = "image"

    def __init__(
        self,
        channels: int = 8,
        codebook_size: int = 16,
        code_dim: int = 4,
        noise: float = 0.05,
        discriminator: bool = False,
        disc_start: int = 0,
        adversarial_weight: float = 0.1,
        sleep: float = 0.0,
        trace_dir: str | None = None,
    ):
        super().__init__()
        self.noise, self.disc_start, self.adversarial_weight = noise, disc_start, adversarial_weight
        self.sleep, self.trace_dir = sleep, trace_dir
        self.encoder = nn.Sequential(nn.Conv2d(3, channels, 4, 2, 1), nn.ReLU(), nn.Conv2d(channels, code_dim, 1))
        self.codes = nn.Parameter(torch.randn(codebook_size, code_dim) * 0.5)
        self.decoder = nn.Sequential(
            nn.Conv2d(code_dim, channels, 1), nn.ReLU(), nn.ConvTranspose2d(channels, 3, 4, 2, 1)
        )
        self.register_buffer("usage", torch.zeros(codebook_size))  # EMA of code usage
        self.discriminator = (
            nn.Sequential(nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(channels, 1, 3, 1, 1))
            if discriminator
            else None
        )

    @property
    def vocab_size(self) -> int:
        return self.codes.shape[0]

    @property
    def codebook(self) -> torch.Tensor:
        return self.codes.detach()

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.codes)  # [B, h, w] -> [B, h, w, D]

    def _quantise(self, z: torch.Tensor):  # z [B, D, h, w]
        flat = z.permute(0, 2, 3, 1)  # [B, h, w, D]
        distances = (flat.unsqueeze(-2) - self.codes).pow(2).sum(-1)  # [B, h, w, K]
        ids = distances.argmin(-1)  # [B, h, w]
        quantised = self.embed(ids)
        codebook_loss = F.mse_loss(quantised, flat.detach())
        commitment = F.mse_loss(flat, quantised.detach())
        quantised = flat + (quantised - flat).detach()  # straight-through estimator
        return quantised.permute(0, 3, 1, 2), ids, codebook_loss + 0.25 * commitment

    def forward(self, images: torch.Tensor) -> TokenizerOutput:
        check_images(images)
        z = self.encoder(images)
        if self.training and self.noise:
            z = z + self.noise * torch.randn_like(z)  # global RNG: resume must restore it
        quantised, ids, vq_loss = self._quantise(z)
        recon = self.decoder(quantised).sigmoid()
        if self.training:
            with torch.no_grad():
                counts = torch.bincount(ids.reshape(-1), minlength=self.vocab_size).float()
                self.usage.mul_(0.9).add_(0.1 * counts / counts.sum())
        recon_loss = F.mse_loss(recon, images)
        return TokenizerOutput(
            output=recon, indices=ids, losses={"loss": recon_loss + vq_loss, "recon": recon_loss, "vq": vq_loss}
        )

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self._quantise(self.encoder(check_images(images)))[1]

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.embed(ids).permute(0, 3, 1, 2)).sigmoid()

    def training_losses(self, batch: dict, step: int) -> TokenizerOutput:
        if self.sleep:
            time.sleep(self.sleep)
        if self.trace_dir:
            rank = int(os.environ.get("RANK", "0"))
            record = {"step": step, "labels": batch["label"].tolist(), "world": int(os.environ.get("WORLD_SIZE", "1"))}
            with open(Path(self.trace_dir) / f"rank-{rank}.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
        out = self(batch["image"])
        if self.discriminator is not None and step >= self.disc_start:
            adversarial = -self.discriminator(out.output * 2 - 1).mean()  # hinge GAN generator term
            out.losses["adversarial"] = adversarial
            out.losses["loss"] = out.losses["loss"] + self.adversarial_weight * adversarial
        return out

    def discriminator_losses(self, batch: dict, output: TokenizerOutput, step: int) -> dict:
        if step < self.disc_start:
            return {}
        real = self.discriminator(batch["image"] * 2 - 1)
        fake = self.discriminator(output.output.detach() * 2 - 1)
        loss = F.relu(1 - real).mean() + F.relu(1 + fake).mean()  # hinge loss, https://arxiv.org/abs/1705.02894
        return {"loss": loss, "real": real.mean(), "fake": fake.mean()}


class ToyCharTokenizer(TextTokenizer):
    """Characters as tokens; ``fit`` learns the character set (id 0 is ``<unk>``)."""

    weights_name: ClassVar[str] = "tokenizer.json"

    def __init__(self, max_chars: int = 1000):
        self.max_chars = max_chars
        self.chars: list[str] = []

    @property
    def vocab_size(self) -> int:
        return 1 + len(self.chars)

    def fit(self, texts) -> None:
        counts: dict[str, int] = {}
        for text in texts:
            for char in text:
                counts[char] = counts.get(char, 0) + 1
        self.chars = sorted(counts, key=lambda c: (-counts[c], c))[: self.max_chars]

    def encode_one(self, text: str) -> list[int]:
        index = {c: i + 1 for i, c in enumerate(self.chars)}
        return [index.get(c, 0) for c in text]

    def decode_one(self, ids: list[int]) -> str:
        return "".join(self.chars[i - 1] if i else "\ufffd" for i in ids)

    def _has_weights(self) -> bool:
        return bool(self.chars)

    def _save_weights(self, path: Path) -> None:
        atomic_write_text(path, json.dumps({"chars": self.chars}))

    def _load_weights(self, path: Path) -> None:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record.get("chars"), list):
            raise ZooError(f"{path}: expected {{'chars': [...]}}")
        self.chars = record["chars"]
