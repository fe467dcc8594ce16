"""CodecTokenizer: a SEANet / DAC-style neural audio codec over a residual quantiser.

    audio [B, T] at sample_rate -> Encoder -> latent [B, D, N]  (N = ceil(T / hop), hop = prod(strides))
        -> ResidualQuantizer -> ids [B, N, q]                   (level 0 coarsest; the first n_q are emitted)
    ids [B, N, n] (n <= q) -> latent [B, D, N] -> Decoder -> audio [B, N * hop]

One model serves ``n_q`` = 1 .. q codebooks (quantizer dropout in training), ``bitrate_kbps(n_q)`` =
``frame_rate * n_q * log2(K) / 1000``. ``n_q`` in the config is what ``encode`` emits by default (all
levels when None); ``encode(..., n_q=2)`` overrides it per call, and
``zoo.load("codec-16k", pretrained=True, n_q=2)`` builds the model that emits two levels by default (how a
suite evaluates one bitrate).

Padding: a batch item is encoded (and decoded) exactly as it is alone. Items are grouped by length and
each group is cut to its own length and padded with zeros to whole frames, so the tokens of a clip never
depend on what the batch padded it with; padding frames hold ``-1``, and decoding gives silence there.

Training (``training_losses``; ``zoo.audio.codec.losses`` has the objective) reconstructs a batch of crops
through a random number of levels, and, with a ``discriminator`` configured and from ``loss.gan_start`` on,
adds the LSGAN generator and feature-matching terms of ``zoo.audio.codec.discriminators``. The
discriminator is training-only: ``save_pretrained`` writes the codec without it (``metadata.trained_with``
records its config), so shipped weights hold the encoder, quantiser and decoder only.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange

from zoo.audio.codec.discriminators import (
    CodecDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
)
from zoo.audio.codec.losses import DISCRIMINATOR_DEFAULTS, LOSS_DEFAULTS, checked_options, reconstruction_losses
from zoo.audio.codec.networks import Decoder, Encoder, checked_strides
from zoo.audio.codec.quantizer import ResidualQuantizer, choose_levels
from zoo.errors import ZooError
from zoo.tokenizer import (
    AudioTokens,
    NeuralTokenizer,
    TokenizerOutput,
    check_audio,
    check_sample_rate,
    groups_by_length,
    unpack_audio_tokens,
)


class CodecTokenizer(NeuralTokenizer):
    """Neural audio codec: conv encoder, residual VQ / FSQ with quantizer dropout, conv decoder.

    Args:
        sample_rate: the rate ``encode`` takes and ``decode`` returns.
        channels: encoder width at the input rate (doubled at each downsampling).
        decoder_channels: decoder width at the frame rate (halved at each upsampling).
        strides: down / upsampling factors; their product is the hop (samples per frame).
        dilations: dilations of the residual units in every block (SEANet / DAC: 1, 3, 9).
        latent_dim: channels of the latent the quantiser codes.
        activation: ``snake`` (DAC) or ``elu`` (SEANet).
        quantizer: ``zoo.audio.codec.quantizer`` options (``kind: rvq`` or ``rfsq``, ``codebooks``, ...).
        n_q: codebook levels ``encode`` emits by default (None: all).
        loss: ``zoo.audio.codec.losses.LOSS_DEFAULTS`` overrides (training only).
        discriminator: ``{periods, stft_windows, channels}`` to train with the GAN terms, or None (training only;
            not saved).
        seed: seeds the initialisation, so a config always builds the same network.
    """

    modality: ClassVar[str] = "audio"
    has_decoder: ClassVar[bool] = True

    def __init__(
        self,
        sample_rate: int = 16_000,
        channels: int = 16,
        decoder_channels: int = 256,
        strides: tuple[int, ...] = (2, 4, 5, 8),
        dilations: tuple[int, ...] = (1, 3, 9),
        latent_dim: int = 64,
        activation: str = "snake",
        quantizer: dict | None = None,
        n_q: int | None = None,
        loss: dict | None = None,
        discriminator: dict | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
            raise ZooError(f"codec: sample_rate must be a positive integer of Hz, got {sample_rate!r}")
        self.sample_rate = sample_rate
        self.strides = checked_strides(strides)
        self.hop = math.prod(self.strides)
        self.loss_weights = checked_options("loss", loss, LOSS_DEFAULTS)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.encoder = Encoder(channels, self.strides, list(dilations), latent_dim, activation)
            self.quantizer = ResidualQuantizer(latent_dim, quantizer)
            self.decoder = Decoder(decoder_channels, self.strides, list(dilations), latent_dim, activation)
            self.discriminator = None
            if discriminator is not None:
                options = checked_options("discriminator", discriminator, DISCRIMINATOR_DEFAULTS)
                self.discriminator = CodecDiscriminator(options["periods"], options["stft_windows"],
                                                        options["channels"])
        self.n_q = choose_levels(n_q, self.quantizer.num_levels, self.quantizer.num_levels)

    # -- contract --------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Codes per codebook level (K)."""
        return self.quantizer.vocab_size

    @property
    def num_codebooks(self) -> int:
        """Codebook levels ``encode`` emits by default (ids ``[B, N, n_q]``)."""
        return self.n_q

    @property
    def frame_rate(self) -> float:
        """Frames (token rows) per second: ``sample_rate / hop``."""
        return self.sample_rate / self.hop

    def bitrate_kbps(self, n_q: int | None = None) -> float:
        """``frame_rate * n_q * log2(K) / 1000``: the bitrate of ``n_q`` levels (default: what ``encode`` emits)."""
        levels = choose_levels(n_q, self.quantizer.num_levels, self.n_q)
        return self.frame_rate * levels * math.log2(self.vocab_size) / 1000

    @property
    def codebook(self) -> torch.Tensor:
        """``[q, K, code_dim]``: every level's codes (FSQ: the implicit grid at the level's scale)."""
        return self.quantizer.codebook

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, N, n]`` (``-1``: no code) -> the latent the decoder consumes ``[B, N, latent_dim]``."""
        ids = self._checked_ids(ids)
        return rearrange(self.quantizer.ids_to_latent(ids.to(self.device)), "b d n -> b n d")

    @torch.no_grad()
    def encode(self, x: torch.Tensor, lengths: torch.Tensor | None = None, sample_rate: int | None = None,
               n_q: int | None = None) -> AudioTokens:
        """``[B, T]`` audio -> ``AudioTokens(ids [B, ceil(T / hop), n_q] with -1 past each end, frames [B])``."""
        check_sample_rate(sample_rate, self.sample_rate)
        x, lengths = check_audio(x, lengths)
        levels = choose_levels(n_q, self.quantizer.num_levels, self.n_q)
        frames = (lengths + self.hop - 1) // self.hop
        ids = torch.full((x.shape[0], int(frames.max()) if len(frames) else 0, levels), -1, dtype=torch.long)
        with self.evaluating():
            for length, rows in groups_by_length(lengths):
                clip = self._padded(x[rows, :length].to(self.device))
                codes = self.quantizer(self.encoder(clip[:, None])).ids  # [b, n, q]
                ids[rows, : codes.shape[1]] = codes[..., :levels].cpu()
        return AudioTokens(ids, frames)

    @torch.no_grad()
    def decode(self, tokens: AudioTokens | torch.Tensor) -> torch.Tensor:
        """``AudioTokens`` (or ids ``[B, N, n]`` / ``[B, N]``) -> audio ``[B, N * hop]``, silent past each length."""
        ids, frames = unpack_audio_tokens(tokens, self._checked_ids)
        audio = torch.zeros(ids.shape[0], ids.shape[1] * self.hop)
        with self.evaluating():
            for length, rows in groups_by_length(frames):
                latent = self.quantizer.ids_to_latent(ids[rows, :length].to(self.device))
                audio[rows, : length * self.hop] = self.decoder(latent)[:, 0].float().cpu()
        return audio

    # -- pieces ----------------------------------------------------------------------------------------
    def _checked_ids(self, ids) -> torch.Tensor:
        """Integer ids ``[B, N, n]`` (``[B, N]`` is one level) with values in ``[-1, K)`` and ``n <= q``."""
        ids = torch.as_tensor(ids)
        if ids.is_floating_point() or ids.dtype == torch.bool:
            raise ZooError(f"ids: expected integer ids, got dtype {ids.dtype}")
        ids = ids.long().cpu()
        if ids.ndim == 2:
            ids = ids[..., None]
        if ids.ndim != 3 or not 1 <= ids.shape[-1] <= self.quantizer.num_levels:
            raise ZooError(f"ids: expected [B, N, n] with 1 <= n <= {self.quantizer.num_levels}, got {list(ids.shape)}")
        if ids.numel() and (ids.min() < -1 or ids.max() >= self.vocab_size):
            raise ZooError(f"ids: values must lie in [0, {self.vocab_size}) (-1 for padding), got "
                           f"[{ids.min().item()}, {ids.max().item()}]")
        return ids

    def _padded(self, audio: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` zero-padded at the end to whole frames."""
        return F.pad(audio, (0, -audio.shape[-1] % self.hop))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> TokenizerOutput:
        """Reconstruct a batch as one tensor (no length grouping, no GAN terms): ``output [B, T]``, the losses."""
        x, _ = check_audio(x, lengths)
        return self._run(x.to(self.device), step=None)

    def training_losses(self, batch: dict, step: int) -> TokenizerOutput:
        if "audio" not in batch:
            raise ZooError(f"CodecTokenizer: batch has no 'audio' entry (keys: {sorted(batch)}); use an audio dataset")
        audio, _ = check_audio(batch["audio"], batch.get("audio_lengths"))
        return self._run(audio.to(self.device), step=step)

    # -- the objective ---------------------------------------------------------------------------------
    def _run(self, audio: torch.Tensor, step: int | None) -> TokenizerOutput:
        weights = self.loss_weights
        quantized = self.quantizer(self.encoder(self._padded(audio)[:, None]))
        reconstruction = self.decoder(quantized.quantized)[:, 0, : audio.shape[-1]]
        losses = reconstruction_losses(audio, reconstruction, self.sample_rate, weights)
        losses.update(quantized.losses)
        total = sum(weights[name] * value for name, value in losses.items())
        if self._gan_active(step):
            with self._frozen_discriminator():
                with torch.no_grad():
                    real = self.discriminator(audio)
                fake = self.discriminator(reconstruction)
            losses["adversarial"] = generator_loss(fake)
            losses["feature"] = feature_matching_loss(real, fake)
            total = total + weights["adversarial"] * losses["adversarial"] + weights["feature"] * losses["feature"]
        losses["loss"] = total
        extras = {"levels_used": quantized.levels_used}
        return TokenizerOutput(output=reconstruction, indices=quantized.ids, losses=losses, extras=extras)

    def _gan_active(self, step: int | None) -> bool:
        return (self.discriminator is not None and self.training and step is not None
                and step >= self.loss_weights["gan_start"])

    @contextmanager
    def _frozen_discriminator(self):
        """The generator's GAN terms must not leave gradients on the discriminator (it has its own optimiser)."""
        flags = [p.requires_grad for p in self.discriminator.parameters()]
        self.discriminator.requires_grad_(False)
        try:
            yield
        finally:
            for parameter, flag in zip(self.discriminator.parameters(), flags):
                parameter.requires_grad_(flag)

    def discriminator_losses(self, batch: dict, output: TokenizerOutput, step: int) -> dict:
        """LSGAN loss of the discriminators on real clips vs this step's reconstructions; {} before gan_start."""
        if not self._gan_active(step):
            return {}
        real = self.discriminator(batch["audio"].to(self.device).float())
        fake = self.discriminator(output.output.detach())
        return {"loss": discriminator_loss(real, fake),
                "real": torch.stack([logits.mean() for logits, _ in real]).mean().detach(),
                "fake": torch.stack([logits.mean() for logits, _ in fake]).mean().detach()}

    # -- export: the codec without its discriminator ---------------------------------------------------
    def save_pretrained(self, directory: str | Path, metadata: dict | None = None) -> Path:
        if self.discriminator is None:
            return super().save_pretrained(directory, metadata)
        config = self.config
        export = type(self)(**{**config, "discriminator": None})
        export.load_state_dict({k: v for k, v in self.state_dict().items() if not k.startswith("discriminator.")},
                               strict=True)
        metadata = {**(metadata or {}), "trained_with": {"discriminator": config["discriminator"]}}
        return super(CodecTokenizer, export.eval()).save_pretrained(directory, metadata)

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, hop={self.hop}, frame_rate={self.frame_rate:g}, "
                f"codebooks={self.quantizer.num_levels}x{self.vocab_size}, n_q={self.n_q}")
