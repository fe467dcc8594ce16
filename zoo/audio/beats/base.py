"""What every BEATs model shares: the 16 kHz front end, ``encode`` with padding, frozen references, export.

A BEATs model is an audio tokenizer: ``encode(audio [B, T], lengths) -> AudioTokens(ids [B, N], lengths)``
with ``N`` time-major patches, 50 per second (8 frequency bands per 160 ms). The random-projection
tokenizer, the distilled tokenizers and the SSL model (whose tokens are its predicted labels) all
derive from ``BEATsModel``; none has a decoder.

Training needs other models: the SSL model learns a tokenizer's labels, a distilled tokenizer learns
from an SSL teacher. They are named in the config (a checkpoint folder or a registry name), loaded
lazily, frozen, and kept out of the module tree, so they are neither trained nor saved. Config keys
that only training uses (``training_only``) are cleared in the exported folder, together with the
modules only training needs (e.g. the estimator): ``save_pretrained`` writes the inference model.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch

from zoo.audio.beats.frontend import HOP, SAMPLE_RATE, FbankFrontEnd, num_patches, pad_ids, padding_mask
from zoo.audio.beats.transformer import PatchEmbedding, PatchPositions, TransformerEncoder
from zoo.errors import ZooError
from zoo.tokenizer import AudioTokens, NeuralTokenizer, TokenizerOutput, check_audio, check_sample_rate


def load_frozen(reference: str, owner: str):
    """Load a checkpoint folder or registry name (with its shipped weights), in eval mode and frozen."""
    from zoo.loading import load_tokenizer, looks_like_path

    if looks_like_path(reference) and not Path(reference).expanduser().is_dir():
        raise ZooError(f"{owner}: {reference!r} is not a checkpoint folder (run the stage that exports it first)")
    model = load_tokenizer(reference, frozen=True, owner=owner)
    if not isinstance(model, torch.nn.Module):
        raise ZooError(f"{owner}: {reference!r} is not a network")
    return model


def reference_config(reference: str) -> dict:
    """The constructor config of a checkpoint folder or registry entry, without building it."""
    from zoo import registry
    from zoo.pretrained import read_config

    path = Path(reference).expanduser()
    if path.is_dir():
        return read_config(path)["config"]
    return dict(registry.get(reference).config)


class BEATsModel(NeuralTokenizer):
    """Base of the BEATs family: front end, ``encode`` / ``forward``, frozen helpers and the inference export.

    Subclasses call ``_init_frontend`` and implement ``tokenize(audio, lengths) -> (ids [B, N], lengths [B])``.
    """

    modality: ClassVar[str] = "audio"
    has_decoder: ClassVar[bool] = False
    sample_rate: ClassVar[int] = SAMPLE_RATE
    training_only: ClassVar[tuple[str, ...]] = ()

    def _init_frontend(self, fbank_mean: float, fbank_std: float, patch_size: int) -> None:
        self.frontend = FbankFrontEnd(fbank_mean, fbank_std, patch_size)
        self.patch_size = patch_size
        self.bands = self.frontend.bands

    def _init_encoder(self, patch_size: int, patch_dim: int, dim: int, depth: int, heads: int, mlp_ratio: float,
                      dropout: float, fbank_mean: float, fbank_std: float) -> None:
        """The front end, patch embedding, positions and ViT encoder that SSL models and tokenizers share."""
        self._init_frontend(fbank_mean, fbank_std, patch_size)
        self.patch_embed = PatchEmbedding(patch_size, patch_dim, dim)
        self.positions = PatchPositions(dim, self.bands)
        self.encoder = TransformerEncoder(dim, depth, heads, mlp_ratio, dropout)

    def embed_patches(self, audio: torch.Tensor, lengths: torch.Tensor):
        """Patch embeddings with positions ``[B, N, dim]``, patch lengths ``[B]``, padding mask ``[B, N]``."""
        fbank, patch_lengths, pad = self.fbank(audio, lengths)
        patches = self.patch_embed(fbank)
        return patches + self.positions(patches.shape[1], patches.device), patch_lengths, pad

    @property
    def frame_rate(self) -> float:
        """Tokens per second: ``bands`` patches every ``patch_size`` frames of 10 ms."""
        return SAMPLE_RATE / (HOP * self.patch_size) * self.bands

    def fbank(self, audio: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """``fbank [B, 1, F, 128]`` on the model's device, ``patch_lengths [B]`` and the padding mask ``[B, N]``."""
        audio, lengths = check_audio(audio, lengths)
        device = self.device
        fbank, patch_lengths = self.frontend(audio.detach().float().to(device), lengths.to(device))
        num = fbank.shape[2] // self.patch_size * self.bands
        return fbank, patch_lengths, padding_mask(patch_lengths, num)

    def tokenize(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise ZooError(f"{type(self).__name__} does not define tokenize(audio, lengths)")

    def _tokens(self, x: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked input -> ``(ids [B, N] with -1 past each end, patch lengths [B])``, also for clips too short."""
        x, lengths = check_audio(x, lengths)
        if len(lengths) == 0 or int(num_patches(lengths, self.patch_size).max()) == 0:  # not one whole patch
            return torch.zeros(x.shape[0], 0, dtype=torch.long), torch.zeros(x.shape[0], dtype=torch.long)
        ids, patch_lengths = self.tokenize(x, lengths)
        return pad_ids(ids, patch_lengths), patch_lengths

    @torch.no_grad()
    def encode(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
               sample_rate: int | None = None) -> AudioTokens:
        """``[B, T]`` 16 kHz audio -> ``AudioTokens(ids [B, N] with -1 past each end, lengths [B])``; a
        ``sample_rate`` other than the model's is refused (resample first)."""
        check_sample_rate(sample_rate, self.sample_rate)
        was_training = self.training
        self.eval()
        try:
            ids, patch_lengths = self._tokens(x, lengths)
        finally:
            self.train(was_training)
        return AudioTokens(ids.cpu(), patch_lengths.cpu())

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> TokenizerOutput:
        ids, patch_lengths = self._tokens(x, lengths)
        return TokenizerOutput(indices=ids, extras={"lengths": patch_lengths})

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Code vectors ``[..., D]`` for ids ``[...]`` (padding ids ``-1`` give zero vectors)."""
        ids = torch.as_tensor(ids, device=self.codebook.device)
        vectors = self.codebook[ids.clamp(min=0)]
        return vectors.masked_fill((ids < 0).unsqueeze(-1), 0.0)

    # -- frozen models a training run needs ---------------------------------------------------------
    def frozen(self, key: str):
        """The frozen model named by config key ``key``, loaded on first use and moved to this device."""
        reference = self.config.get(key)
        if reference is None:
            raise ZooError(f"{type(self).__name__}: training needs config key {key!r} (a checkpoint folder or name)")
        cache = self.__dict__.setdefault("_frozen_models", {})
        if key not in cache:
            cache[key] = load_frozen(reference, f"{type(self).__name__}.{key}")
        model = cache[key]
        return model.to(self.device)

    # -- export: the inference model only -------------------------------------------------------------
    def inference_model(self) -> BEATsModel:
        """A copy without training-only config and modules (same weights otherwise)."""
        config = self.config
        if not any(config.get(key) is not None for key in self.training_only):
            return self
        with torch.random.fork_rng(devices=[]):
            export = type(self)(**{**config, **{key: None for key in self.training_only}})
        keep = export.state_dict()
        export.load_state_dict({name: value for name, value in self.state_dict().items() if name in keep}, strict=True)
        return export.eval()

    def save_pretrained(self, directory: str | Path, metadata: dict | None = None) -> Path:
        export = self.inference_model()
        if export is not self:
            trained_with = {key: self.config.get(key) for key in self.training_only}
            metadata = {**(metadata or {}), "trained_with": trained_with}
        return super(BEATsModel, export).save_pretrained(directory, metadata)


def audio_batch(batch: dict, owner: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``audio [B, T]`` and ``audio_lengths [B]`` from a collated batch, checked."""
    if "audio" not in batch:
        raise ZooError(f"{owner}: batch has no 'audio' entry (keys: {sorted(batch)}); use an audio dataset")
    return check_audio(batch["audio"], batch.get("audio_lengths"))
