"""The contract around a published neural audio codec whose network a maintained library implements.

    audio [B, T] in [-1, 1] at sample_rate (resampled first only when ``resample=True``)
        -> each item alone, zero-padded at the end to whole ``pad_multiple`` samples
        -> the wrapped model's encoder + quantiser -> ids [B, N, w]   (-1 past each item's frames)
    ids [B, N, w] -> the wrapped model's dequantiser + decoder -> audio [B, N * hop]

A codec that normalises its input chunk by chunk (EnCodec 48 kHz) lays its chunks' rows one after another on the
time axis and returns their scales beside the ids (``AudioTokens.scales``, ``[B, n_chunks]``); it redefines the
row and sample arithmetic (``padded_length``, ``frames``, ``samples``, ``chunks``) and ``clip_tokens`` /
``clip_audio``, and its module says how (``encodec_chunked.py``).

``w`` is the number of codebook levels emitted (``n_q``, chosen per call where the model was trained with
quantiser dropout); a family whose levels run at several rates (SNAC) says in its own module how its
levels share the one time axis. ``frame_rate`` is rows of ids per second, ``bitrate_kbps(n_q)`` =
``frame_rate * w * log2(K) / 1000``.

Every item of a batch is encoded as it is alone (items are grouped by length, each group cut to its own
length), so the tokens of a clip never depend on what the batch padded it with (the contract test checks it).

The network is the library's class built from ``model_config`` (a plain JSON dict that rebuilds it;
unknown keys are refused, since transformers' configs accept any key silently), seeded, float32, frozen.

Weights: a folder saved here loads strictly as any zoo checkpoint. An official safetensors file is read
tensor by tensor (``safe_open``), mapped to the library's names by the family's ``convert`` (by default ``rename``:
weight-norm ``weight_g`` / ``weight_v`` -> ``parametrizations.weight.original0 / 1``; DAC also reads descript's own
layout) and loaded strictly; training-only statistics the
file lacks (EMA counters of the codebooks, ``unused_buffers``) keep the network's own values and compute
nothing. Half precision is widened to float32 (exact). Pickled files are never read here:
``python -m zoo.audio.published.convert`` turns them into a folder once (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

from zoo.errors import ZooError
from zoo.pretrained import PICKLE_SUFFIXES
from zoo.targets import import_library_class
from zoo.tokenizer import (
    AudioTokens,
    NeuralTokenizer,
    TokenizerOutput,
    check_audio,
    check_sample_rate,
    groups_by_length,
    unpack_audio_tokens,
)

WIDENED = (torch.float32, torch.bfloat16, torch.float16)
# Old (torch.nn.utils.weight_norm) names -> the parametrization names transformers' modules use today.
WEIGHT_NORM_RENAMES = ((".weight_g", ".parametrizations.weight.original0"),
                       (".weight_v", ".parametrizations.weight.original1"))


def import_class(target: str) -> type:
    """``"package.module:Class"`` of the wrapped library (code zoo chose, not a data file's target)."""
    return import_library_class(target, "the published codecs need transformers 5.25 "
                                "(pip install 'zoo[hf]') and, for SNAC, the snac package (pip install snac==1.2.1)")


def checked_config_keys(owner: str, config: dict, known: set[str]) -> None:
    unknown = sorted(set(config) - known)
    if unknown:
        raise ZooError(f"{owner}: model_config keys {unknown} are not fields of the wrapped model's config "
                       f"(it takes {sorted(known - {'transformers_version'})})")


class PublishedAudioCodec(NeuralTokenizer):
    """A published neural audio codec: the wrapped library model is ``self.model``; frozen (no training here).

    Subclasses build ``self.model`` (``build``) and define ``hop``, ``num_levels``, ``vocab_size``,
    ``encode_clip`` / ``decode_clip`` (one group of equal-length items) and, where needed, ``pad_multiple``
    and ``width``."""

    modality: ClassVar[str] = "audio"
    has_decoder: ClassVar[bool] = True
    # Tensor-name suffixes that only training updates (EMA statistics): kept from the network when a file lacks them.
    unused_buffers: ClassVar[tuple[str, ...]] = ()
    max_seconds: ClassVar[float] = 600.0

    def __init__(self, model_config: dict, n_q: int | None = None, resample: bool = False, seed: int = 0):
        super().__init__()
        if not isinstance(model_config, dict):
            raise ZooError(f"{type(self).__name__}: model_config must be a mapping, got {type(model_config).__name__}")
        self.resample = bool(resample)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.build(model_config)
        self.model = model.float().eval().requires_grad_(False)
        self.seed = seed
        self.n_q = self.levels(n_q, self.num_levels)

    # -- what a family defines -------------------------------------------------------------------------
    def build(self, model_config: dict) -> torch.nn.Module:
        raise ZooError(f"{type(self).__name__} does not define build(model_config)")

    @property
    def sample_rate(self) -> int:
        raise ZooError(f"{type(self).__name__} does not define sample_rate")

    @property
    def hop(self) -> int:
        """Samples per row of ids."""
        raise ZooError(f"{type(self).__name__} does not define hop")

    @property
    def num_levels(self) -> int:
        """Codebook levels the model has (the most ``n_q`` can be)."""
        raise ZooError(f"{type(self).__name__} does not define num_levels")

    @property
    def pad_multiple(self) -> int:
        """Samples an encoded clip is padded to a multiple of (a multiple of ``hop``)."""
        return self.hop

    def allowed_levels(self) -> list[int]:
        """The ``n_q`` values the model was trained to serve (default: all of 1 .. num_levels)."""
        return list(range(1, self.num_levels + 1))

    def width(self, levels: int) -> int:
        """Ids per row for ``levels`` codebook levels (one per level unless the family lays them out otherwise)."""
        return levels

    def encode_clip(self, audio: torch.Tensor, levels: int) -> torch.Tensor:
        """Audio ``[b, T]`` (T a multiple of ``pad_multiple``) -> ids ``[b, T / hop, width(levels)]``."""
        raise ZooError(f"{type(self).__name__} does not define encode_clip")

    def decode_clip(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[b, n, w]`` (no -1) -> audio ``[b, n * hop]``."""
        raise ZooError(f"{type(self).__name__} does not define decode_clip")

    # -- what a chunk-normalised family redefines (the defaults: one clip, ids that decode on their own) ---------
    @property
    def has_scales(self) -> bool:
        """Whether decoding needs ``AudioTokens.scales`` beside the ids."""
        return False

    def padded_length(self, length: int) -> int:
        """Samples an item of ``length`` samples is zero-padded to before it is encoded."""
        return length + (-length % self.pad_multiple)

    def samples(self, frames: torch.Tensor) -> torch.Tensor:
        """Samples that ``frames`` rows of ids decode to."""
        return frames * self.hop

    def chunks(self, frames: torch.Tensor) -> torch.Tensor:
        """Scales per item for ``frames`` rows (none unless ``has_scales``)."""
        return torch.zeros_like(frames)

    def clip_tokens(self, audio: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Padded audio ``[b, padded_length(T)]`` -> ``(ids [b, frames(T), w], scales [b, chunks] or None)``."""
        return self.encode_clip(audio, levels), None

    def clip_audio(self, ids: torch.Tensor, scales: torch.Tensor | None) -> torch.Tensor:
        """ids ``[b, n, w]`` (no -1) and their scales (None unless ``has_scales``) -> audio ``[b, samples(n)]``."""
        return self.decode_clip(ids)

    # -- contract --------------------------------------------------------------------------------------
    @property
    def num_codebooks(self) -> int:
        """Ids per row that ``encode`` emits by default."""
        return self.width(self.n_q)

    @property
    def frame_rate(self) -> float:
        """Rows of ids per second: ``sample_rate / hop``."""
        return self.sample_rate / self.hop

    def bitrate_kbps(self, n_q: int | None = None) -> float:
        """``frame_rate * ids per row * log2(K) / 1000`` for ``n_q`` levels (default: what ``encode`` emits)."""
        return self.frame_rate * self.width(self.levels(n_q, self.n_q)) * math.log2(self.vocab_size) / 1000

    def levels(self, n_q: int | None, default: int) -> int:
        if n_q is None:
            return default
        allowed = self.allowed_levels()
        if isinstance(n_q, bool) or not isinstance(n_q, int) or n_q not in allowed:
            raise ZooError(f"{type(self).__name__}: n_q must be one of {allowed} (the levels this model serves), "
                           f"got {n_q!r}")
        return n_q

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Rows of ids for ``lengths`` samples: whole ``pad_multiple`` blocks of ``pad_multiple / hop`` rows each."""
        blocks = (lengths + self.pad_multiple - 1) // self.pad_multiple
        return blocks * (self.pad_multiple // self.hop)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, lengths: torch.Tensor | None = None, sample_rate: int | None = None,
               n_q: int | None = None) -> AudioTokens:
        """``[B, T]`` audio -> ``AudioTokens(ids [B, N, w] with -1 past each item's frames, frames [B])``."""
        x, lengths = check_audio(x, lengths)
        x, lengths = self._at_rate(x, lengths, sample_rate)
        if lengths.numel() and lengths.max() > self.max_seconds * self.sample_rate:
            raise ZooError(f"audio: {int(lengths.max())} samples is longer than {self.max_seconds:g} s at "
                           f"{self.sample_rate} Hz; split it first")
        levels = self.levels(n_q, self.n_q)
        frames = self.frames(lengths)
        width = self.width(levels)
        ids = torch.full((x.shape[0], int(frames.max()) if len(frames) else 0, width), -1, dtype=torch.long)
        chunks = self.chunks(frames)
        scales = torch.zeros(x.shape[0], int(chunks.max()) if len(chunks) else 0) if self.has_scales else None
        for length, rows in groups_by_length(lengths):
            clip = x[rows, :length].to(self.device)
            clip = F.pad(clip, (0, self.padded_length(length) - length))
            codes, clip_scales = self.clip_tokens(clip, levels)
            codes = codes.long().cpu()
            expected = (len(rows), int(frames[rows[0]]), width)
            if tuple(codes.shape) != expected:  # a wrapped model whose frame arithmetic is not ours
                raise ZooError(f"{type(self).__name__}: the model gave ids {list(codes.shape)} for {clip.shape[-1]} "
                               f"samples, expected {list(expected)}")
            ids[rows, : codes.shape[1]] = codes
            if scales is not None:
                scales[rows, : clip_scales.shape[1]] = clip_scales.float().cpu()
        return AudioTokens(ids, frames, scales)

    @torch.no_grad()
    def decode(self, tokens: AudioTokens | torch.Tensor) -> torch.Tensor:
        """``AudioTokens`` (or ids ``[B, N, w]`` / ``[B, N]``) -> audio ``[B, samples(N)]`` (``N * hop`` unless the
        family is chunked), silent past each length."""
        ids, frames = unpack_audio_tokens(tokens, self.checked_ids)
        scales = self.checked_scales(tokens, frames)
        widest = self.samples(torch.cat([frames, torch.tensor([ids.shape[1]])]))  # chunked: not monotonic in frames
        audio = torch.zeros(ids.shape[0], int(widest.max()))
        for length, rows in groups_by_length(frames):
            codes = ids[rows, :length]
            if (codes < 0).any():
                raise ZooError(f"ids: -1 (padding) inside the first {length} frames of items {rows.tolist()}; "
                               "only frames past each item's length may be -1")
            samples = int(self.samples(torch.tensor(length)))
            clip_scales = None if scales is None else scales[rows].to(self.device)
            audio[rows, :samples] = self.fitted(self.clip_audio(codes.to(self.device), clip_scales), samples)
        return audio

    def checked_scales(self, tokens, frames: torch.Tensor) -> torch.Tensor | None:
        """The scales of ``tokens`` where this codec needs them (``[B, >= chunks]``, finite and positive within each
        item's chunks), else None; scales given to a codec whose ids decode on their own are refused."""
        given = tokens.scales if isinstance(tokens, AudioTokens) else None
        name = type(self).__name__
        if not self.has_scales:
            if given is not None:
                raise ZooError(f"{name}: got AudioTokens with scales, but this codec's ids decode on their own "
                               "(scales belong to a chunk-normalised codec such as encodec-48khz)")
            return None
        if given is None:
            raise ZooError(f"{name}: decode needs the per-chunk scales beside the ids: pass the AudioTokens that "
                           "encode returned (ids, lengths, scales), not bare ids")
        scales = torch.as_tensor(given)
        chunks = self.chunks(frames)
        needed = int(chunks.max()) if len(chunks) else 0
        if not scales.is_floating_point() or scales.ndim != 2 or scales.shape[0] != len(frames) \
                or scales.shape[1] < needed:
            raise ZooError(f"{name}: scales must be float [B, n_chunks] with B = {len(frames)} and n_chunks >= "
                           f"{needed}, got {scales.dtype} {list(scales.shape)}")
        scales = scales.float().cpu()
        valid = torch.arange(scales.shape[1])[None] < chunks[:, None]
        if not (torch.isfinite(scales[valid]).all() and (scales[valid] > 0).all()):
            raise ZooError(f"{name}: scales within each item's chunks must be finite and positive (they are RMS "
                           "levels), got " + str(scales[valid].tolist()[:8]))
        return scales

    def fitted(self, audio: torch.Tensor, samples: int) -> torch.Tensor:
        """A decoder's output cut or zero-padded at the end to ``samples``: transposed convolutions may give a few
        samples more or less than ``samples(frames)`` (DAC 16 kHz: 8 fewer for 13 frames); a frame off is an error."""
        audio = audio.float().cpu()
        if abs(audio.shape[-1] - samples) >= self.hop:
            raise ZooError(f"{type(self).__name__}: the decoder gave {audio.shape[-1]} samples, expected {samples}")
        return F.pad(audio, (0, samples - audio.shape[-1])) if audio.shape[-1] < samples else audio[..., :samples]

    def checked_ids(self, ids) -> torch.Tensor:
        """Integer ids ``[B, N, w]`` (``[B, N]`` is one level), w a width this model decodes, values in [-1, K)."""
        ids = torch.as_tensor(ids)
        if ids.is_floating_point() or ids.dtype == torch.bool:
            raise ZooError(f"ids: expected integer ids, got dtype {ids.dtype}")
        ids = ids.long().cpu()
        if ids.ndim == 2:
            ids = ids[..., None]
        widths = sorted({self.width(n) for n in self.allowed_levels()})
        if ids.ndim != 3 or ids.shape[-1] not in widths:
            raise ZooError(f"ids: expected [B, N, w] with w in {widths}, got {list(ids.shape)}")
        if ids.numel() and (ids.min() < -1 or ids.max() >= self.vocab_size):
            raise ZooError(f"ids: values must lie in [0, {self.vocab_size}) (-1 for padding), got "
                           f"[{ids.min().item()}, {ids.max().item()}]")
        return ids

    def _at_rate(self, x: torch.Tensor, lengths: torch.Tensor, sample_rate) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio at ``self.sample_rate``: resampled only when ``resample=True``, else a rate mismatch is an error."""
        if sample_rate is None or sample_rate == self.sample_rate:
            check_sample_rate(sample_rate, self.sample_rate)
            return x, lengths
        if not self.resample:
            check_sample_rate(sample_rate, self.sample_rate)  # raises, naming both rates
        check_sample_rate(sample_rate, sample_rate)  # a positive number of Hz
        if int(sample_rate) != sample_rate:
            raise ZooError(f"audio: resampling needs an integer sample_rate, got {sample_rate!r}")
        import torchaudio.functional as AF

        # Zero past each length first, so what a batch padded with never leaks into an item.
        keep = torch.arange(x.shape[1])[None] < lengths[:, None]
        out = AF.resample(x * keep, int(sample_rate), self.sample_rate)
        new = torch.div(lengths * self.sample_rate + int(sample_rate) - 1, int(sample_rate), rounding_mode="floor")
        return out.clamp(-1.0, 1.0), new.clamp(max=out.shape[1])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> TokenizerOutput:
        tokens = self.encode(x, lengths)
        return TokenizerOutput(output=self.decode(tokens)[:, : x.shape[1]], indices=tokens.ids)

    def training_losses(self, batch: dict, step: int):
        raise ZooError(f"{type(self).__name__} wraps published weights and is used frozen; fine-tuning it is not "
                       "implemented in zoo")

    # -- weights ---------------------------------------------------------------------------------------
    @classmethod
    def rename(cls, name: str) -> str:
        """One tensor name of an official file -> this wrapper's (``model.`` + the library's names)."""
        for old, new in WEIGHT_NORM_RENAMES:
            if name.endswith(old):
                name = name[: -len(old)] + new
        return name if name.startswith("model.") else "model." + name

    def convert(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """An official file's tensors -> this wrapper's state dict (default: ``rename`` each; a family whose authors'
        layout differs from the library's, DAC's, maps it here)."""
        return {self.rename(name): tensor for name, tensor in state.items()}

    def _load_weights(self, path: Path) -> None:
        if path.suffix in PICKLE_SUFFIXES:
            raise ZooError(f"{path}: a pickled checkpoint, which zoo.load never reads; convert it once with "
                           "`python -m zoo.audio.published.convert SRC --to DIR NAME` and load DIR")
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                names = list(handle.keys())
                if names and all(name.startswith("model.") for name in names):  # a folder saved here
                    return super()._load_weights(path)
                state = {name: handle.get_tensor(name) for name in names}
        except SafetensorError as err:
            raise ZooError(f"{path}: not a valid safetensors file ({err})") from None
        self.load_converted(self.convert(state), str(path))

    def load_converted(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Load a state dict in this wrapper's names strictly; half precision is widened, nothing else is cast."""
        for name, tensor in state.items():
            if tensor.is_floating_point() and tensor.dtype not in WIDENED:
                raise ZooError(f"{source}: tensor {name!r} is {tensor.dtype}; expected float32, bfloat16 or float16")
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise ZooError(f"{source}: tensor {name!r} holds NaN/Inf values; refusing weights that cannot compute")
        own = self.state_dict()
        kept = {k: v for k, v in own.items() if k.endswith(self.unused_buffers) and k not in state} \
            if self.unused_buffers else {}
        state = {**kept, **state}
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        misshapen = [f"{k} {list(state[k].shape)} (expected {list(own[k].shape)})"
                     for k in own.keys() & state.keys() if state[k].shape != own[k].shape]
        if missing or unexpected or misshapen:
            raise ZooError(f"{source}: weights do not match {type(self).__name__}: missing {missing[:6]}, "
                           f"unexpected {unexpected[:6]}, misshapen {misshapen[:6]}")
        state = {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items()}
        self.load_state_dict(state, strict=True)


class TransformersCodec(PublishedAudioCodec):
    """A codec whose network is a transformers class (``hf_config`` / ``hf_model``) built from ``model_config``."""

    hf_config: ClassVar[str] = ""
    hf_model: ClassVar[str] = ""

    def build(self, model_config: dict) -> torch.nn.Module:
        config_cls, model_cls = import_class(self.hf_config), import_class(self.hf_model)
        checked_config_keys(type(self).__name__, model_config, set(config_cls().to_dict()))
        return model_cls(config_cls(**model_config))

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.sampling_rate)

    @property
    def vocab_size(self) -> int:
        return int(self.model.config.codebook_size)

    def extra_repr(self) -> str:
        return (f"{self.model.config.model_type}, {self.sample_rate} Hz, {self.frame_rate:g} frames/s, "
                f"n_q={self.n_q}/{self.num_levels}, K={self.vocab_size}")
