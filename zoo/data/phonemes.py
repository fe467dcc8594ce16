"""espeak-ng speech with its own phoneme timings: CTC targets and frame-level phone alignments.

espeak-ng's command line writes phonemes (``-x`` / ``--ipa``) but no timings (``--pho`` needs MBROLA).
Its library reports them: with ``espeakINITIALIZE_PHONEME_EVENTS`` every phoneme it speaks comes back
as an event (IPA string, sample index) next to the audio it synthesises. ``EspeakSynth`` drives
``libespeak-ng.so.1`` through ctypes and returns both, so the alignment is exact by construction
(the synthesiser placed each phoneme there); no forced aligner is involved.

* ``audio-transcripts``: a folder of user speech with a ``path,text`` CSV; targets are espeak-ng's phones
  of each transcript (synthesised, audio discarded) or its characters (for the paper-scale recipe).
* ``espeak-phones``: the ``espeak`` set's design (country names in several languages, names and
  voice variants held out by split) rendered through the library, with per item ``phones`` (the
  CTC target ids, pauses dropped) and ``frame_phones`` (one phone id per 10 ms frame, ``1`` = silence),
  ``text_id`` (the utterance's text; with ``voices_per_text > 1`` the same text is spoken by several
  voices, for speaker-invariance measures), ``language`` and ``voice``.

Phone ids: ``0`` is the CTC blank, ``1`` silence / pause, then the sorted IPA phone strings met in
the whole rendered set (all splits), so ids are stable across splits (``dataset.phones`` lists them).
A set with ``voices_per_text > 1`` keeps the ids of the one-voice set of the same options and appends
the phones only it has, so a model or probe trained on the one-voice set reads its labels alike.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

import numpy as np
import torch

from zoo.data.audio import (
    DEFAULT_LANGUAGES,
    ESPEAK_VARIANTS,
    SAMPLE_RATE,
    SPLITS,
    AudioClips,
    _cache_file,
    _check_split,
    _save_cache,
    _select,
    country_names,
    split_groups,
)
from zoo.errors import ZooError

BLANK, SILENCE = 0, 1
PHONE_HOP = 160  # samples per alignment frame at 16 kHz: 100 frames/s
PHONE_FRAME_RATE = SAMPLE_RATE // PHONE_HOP

_EVENT_END, _EVENT_PHONEME = 0, 7
_RATE, _PITCH = 1, 3  # espeak_PARAMETER
_INIT_FLAGS = 0x0001 | 0x0002 | 0x8000  # PHONEME_EVENTS | PHONEME_IPA | DONT_EXIT
_SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS
_CHARS_UTF8 = 1


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):  # espeak_EVENT (speak_lib.h)
    _fields_ = [
        ("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
        ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p), ("id", _EventId),
    ]  # fmt: skip


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class EspeakSynth:
    """espeak-ng's library (one per process): ``synthesize`` -> 16 kHz int16 audio and timed IPA phonemes."""

    _instance: EspeakSynth | None = None
    _lock = threading.Lock()

    def __init__(self):
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(name)
        except OSError:
            raise ZooError("espeak-phones: libespeak-ng.so.1 not found; install espeak-ng (apt install espeak-ng)") \
                from None
        self.native_rate = int(self.lib.espeak_Initialize(_SYNCHRONOUS, 0, None, _INIT_FLAGS))
        if self.native_rate <= 0:
            raise ZooError("espeak-phones: espeak_Initialize failed (is espeak-ng-data installed?)")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[str, int]] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced: the library calls it
        self.lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> EspeakSynth:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _collect(self, wav, count, events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        index = 0
        while events[index].type != _EVENT_END:
            event = events[index]
            if event.type == _EVENT_PHONEME:
                self._events.append((event.id.string.decode("utf-8", "replace"), int(event.sample)))
            index += 1
        return 0

    def synthesize(self, voice: str, text: str, speed: int = 175, pitch: int = 50):
        """``(audio int16 [T] at 16 kHz, phones [list of IPA str, "" = pause], starts [16 kHz sample index])``."""
        from zoo.data.audio import _resampler

        with self._lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ZooError(f"espeak-phones: espeak-ng has no voice {voice!r} (see espeak-ng --voices)")
            self.lib.espeak_SetParameter(_RATE, int(speed), 0)
            self.lib.espeak_SetParameter(_PITCH, int(pitch), 0)
            self._chunks, self._events = [], []
            data = text.encode("utf-8")
            status = self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, _CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
            if status != 0:
                raise ZooError(f"espeak-phones: espeak_Synth failed ({status}) for voice {voice!r}")
            chunks, events = self._chunks, self._events
        native = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        wave = torch.from_numpy(native.astype(np.float32) / 32768.0)
        if self.native_rate != SAMPLE_RATE:
            wave = _resampler(self.native_rate)(wave.unsqueeze(0))[0]
        audio = (wave.clamp(-1, 1) * 32767).round().to(torch.int16).numpy()
        scale = SAMPLE_RATE / self.native_rate
        return audio, [phone for phone, _ in events], [int(round(sample * scale)) for _, sample in events]


def frame_labels(ids: list[int], starts: list[int], num_samples: int, hop: int = PHONE_HOP) -> np.ndarray:
    """One phone id per ``hop``-sample frame (the phone sounding at the frame's centre; SILENCE before the first)."""
    num_frames = num_samples // hop
    centres = np.arange(num_frames) * hop + hop // 2
    order = np.searchsorted(np.asarray(starts, dtype=np.int64), centres, side="right") - 1
    table = np.asarray([SILENCE] + list(ids), dtype=np.int64)
    return table[order + 1]


def downsample_labels(frames: np.ndarray, rate: float, num: int) -> np.ndarray:
    """Phone labels at ``rate`` frames/s (``num`` of them) from 100 Hz labels: the label at each token's centre."""
    centres = ((np.arange(num) + 0.5) * PHONE_FRAME_RATE / rate).astype(np.int64)
    return frames[np.clip(centres, 0, max(len(frames) - 1, 0))] if len(frames) else np.full(num, SILENCE)


class PhoneClips(AudioClips):
    """``AudioClips`` with phone targets: items add ``phones`` (list of ids), ``frame_phones`` (list, 100 Hz)."""

    def __init__(self, waves, labels, classes, label, targets, frames, phones):
        super().__init__("espeak-phones", waves, labels, classes, label)
        self.targets, self.frames, self.phones = targets, frames, phones

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        item["phones"] = [int(v) for v in self.targets[index]]
        item["frame_phones"] = [int(v) for v in self.frames[index]]
        return item


def espeak_phones(
    split: str = "train",
    seed: int = 0,
    limit: int | None = None,
    label: str = "language",
    languages: str = DEFAULT_LANGUAGES,
    per_language: int = 150,
    words: int = 3,
    max_seconds: float = 3.0,
    voices_per_text: int = 1,
) -> PhoneClips:
    """espeak-ng speech with exact phoneme timings (see the module docstring).

    Args:
        languages: espeak-ng / pycountry codes joined by ``+``.
        per_language: texts per language (70 / 10 / 20 train / val / test, names and voices held out).
        voices_per_text: distinct voices (of the split's variants) that speak each text.
        label: ``language``, ``voice`` or ``text_id``.
    """
    _check_split("espeak-phones", split)
    codes = languages.split("+") if isinstance(languages, str) else list(languages)
    if len(codes) < 2 or len(set(codes)) != len(codes):
        raise ZooError(f"dataset 'espeak-phones': languages must name at least two distinct codes, got {languages!r}")
    if not 1 <= int(voices_per_text) <= 2:
        raise ZooError(f"dataset 'espeak-phones': voices_per_text must be 1 or 2 (2 voices per held-out split), "
                       f"got {voices_per_text}")
    params = {"languages": codes, "per_language": per_language, "words": words, "seed": seed, "max": max_seconds,
              "voices_per_text": int(voices_per_text)}
    if int(voices_per_text) > 1:
        params["inventory"] = "single-voice set first"
    cache = _cache_file("espeak-phones", {**params, "version": 1})
    if not cache.is_file():
        base = None
        if int(voices_per_text) > 1:  # phone ids as in the one-voice set of the same texts' design
            base = espeak_phones("all", seed, None, "language", codes, per_language, words, max_seconds, 1).phones
        _render(cache, codes, per_language, words, seed, max_seconds, int(voices_per_text), base)
    stored = np.load(cache)
    meta, offsets, phone_offsets, frame_offsets = stored["meta"], stored["offsets"], stored["phone_offsets"], \
        stored["frame_offsets"]
    indices = [i for i in range(len(meta)) if split == "all" or meta[i, 2] == SPLITS.index(split)]
    indices = _select(indices, seed, limit)
    audio, targets, frames = stored["audio"], stored["targets"], stored["frames"]
    labels = {"language": meta[indices, 0], "voice": meta[indices, 1], "text_id": meta[indices, 3]}
    classes = {"language": codes, "voice": list(ESPEAK_VARIANTS), "text_id": [str(t) for t in range(len(meta))]}
    return PhoneClips(
        [audio[offsets[i] : offsets[i + 1]] for i in indices], labels, classes, label,
        [targets[phone_offsets[i] : phone_offsets[i + 1]] for i in indices],
        [frames[frame_offsets[i] : frame_offsets[i + 1]] for i in indices],
        [str(p) for p in stored["phones"]],
    )  # fmt: skip


def _render(cache, codes, per_language, words, seed, max_seconds, voices_per_text, base=None) -> None:
    synth = EspeakSynth.get()
    name_groups = split_groups(list(range(len(country_names("en")))), seed)
    voice_groups = split_groups(list(ESPEAK_VARIANTS), seed, fractions=(0.17, 0.17))
    rng = np.random.default_rng(seed)
    rendered, meta = [], []
    limit = int(max_seconds * SAMPLE_RATE)
    text_id = 0
    for language_index, language in enumerate(codes):
        names = country_names(language)
        for k in range(per_language):
            part = "test" if k % 10 >= 8 else "val" if k % 10 == 7 else "train"
            chosen = rng.choice(sorted(name_groups[part]), size=words, replace=False)
            variants = rng.choice(sorted(voice_groups[part]), size=voices_per_text, replace=False)
            text = ", ".join(names[i] for i in chosen)
            speed, pitch = int(rng.integers(140, 181)), int(rng.integers(30, 71))
            for variant in variants:
                audio, phones, starts = synth.synthesize(f"{language}+{variant}", text, speed, pitch)
                audio = audio[:limit]
                kept = [(p, s) for p, s in zip(phones, starts) if s < len(audio)]
                rendered.append((audio, kept))
                meta.append((language_index, ESPEAK_VARIANTS.index(str(variant)), SPLITS.index(part), text_id))
            text_id += 1
    inventory = sorted({p for _, kept in rendered for p, _ in kept if p})
    if base is not None:  # the one-voice set's ids first, phones it never met after them
        inventory = list(base[2:]) + sorted(set(inventory) - set(base))
    phones = ["<blank>", "<sil>"] + inventory
    index = {p: i + 2 for i, p in enumerate(inventory)}
    targets, frames = [], []
    for audio, kept in rendered:
        ids = [index[p] if p else SILENCE for p, _ in kept]
        targets.append(np.asarray([i for i in ids if i != SILENCE], dtype=np.int16))
        frames.append(frame_labels(ids, [s for _, s in kept], len(audio)).astype(np.int16))
    _save_cache(
        cache,
        audio=np.concatenate([a for a, _ in rendered]), offsets=np.cumsum([0] + [len(a) for a, _ in rendered]),
        targets=np.concatenate(targets), phone_offsets=np.cumsum([0] + [len(t) for t in targets]),
        frames=np.concatenate(frames), frame_offsets=np.cumsum([0] + [len(f) for f in frames]),
        meta=np.asarray(meta), phones=np.asarray(phones),
    )  # fmt: skip


# -- user speech with transcripts -----------------------------------------------------------------------------


def transcript_phones(text: str, voice: str) -> list[str]:
    """The IPA phones espeak-ng would speak for ``text`` with ``voice`` (pauses dropped); its audio is discarded."""
    _, phones, _ = EspeakSynth.get().synthesize(voice, text)
    return [p for p in phones if p]


def audio_transcripts(
    path: str,
    transcripts: str,
    split: str = "all",
    seed: int = 0,
    limit: int | None = None,
    targets: str = "phones",
    language: str = "en",
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
) -> PhoneClips:
    """A folder of speech with a ``path,text`` CSV of transcripts, as CTC targets for an S3-style tokenizer.

    Args:
        transcripts: CSV with columns ``path`` (relative to ``path``) and ``text``.
        targets: ``phones`` (espeak-ng's IPA phones of the text in ``language``) or ``chars`` (the
            text's characters, lower-cased; spaces kept as a word boundary).
    Items have no ``frame_phones`` (no alignment); ``dataset.phones`` lists the target inventory.
    """
    import csv
    from pathlib import Path

    from zoo.io import read_audio

    _check_split("audio-transcripts", split)
    if targets not in ("phones", "chars"):
        raise ZooError(f"dataset 'audio-transcripts': targets must be 'phones' or 'chars', got {targets!r}")
    root, table = Path(path).expanduser(), Path(transcripts).expanduser()
    if not root.is_dir():
        raise ZooError(f"dataset 'audio-transcripts': {root} is not a folder")
    if not table.is_file():
        raise ZooError(f"dataset 'audio-transcripts': transcripts file {table} does not exist")
    with open(table, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"path", "text"} <= set(rows[0]):
        raise ZooError(f"dataset 'audio-transcripts': {table} must be a CSV with columns 'path' and 'text'")
    missing = [row["path"] for row in rows if not (root / row["path"]).is_file()]
    if missing:
        raise ZooError(f"dataset 'audio-transcripts': {len(missing)} files of {table} are missing, e.g. {missing[:3]}")
    if targets == "phones":
        strings = [transcript_phones(row["text"], language) for row in rows]
    else:
        strings = [list(" ".join(row["text"].lower().split())) for row in rows]
    inventory = sorted({s for string in strings for s in string})
    phones = ["<blank>", "<sil>"] + inventory
    index = {p: i + 2 for i, p in enumerate(inventory)}
    if split == "all":
        indices = list(range(len(rows)))
    else:
        groups = split_groups(list(range(len(rows))), seed, (val_fraction, test_fraction))
        indices = sorted(groups[split])
    indices = _select(indices, seed, limit)
    waves = [lambda f=root / rows[i]["path"]: read_audio(f, sample_rate=SAMPLE_RATE) for i in indices]
    ids = [np.asarray([index[s] for s in strings[i]], dtype=np.int16) for i in indices]
    labels = {"label": np.full(len(indices), -1), "text_id": np.asarray(indices)}
    classes = {"label": [], "text_id": [str(i) for i in range(len(rows))]}
    clips = PhoneClips(waves, labels, classes, "label", ids, [np.zeros(0, np.int16)] * len(indices), phones)
    clips.name = "audio-transcripts"
    return clips
