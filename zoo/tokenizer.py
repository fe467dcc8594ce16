"""The Tokenizer contract, shared by every modality.

=========  ===========================================  =============================================
modality   ``encode(x)``                                ``decode(ids)``
=========  ===========================================  =============================================
text       ``str -> list[int]``,                        ``list[int] -> str``; lossless:
           ``list[str] -> list[list[int]]``             ``decode(encode(s)) == s``
image      float ``[B, 3, H, W]`` in ``[0, 1]`` ->      ids -> float ``[B, 3, H, W]`` in ``[0, 1]``
           Long ``[B, h, w]``, ``[B, L]`` or
           ``[B, h, w, q]``
audio      float ``[B, T]`` in ``[-1, 1]`` at           ``AudioTokens`` (or ids) -> float ``[B, T]``
           ``sample_rate`` (+ ``lengths``) ->
           ``AudioTokens(ids [B, N] | [B, N, q],
           lengths [B])``
=========  ===========================================  =============================================

Neural tokenizers are ``nn.Module``s (``NeuralTokenizer``) whose ``forward`` returns one type for
every family, ``TokenizerOutput``, and which expose ``embed(ids)`` and ``codebook``.
File paths, PIL images and wav files are converted at the edges (``encode_file``, the CLI).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch

from zoo.errors import ZooError
from zoo.inputs import (  # noqa: F401  (re-exported: the families' shared input checks)
    check_audio,
    check_ids,
    check_image_shape,
    check_images,
    check_sample_rate,
)
from zoo.pretrained import Pretrained, PretrainedModule
from zoo.registry import MODALITIES  # noqa: F401  (re-exported)


class AudioTokens(NamedTuple):
    """Audio ids with the number of valid frames per item (padding frames hold ``-1``).

    ``scales`` is what a codec that normalises its input chunk by chunk needs beside the ids to decode (EnCodec 48 kHz:
    one RMS scale per 1 s chunk, ``[B, n_chunks]`` float, ``0`` past each item's chunks); ``None`` for every codec whose
    ids decode on their own. Pass the whole ``AudioTokens`` to ``decode``, and read fields by name (``tokens.ids``,
    ``tokens.lengths``): a tuple unpacking of two names fails on this three-field tuple."""

    ids: torch.Tensor  # [B, N] or [B, N, q]
    lengths: torch.Tensor  # [B]
    scales: torch.Tensor | None = None  # [B, n_chunks], chunk-normalised codecs only


def groups_by_length(lengths: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """``(length, rows)`` for every distinct non-zero length, shortest first: items of one length run as one batch,
    so an item's ids never depend on what it was batched with."""
    for length in sorted(set(lengths.tolist())):
        if length > 0:
            yield int(length), (lengths == length).nonzero().flatten()


def unpack_audio_tokens(tokens, checked_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, frames)`` of what an audio ``decode`` is given: ``AudioTokens``, or bare ids (every frame valid).

    ``checked_ids`` is the family's own check of the ids; the lengths are checked here: ``[B]`` integers within the
    ids' frames."""
    if isinstance(tokens, AudioTokens):
        ids, frames = checked_ids(tokens.ids), torch.as_tensor(tokens.lengths).long().cpu()
    else:
        ids = checked_ids(tokens)
        frames = torch.full((ids.shape[0],), ids.shape[1], dtype=torch.long)
    if frames.shape != (ids.shape[0],) or (frames < 0).any() or (frames > ids.shape[1]).any():
        raise ZooError(f"tokens: lengths must be [B] integers in [0, {ids.shape[1]}], got {frames.tolist()}")
    return ids, frames


@dataclass
class TokenizerOutput:
    """What ``forward`` returns for every neural family.

    Attributes:
        output: the reconstruction (image / audio) or prediction (e.g. teacher features), or None.
        indices: token ids, shaped as ``encode`` returns them.
        losses: named loss terms; ``losses["loss"]`` is the total the trainer minimises.
        extras: anything else a family wants to expose (latents, perplexity, masks).
    """

    output: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)


class Tokenizer(Pretrained, ABC):
    """Base of every tokenizer: ``modality``, ``vocab_size``, ``config``, ``encode`` / ``decode``."""

    modality: ClassVar[str] = ""
    has_decoder: ClassVar[bool] = True

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of distinct ids per codebook."""

    @abstractmethod
    def encode(self, x):
        """Turn input into ids (see the module docstring for each modality)."""

    def decode(self, ids):
        """Turn ids back into input space."""
        raise ZooError(f"{type(self).__name__} has no decoder: its tokens are labels, not a code to invert")

    def encode_file(self, path: str | Path):
        """Encode a file: UTF-8 text, an image (PNG, JPEG, ...) or audio (WAV, FLAC, ...)."""
        from zoo import io

        if self.modality == "text":
            return self.encode(io.read_text(path))
        if self.modality == "image":
            return self.encode(io.read_image(path).unsqueeze(0))
        if self.modality == "audio":
            wave = io.read_audio(path, sample_rate=self.sample_rate)
            return self.encode(wave.unsqueeze(0))
        raise ZooError(f"{type(self).__name__}: unknown modality {self.modality!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(modality={self.modality!r}, vocab_size={self.vocab_size})"


class NeuralTokenizer(PretrainedModule, Tokenizer):
    """A tokenizer that is a network: ``forward(x) -> TokenizerOutput``, ``embed(ids)``, ``codebook``."""

    @property
    def codebook(self) -> torch.Tensor:
        """Code vectors ``[K, D]`` (``[q, K, D]`` for several codebooks)."""
        raise ZooError(f"{type(self).__name__} exposes no codebook")

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Code vectors for ids, as a generator consuming these tokens would use them."""
        raise ZooError(f"{type(self).__name__} does not define embed(ids)")

    @contextmanager
    def evaluating(self):
        """Eval mode for the block (quantisers neither update their codebooks nor re-seed codes, dropout is off),
        then the mode the network was in, also when the block fails."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    def training_losses(self, batch: dict, step: int) -> TokenizerOutput:
        """Default: run ``forward`` on the batch's input for this modality."""
        key = {"image": "image", "audio": "audio"}.get(self.modality)
        if key is None or key not in batch:
            raise ZooError(f"{type(self).__name__}: batch has no {key!r} entry (keys: {sorted(batch)})")
        return self(batch[key])
