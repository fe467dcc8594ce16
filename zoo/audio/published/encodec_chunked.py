"""EnCodec 48 kHz (Défossez et al., https://arxiv.org/abs/2210.13438, section 3): the stereo model that encodes 1 s
chunks, each normalised by its own RMS, through transformers' ``EncodecModel``.

    audio [b, T] (mono) -> duplicated to the model's channels [b, C, T]
        -> chunks of ``chunk`` samples every ``stride`` samples (48 kHz: 48000 every 47520, overlap 0.01 s)
        -> each chunk / its RMS scale (the mean of the channels' RMS level, + 1e-8) -> encoder -> RVQ
        -> ids [b, N, n_q], the chunks' rows one after another; scales [b, n_chunks]
    ids + scales -> each chunk decoded and multiplied by its scale -> linear overlap-add (triangular fades)
        -> [b, C, samples] -> mean of the channels -> audio [b, samples]

Mono in, mono out: the zoo audio contract is ``[B, T]``, so a clip is fed to both channels (a centred stereo image,
which the model saw in training) and the decoded channels are averaged. Scales travel in ``AudioTokens.scales``
(``0`` past each item's chunks); ``decode`` refuses ids without them.

Chunk layout (the same chunks as the reference implementations, without their redundant tail). An item of ``T``
samples has ``n = 1`` chunk if ``T <= chunk``, else ``n = ceil((T - chunk) / stride) + 1``: every chunk but the last
is whole, the last holds the ``s = T - (n - 1) * stride`` samples left (more than the overlap when ``n > 1``) and is
zero-padded at the end to whole hops. Its rows: ``(n - 1) * chunk / hop + ceil(s / hop)``; since every chunk but the
last has exactly ``chunk / hop`` rows, the rows alone say where each chunk starts, and the number of chunks is
``ceil(rows / (chunk / hop))``. Meta's ``encodec`` package and transformers' ``encode`` cut chunks at every
``stride`` below ``T``, so when ``s > stride`` they add one more chunk of ``s - stride`` samples (at most the
overlap, inside the previous chunk's span); this wrapper leaves it out: its ids are theirs without that chunk's
rows, its audio theirs except over that tail's few samples (tests/audio/test_encodec48_parity.py checks both).
With three or more chunks, transformers' ``encode`` cannot even stack that case (a whole chunk, then two short ones:
``RuntimeError: stack expects each tensor to be equal size``), which is why the chunks are encoded here with its
encoder and quantizer, while ``decode`` is transformers' own ``EncodecModel.decode``.

Rates: ``frame_rate`` is rows per second of a long clip, ``(chunk / hop) * sample_rate / stride`` (48 kHz:
151.5 rows/s, 1 % above the 150 frames/s of the nominal 3 / 6 / 12 / 24 kbps, which count no overlap), and
``bitrate_kbps`` counts the ids only, not the one float scale per chunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.audio.published.encodec import EncodecTokenizer
from zoo.errors import ZooError


class ChunkedEncodecTokenizer(EncodecTokenizer):
    """EnCodec with chunked, normalised encoding (the 48 kHz stereo model) behind the mono audio contract."""

    def check_layout(self, config) -> None:
        """Chunks of whole hops, 1 or 2 channels; ``normalize`` decides whether there are scales."""
        if config.chunk_length_s is None or config.overlap is None:
            raise ZooError("ChunkedEncodecTokenizer: model_config needs chunk_length_s and overlap (the 48 kHz model: "
                           "1.0 and 0.01); the unchunked 24 kHz model is EncodecTokenizer")
        if config.chunk_length % config.hop_length:
            raise ZooError(f"ChunkedEncodecTokenizer: a chunk of {config.chunk_length} samples is not a whole number "
                           f"of hops ({config.hop_length} samples); choose chunk_length_s so that it is")
        if config.audio_channels not in (1, 2):
            raise ZooError(f"ChunkedEncodecTokenizer: audio_channels must be 1 or 2, got {config.audio_channels}")

    # -- chunk arithmetic ------------------------------------------------------------------------------
    @property
    def chunk(self) -> int:
        return int(self.model.config.chunk_length)

    @property
    def stride(self) -> int:
        return int(self.model.config.chunk_stride)

    @property
    def rows_per_chunk(self) -> int:
        return self.chunk // self.hop

    @property
    def has_scales(self) -> bool:
        return bool(self.model.config.normalize)

    @property
    def frame_rate(self) -> float:
        """Rows of ids per second of a long clip: ``rows_per_chunk`` every ``stride`` samples."""
        return self.rows_per_chunk * self.sample_rate / self.stride

    def chunks_for_samples(self, lengths: torch.Tensor) -> torch.Tensor:
        """Chunks an item of ``lengths`` samples is cut into (0 for an empty item)."""
        lengths = torch.as_tensor(lengths).long()
        beyond = torch.div(lengths - self.chunk + self.stride - 1, self.stride, rounding_mode="floor") + 1
        return torch.where(lengths > self.chunk, beyond, (lengths > 0).long())

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        n = self.chunks_for_samples(lengths)
        last = torch.as_tensor(lengths).long() - (n - 1).clamp(min=0) * self.stride
        rows = (n - 1).clamp(min=0) * self.rows_per_chunk + torch.div(last + self.hop - 1, self.hop,
                                                                      rounding_mode="floor")
        return torch.where(n > 0, rows, 0)

    def padded_length(self, length: int) -> int:
        """The last chunk zero-padded to whole hops: exactly the samples its rows decode to."""
        return int(self.samples(self.frames(torch.tensor(length))))

    def chunks(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.div(torch.as_tensor(frames).long() + self.rows_per_chunk - 1, self.rows_per_chunk,
                         rounding_mode="floor")

    def samples(self, frames: torch.Tensor) -> torch.Tensor:
        """Samples ``frames`` rows decode to: whole chunks every ``stride``, then the last chunk's rows of hops."""
        n = self.chunks(frames)
        before = (n - 1).clamp(min=0)
        return torch.where(n > 0, before * self.stride + (frames - before * self.rows_per_chunk) * self.hop, 0)

    # -- encode / decode one group of equal-length items -----------------------------------------------
    def clip_tokens(self, audio: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Padded audio ``[b, T']`` -> ids ``[b, frames, levels]`` and scales ``[b, n]`` (None unless normalised)."""
        n = int(self.chunks_for_samples(torch.tensor(audio.shape[-1])))
        stereo = audio[:, None].expand(-1, self.model.config.audio_channels, -1)  # [b, C, T']
        bandwidth = self.bandwidth_of(levels)
        ids, scales = [], []
        for index in range(n):
            piece = stereo[..., index * self.stride: index * self.stride + self.chunk]
            if self.has_scales:  # the RMS of the channels' mean, as EncodecModel._encode_frame computes it
                mono = piece.sum(1, keepdim=True) / piece.shape[1]
                scale = mono.pow(2).mean(dim=-1, keepdim=True).sqrt() + 1e-8  # [b, 1, 1]
                piece = piece / scale
                scales.append(scale.view(-1, 1))
            codes = self.model.quantizer.encode(self.model.encoder(piece), bandwidth)  # [q, b, rows]
            ids.append(codes.permute(1, 2, 0))
        return torch.cat(ids, dim=1), torch.cat(scales, dim=1) if scales else None

    def clip_audio(self, ids: torch.Tensor, scales: torch.Tensor | None) -> torch.Tensor:
        """ids ``[b, R, q]`` (+ scales ``[b, >= n]``) -> transformers' ``EncodecModel.decode`` -> ``[b, samples]``."""
        rows = ids.shape[1]
        n = int(self.chunks(torch.tensor(rows)))
        missing = n * self.rows_per_chunk - rows  # the last chunk's rows, padded to stack; decode drops them again
        codes = F.pad(ids, (0, 0, 0, missing)).reshape(ids.shape[0], n, self.rows_per_chunk, ids.shape[2])
        codes = codes.permute(1, 0, 3, 2)  # [n, b, q, rows_per_chunk], as EncodecModel.encode returns them
        chunk_scales = [None] * n if scales is None else [scales[:, i: i + 1] for i in range(n)]
        audio = self.model.decode(codes, chunk_scales, last_frame_pad_length=missing, return_dict=True).audio_values
        return audio.mean(dim=1)  # [b, C, samples] -> mono
