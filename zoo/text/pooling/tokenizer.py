"""A learned byte-to-word pooling tokenizer: segments pooled into one vector, a codebook over those vectors, and a
byte decoder that spells a segment back from its code (the "Learn Your Tokens" / MAGNET / hierarchical line).

Thawani et al., "Learn Your Tokens: Word-Pooled Tokenization for Language Modeling" (EMNLP Findings 2023,
https://arxiv.org/abs/2310.11628); Ahia et al., "MAGNET" (NeurIPS 2024, https://arxiv.org/abs/2407.08818) for the
learned boundary predictor. The networks are in ``model.py`` and the boundary rule in ``segments.py``.

What a token is. A text is cut into segments (``boundary="whitespace"``: the word rule; ``"learned"``: where the
boundary predictor's sigmoid passes 0.5, trained with BCE against the rule's boundaries), each at most
``max_segment_bytes``. Every segment is pooled into one vector and quantised to the nearest of ``K`` codes: that
code is the segment's id. A code alone cannot be lossless (``K`` codes spell at most ``K`` strings), so:

* every code has one *spelling*, the decoder's greedy reconstruction of it, kept in the weights file
  (``spelling_bytes`` / ``spelling_lengths``, recomputed after training), so decoding never reruns a network and
  gives the same text on any machine;
* ``encode`` writes each segment as its code, then corrections only where the code's spelling is not the segment:
  escape bytes, after a ``keep p`` id when the spelling and the segment share ``p >= 2`` leading bytes (" brow"
  corrected to " brown" is ``[k, keep 5, escape "n"]``); ``decode`` reads them back (``corrections.py``: the id
  layout ``[0, K)`` codes, ``[K, K + 256)`` escapes, then ``max_segment_bytes`` keep ids).

So ``decode(encode(s)) == s`` for every Python string (lone surrogates kept as their 3-byte form, ``zoo.text.base``),
whatever the network's quality; the quality shows in how many segments need corrections (docs/pooling.md measures
it, with bytes per token). Every segment begins with one code, so the codes are the segment sequence a model over
pooled vectors would see; ``encode_segments`` gives the continuous and quantised vectors themselves.

Reproducibility. A segment's code depends on its bytes alone (the encoder attends within the segment) and is
computed in chunks whose shape depends only on the segment's length (``CHUNK`` rows, padded to 4, 8 or 16 bytes), so
a string gets the same ids alone or in a batch (and a segment's code is remembered until the weights change). Learned
boundaries are computed the same way: windows of a text, with the predictor's reach of context, in fixed-shape chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange

from zoo.errors import ZooError
from zoo.quantize import Quantizer, codebook_perplexity
from zoo.text.base import TextTokenizer, bytes_to_text, text_to_bytes
from zoo.text.pooling.corrections import ESCAPES, id_bytes, id_strings, segment_ids
from zoo.text.pooling.model import END, BoundaryPredictor, SegmentDecoder, SegmentEncoder
from zoo.text.pooling.segments import rule_byte_segments, rule_start_targets, split_at
from zoo.tokenizer import NeuralTokenizer, TokenizerOutput, check_ids

BOUNDARIES = ("whitespace", "learned")
BOUNDARY_WINDOW = 64  # bytes whose boundaries one predictor row decides (plus its reach of context either side)
CHUNK = 64  # segments per encoder call (rows of a fixed shape, so a segment's code never depends on its batch)
CODE_CACHE = 200_000  # segments whose code is remembered (then the memory starts again)
SPELL_CHUNK = 512  # codes spelled per decoder call when the spelling table is rebuilt
DEFAULT_QUANTIZER = {"kind": "vq", "codebook_size": 4096, "code_dim": 32}


@dataclass
class SegmentEncoding:
    """One text's segments and their vectors.

    Attributes:
        segments: the segments' bytes, in order (joined they are the text's bytes).
        ids: ``[N]`` the code of each segment.
        latent: ``[N, C]`` the pooled vectors in code space, before quantisation (l2-normalised for cosine VQ).
        quantized: ``[N, C]`` the code vectors the ids name.
        spelled: ``[N]`` whether the code's spelling is the segment (no corrections needed).
    """

    segments: list[bytes]
    ids: torch.Tensor
    latent: torch.Tensor
    quantized: torch.Tensor
    spelled: torch.Tensor


class PoolingTokenizer(NeuralTokenizer, TextTokenizer):
    """Byte-to-word pooling tokenizer (see the module docstring).

    Args:
        boundary: ``"whitespace"`` (the word rule of ``segments.py``) or ``"learned"`` (a boundary predictor).
        max_segment_bytes: longest segment; longer words are cut.
        dim, heads, encoder_depth, decoder_depth: the byte encoder and decoder transformers.
        pooling: ``"mean"`` or ``"attention"`` (a learned query) over a segment's byte states.
        quantizer: a ``zoo.quantize.Quantizer`` config with one id per vector (``vq``, ``fsq`` or ``lfq``).
        boundary_dim: width of the boundary predictor (``boundary="learned"`` only).
        commitment_weight, boundary_weight: weights of the VQ commitment and boundary BCE losses.
        segments_per_batch: segments drawn from a training batch's texts for the autoencoder loss.
        boundary_context: bytes per text crop for the boundary loss.
        seed: initialisation and training draws.
    """

    modality: ClassVar[str] = "text"
    lossless: ClassVar[bool] = True

    def __init__(
        self,
        boundary: str = "whitespace",
        max_segment_bytes: int = 16,
        dim: int = 128,
        heads: int = 4,
        encoder_depth: int = 2,
        decoder_depth: int = 2,
        pooling: str = "mean",
        quantizer: dict | None = None,
        boundary_dim: int = 64,
        commitment_weight: float = 0.25,
        boundary_weight: float = 1.0,
        segments_per_batch: int = 512,
        boundary_context: int = 128,
        seed: int = 0,
    ):
        super().__init__()
        if boundary not in BOUNDARIES:
            raise ZooError(f"PoolingTokenizer: boundary must be one of {BOUNDARIES}, got {boundary!r}")
        if not isinstance(max_segment_bytes, int) or not 1 <= max_segment_bytes <= 64:
            raise ZooError(f"PoolingTokenizer: max_segment_bytes must be an integer in [1, 64], got "
                           f"{max_segment_bytes!r}")  # fmt: skip
        quantizer = dict(DEFAULT_QUANTIZER if quantizer is None else quantizer)
        if quantizer.get("kind", "vq") == "rvq":
            raise ZooError("PoolingTokenizer: quantizer kind 'rvq' gives several ids per segment; use vq, fsq or lfq")
        self.boundary, self.max_bytes, self.seed = boundary, max_segment_bytes, seed
        self.commitment_weight, self.boundary_weight = float(commitment_weight), float(boundary_weight)
        self.segments_per_batch, self.boundary_context = int(segments_per_batch), int(boundary_context)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.quantizer = Quantizer(quantizer)
            code_dim = self.quantizer.code_dim
            self.encoder = SegmentEncoder(max_segment_bytes, dim, encoder_depth, heads, code_dim, pooling)
            self.decoder = SegmentDecoder(max_segment_bytes, dim, decoder_depth, heads, code_dim)
            self.boundary_predictor = BoundaryPredictor(boundary_dim) if boundary == "learned" else None
        codes = self.quantizer.vocab_size
        # Each code's greedy spelling, stored with the weights: decoding reads it and never reruns the decoder.
        self.register_buffer("spelling_bytes", torch.zeros(codes, max_segment_bytes, dtype=torch.uint8))
        self.register_buffer("spelling_lengths", torch.zeros(codes, dtype=torch.long))
        self._spellings_stale = True  # a new network: its table is computed when first needed
        self._spelling_cache: list[bytes] | None = None
        self._code_cache: dict[bytes, int] = {}  # segment -> code, for the weights as they are

    def _weights_changed(self, stored_spellings: bool = False) -> None:
        """Forget what was derived from the old weights; the spelling table is stale unless it was loaded with them."""
        self._spellings_stale, self._spelling_cache, self._code_cache = not stored_spellings, None, {}

    # -- vocabulary --------------------------------------------------------------------------------------
    @property
    def num_codes(self) -> int:
        """K, the codebook size; the ids after the codes are corrections (escape bytes, keep ids)."""
        return self.quantizer.vocab_size

    @property
    def vocab_size(self) -> int:
        """K codes, 256 escape bytes and ``max_segment_bytes`` keep ids."""
        return self.num_codes + ESCAPES + self.max_bytes

    @property
    def codebook(self) -> torch.Tensor:
        """Code vectors ``[K, C]``."""
        return self.quantizer.codebook

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Code vectors ``[..., C]`` for code ids ``[...]``; correction ids (escape bytes, keep ids) have none."""
        ids = check_ids(ids, self.vocab_size)
        if ids.numel() and int(ids.max()) >= self.num_codes:
            raise ZooError(f"PoolingTokenizer.embed: ids >= {self.num_codes} are corrections (escape bytes, keep "
                           "ids), not codes; embed takes code ids (the first id of every segment)")  # fmt: skip
        return self.codebook.to(ids.device)[ids]

    # -- spellings ---------------------------------------------------------------------------------------
    def refresh_spellings(self) -> None:
        """Recompute every code's greedy spelling from the current weights (after training changed them)."""
        rows, lengths = [], []
        codebook = self.codebook.detach()
        with self.evaluating():
            for start in range(0, self.num_codes, SPELL_CHUNK):
                data, length = self.decoder.spell(codebook[start : start + SPELL_CHUNK], self.max_bytes)
                rows.append(data)
                lengths.append(length)
        self.spelling_bytes.copy_(torch.cat(rows).to(torch.uint8))
        self.spelling_lengths.copy_(torch.cat(lengths))
        self._spellings_stale, self._spelling_cache = False, None

    def spellings(self) -> list[bytes]:
        """Each code's spelling, as bytes."""
        if self._spellings_stale:
            self.refresh_spellings()
        if self._spelling_cache is None:
            table, lengths = self.spelling_bytes.cpu().tolist(), self.spelling_lengths.cpu().tolist()
            self._spelling_cache = [bytes(row[:length]) for row, length in zip(table, lengths)]
        return self._spelling_cache

    def _load_weights(self, path) -> None:
        super()._load_weights(path)
        self._weights_changed(stored_spellings=True)

    def _save_weights(self, path) -> None:
        if self._spellings_stale:
            self.refresh_spellings()  # the table saved is the one these weights spell
        super()._save_weights(path)

    # -- segments and their codes ------------------------------------------------------------------------
    def segments(self, text: str) -> list[bytes]:
        """The text's segments as bytes (by the rule, or by the boundary predictor)."""
        return self.segments_of([text])[0]

    def segments_of(self, texts: list[str]) -> list[list[bytes]]:
        """Each text's segments; the boundary predictor runs over all the texts' windows at once."""
        if self.boundary == "whitespace":
            return [rule_byte_segments(text, self.max_bytes) for text in texts]
        data = [text_to_bytes(text) for text in texts]
        flags = self._boundary_flags(data)
        return [split_at(raw, starts, self.max_bytes) for raw, starts in zip(data, flags)]

    @torch.no_grad()
    def _boundary_flags(self, texts: list[bytes]) -> list[list[bool]]:
        """Where sigmoid > 0.5 (logit > 0), per byte of each text. Texts are cut into windows of
        ``BOUNDARY_WINDOW`` bytes plus the predictor's reach of context either side (outside the text: masked, as the
        convolutions' zero padding), computed in chunks of ``CHUNK`` windows: one shape, so a text's boundaries are
        those it gets alone, and the many tiny per-text calls that a 2-thread CPU runs slowly are batched."""
        reach = self.boundary_predictor.reach
        width = BOUNDARY_WINDOW + 2 * reach
        windows = [(t, start) for t, raw in enumerate(texts) for start in range(0, len(raw), BOUNDARY_WINDOW)]
        flags: list[list[bool]] = [[False] * len(raw) for raw in texts]
        for first in range(0, len(windows), CHUNK):
            part = windows[first : first + CHUNK]
            data = torch.zeros(CHUNK, width, dtype=torch.long)
            valid = torch.zeros(CHUNK, width, dtype=torch.bool)
            for row, (t, start) in enumerate(part):
                low = max(0, start - reach)
                piece = texts[t][low : start + BOUNDARY_WINDOW + reach]
                offset = low - (start - reach)  # > 0 where the window's context runs off the text's start
                data[row, offset : offset + len(piece)] = torch.tensor(list(piece), dtype=torch.long)
                valid[row, offset : offset + len(piece)] = True
            logits = self.boundary_logits(data.to(self.device), valid.to(self.device)).cpu()
            for row, (t, start) in enumerate(part):
                count = min(BOUNDARY_WINDOW, len(texts[t]) - start)
                flags[t][start : start + count] = (logits[row, reach : reach + count] > 0).tolist()
        return flags

    def boundary_logits(self, data: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Bytes ``[B, L]`` -> a logit per byte ``[B, L]`` that a segment begins there (``boundary="learned"``);
        ``valid`` ``[B, L]`` marks the bytes that belong to the text (``BoundaryPredictor``)."""
        if self.boundary_predictor is None:
            raise ZooError("PoolingTokenizer: boundary='whitespace' has no boundary predictor (it cuts by rule)")
        return self.boundary_predictor(data, valid)

    def _pack(self, segments: list[bytes], slots: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Segments -> bytes ``[N, slots]`` (zero padded; ``max_segment_bytes`` slots by default) and lengths
        ``[N]``, on the model's device."""
        slots = self.max_bytes if slots is None else slots
        data = torch.zeros(len(segments), slots, dtype=torch.long)
        for row, segment in enumerate(segments):
            if not 1 <= len(segment) <= slots:
                raise ZooError(f"PoolingTokenizer: a segment must hold 1 to {slots} bytes, got {len(segment)}")
            data[row, : len(segment)] = torch.tensor(list(segment), dtype=torch.long)
        lengths = torch.tensor([len(s) for s in segments], dtype=torch.long)
        return data.to(self.device), lengths.to(self.device)

    def _quantize(self, latent: torch.Tensor):
        """Code-space vectors ``[N, C]`` -> the quantiser's output over them as a ``[1, C, 1, N]`` map."""
        return self.quantizer(rearrange(latent, "n c -> 1 c 1 n"))

    def _slot_buckets(self) -> list[int]:
        """Padded widths a segment is encoded at: the smallest of 4, 8, 16, ... (up to ``max_segment_bytes``) that
        holds it. The width depends on the segment alone, so its computation never depends on its batch."""
        widths, width = [], 4
        while width < self.max_bytes:
            widths.append(width)
            width *= 2
        return [*widths, self.max_bytes]

    @torch.no_grad()
    def _codes(self, segments: list[bytes]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ids ``[N]``, latent ``[N, C]``, quantized ``[N, C]`` of segments, in eval mode, in chunks of a fixed shape
        (``CHUNK`` rows of a width fixed by each segment's length): a segment's code never depends on its batch."""
        code_dim = self.quantizer.code_dim
        ids = torch.zeros(len(segments), dtype=torch.long, device=self.device)
        latent = torch.zeros(len(segments), code_dim, device=self.device)
        quantized = torch.zeros(len(segments), code_dim, device=self.device)
        lower = 0
        with self.evaluating():
            for width in self._slot_buckets():
                rows = [i for i, segment in enumerate(segments) if lower < len(segment) <= width]
                lower = width
                for start in range(0, len(rows), CHUNK):
                    part = rows[start : start + CHUNK]
                    chunk = [segments[i] for i in part] + [b"\0"] * (CHUNK - len(part))  # filler: a fixed shape
                    out = self._quantize(self.encoder(*self._pack(chunk, width)))
                    index = torch.tensor(part, dtype=torch.long, device=self.device)
                    ids[index] = out.indices.reshape(-1)[: len(part)]
                    latent[index] = rearrange(out.latent, "1 c 1 n -> n c")[: len(part)]
                    quantized[index] = rearrange(out.quantized, "1 c 1 n -> n c")[: len(part)]
        return ids, latent, quantized

    def _segment_codes(self, segments: list[bytes]) -> list[int]:
        """The code of each segment, each distinct segment computed once (and remembered until the weights change:
        running text repeats its words, and a segment's code depends on its bytes alone)."""
        missing = [segment for segment in dict.fromkeys(segments) if segment not in self._code_cache]
        if missing:
            if len(self._code_cache) + len(missing) > CODE_CACHE:
                self._code_cache = {}
            self._code_cache.update(zip(missing, self._codes(missing)[0].tolist()))
        return [self._code_cache[segment] for segment in segments]

    def encode_segments(self, text: str) -> SegmentEncoding:
        """The text's segments with their codes and vectors (for research on pooled representations)."""
        if not isinstance(text, str):
            raise ZooError(f"PoolingTokenizer.encode_segments: expected a str, got {type(text).__name__}")
        segments = self.segments(text)
        ids, latent, quantized = self._codes(segments)
        spelling = self.spellings()
        spelled = torch.tensor([spelling[k] == s for k, s in zip(ids.tolist(), segments)], dtype=torch.bool)
        return SegmentEncoding(segments, ids, latent, quantized, spelled)

    # -- the text contract (the id layout is corrections.py's) ---------------------------------------------
    @property
    def keep_start(self) -> int:
        """The first keep id: ``keep_start + p - 1`` keeps the first ``p`` bytes of the code's spelling."""
        return self.num_codes + ESCAPES

    def encode_one(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        per_text = self.segments_of(texts)
        codes = iter(self._segment_codes([segment for segments in per_text for segment in segments]))
        spellings, out = self.spellings(), []
        for segments in per_text:
            row = []
            for segment in segments:
                code = next(codes)
                row += segment_ids(code, segment, spellings[code], self.num_codes)
            out.append(row)
        return out

    def decode_one(self, ids: list[int]) -> str:
        return bytes_to_text(b"".join(self.token_bytes(ids)))

    def token_bytes(self, ids: list[int]) -> list[bytes]:
        """The bytes each id adds (``corrections.id_bytes``): joined, the decoded bytes."""
        return id_bytes(list(ids), self.spellings(), self.num_codes)

    def token_strings(self, ids: list[int]) -> list[str]:
        """A code as its spelling, an escape id as ``<0xNN>``, a keep id as ``<keep p>``."""
        return id_strings(list(ids), self.spellings(), self.num_codes)

    # -- the network -------------------------------------------------------------------------------------
    def autoencode(self, segments: list[bytes]) -> TokenizerOutput:
        """Segments through encoder, quantiser and teacher-forced decoder.

        output: logits ``[N, S + 1, 257]`` (byte ``t`` at position ``t``, ``END`` after the last byte);
        indices: the codes ``[N]``; losses: ``reconstruction`` (cross-entropy), ``commitment``;
        extras: ``latent`` / ``quantized`` ``[N, C]``, ``targets`` ``[N, S + 1]`` (-100 past the end),
        ``byte_accuracy`` (teacher-forced, ``END`` included)."""
        if not segments:
            raise ZooError("PoolingTokenizer: no segments to autoencode (the texts are empty)")
        data, lengths = self._pack(segments)
        out = self._quantize(self.encoder(data, lengths))
        latent = rearrange(out.latent, "1 c 1 n -> n c")
        quantized = rearrange(out.quantized, "1 c 1 n -> n c")
        logits = self.decoder(quantized, data)  # [N, S + 1, 257]
        positions = torch.arange(self.max_bytes + 1, device=data.device)[None, :]
        targets = F.pad(data, (0, 1)).masked_fill(positions == lengths[:, None], END)
        targets = targets.masked_fill(positions > lengths[:, None], -100)
        reconstruction = F.cross_entropy(rearrange(logits, "n t v -> (n t) v"), targets.reshape(-1), ignore_index=-100)
        valid = targets != -100
        accuracy = (logits.argmax(-1) == targets)[valid].float().mean()
        losses = {"reconstruction": reconstruction, **out.losses}
        extras = {"latent": latent, "quantized": quantized, "targets": targets, "byte_accuracy": accuracy.detach()}
        return TokenizerOutput(output=logits, indices=out.indices.reshape(-1), losses=losses, extras=extras)

    def forward(self, texts: str | list[str]) -> TokenizerOutput:
        """The texts' rule segments autoencoded (``autoencode``), with ``loss`` the weighted total."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = self.autoencode([s for text in texts for s in rule_byte_segments(text, self.max_bytes)])
        out.losses["loss"] = self._autoencoder_loss(out)
        return out

    def _autoencoder_loss(self, out: TokenizerOutput) -> torch.Tensor:
        """Reconstruction cross-entropy plus the weighted commitment (absent for quantisers without one)."""
        commitment = out.losses.get("commitment", torch.zeros((), device=self.device))
        return out.losses["reconstruction"] + self.commitment_weight * commitment

    def training_losses(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        """The autoencoder on up to ``segments_per_batch`` distinct rule segments of ``batch["text"]`` (drawn from
        (seed, step)), plus the boundary predictor's BCE on text crops when ``boundary="learned"``.

        Distinct, because running text repeats a few words (" the", ",") so often that a uniform draw would spend
        the batch on them, and the quantiser re-seeds unused codes from batch vectors: from a uniform draw it would
        re-seed them as copies of the frequent words."""
        if "text" not in batch:
            raise ZooError(f"PoolingTokenizer: batch has no 'text' entry (keys: {sorted(batch)})")
        self._weights_changed()  # this step's update changes the codes and their spellings
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        per_text = [rule_byte_segments(text, self.max_bytes) for text in batch["text"]]
        flat = list(dict.fromkeys(segment for segments in per_text for segment in segments))  # distinct, in order
        if not flat:
            raise ZooError("PoolingTokenizer: the batch's texts hold no bytes to train on")
        if len(flat) > self.segments_per_batch:
            chosen = torch.randperm(len(flat), generator=generator)[: self.segments_per_batch].tolist()
            flat = [flat[i] for i in chosen]
        out = self.autoencode(flat)
        loss = self._autoencoder_loss(out)
        logged = {
            "reconstruction": out.losses["reconstruction"].detach(),
            **{name: value.detach() for name, value in out.losses.items() if name != "reconstruction"},
            "byte_accuracy": out.extras["byte_accuracy"],
            "perplexity": codebook_perplexity(out.indices.detach(), self.num_codes),
        }
        if self.boundary_predictor is not None:
            bce = self._boundary_loss(per_text, generator)
            loss = loss + self.boundary_weight * bce
            logged["boundary_bce"] = bce.detach()
        return {"loss": loss, **logged}

    def _boundary_loss(self, per_text: list[list[bytes]], generator: torch.Generator) -> torch.Tensor:
        """BCE of the boundary logits against the rule's segment starts, on a crop of each text."""
        length = self.boundary_context
        data = torch.zeros(len(per_text), length, dtype=torch.long)
        targets = torch.zeros(len(per_text), length)
        mask = torch.zeros(len(per_text), length, dtype=torch.bool)
        for row, segments in enumerate(per_text):
            raw, starts = b"".join(segments), rule_start_targets(segments)
            begin = int(torch.randint(max(1, len(raw) - length + 1), (1,), generator=generator))
            crop = raw[begin : begin + length]
            data[row, : len(crop)] = torch.tensor(list(crop), dtype=torch.long)
            targets[row, : len(crop)] = torch.tensor(starts[begin : begin + length])
            mask[row, 1 : len(crop)] = True  # the crop's first byte starts a segment by definition
        data, targets, mask = data.to(self.device), targets.to(self.device), mask.to(self.device)
        logits = self.boundary_logits(data)
        if not mask.any():  # texts of one byte: nothing to predict, but keep the predictor in the graph
            return logits.sum() * 0.0
        return F.binary_cross_entropy_with_logits(logits[mask], targets[mask])
