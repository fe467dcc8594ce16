"""Built-in audio datasets that work offline: General MIDI notes, multilingual speech, and user folders.

* ``gm-notes``: FluidSynth renders of the 128 General MIDI instruments at several pitches (labels:
  ``family`` (16), ``program`` (128), ``pitch``). Splits hold out whole pitches by default, so a probe
  must recognise an instrument at pitches it never saw.
* ``espeak``: espeak-ng speech in several languages (label: ``language``). The utterances read
  translated country names (pycountry's catalogs); splits hold out both the names and the voice
  variants, so a probe must recognise a language in unseen words from unseen voices.
* ``audio-folder``: a folder of audio files, labelled by sub-folder or by a ``path,label`` CSV.

Every item is ``{"audio": [T] float in [-1, 1] at 16 kHz, "label": int}`` plus the other label kinds.
Rendered sets are cached under ``zoo.hub.cache_dir()/datasets``; splits are fixed by ``seed``.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from zoo.errors import ZooError

SAMPLE_RATE = 16_000
SPLITS = ("train", "val", "test", "all")
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
GM_FAMILIES = (
    "piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
    "reed", "pipe", "synth lead", "synth pad", "synth effects", "ethnic", "percussive", "sound effects",
)  # fmt: skip
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
DEFAULT_LANGUAGES = "en+de+fr+es+it+pl+ru+fi"


class AudioClips(torch.utils.data.Dataset):
    """Clips with integer labels; ``label`` names which label kind ``item["label"]`` holds.

    Attributes:
        classes: class names of each label kind (``classes[kind][i]``).
        sample_rate: 16 kHz.
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, name: str, waves: list, labels: dict[str, np.ndarray], classes: dict[str, list], label: str):
        if label not in labels:
            raise ZooError(f"dataset {name!r}: label {label!r} is not one of {sorted(labels)}")
        self.name, self.waves, self.labels, self.classes, self.label = name, waves, labels, classes, label

    @property
    def num_classes(self) -> int:
        return len(self.classes[self.label])

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, index: int) -> dict:
        wave = self.waves[index]
        wave = wave() if callable(wave) else torch.from_numpy(wave.astype(np.float32) / 32768.0)
        item = {"audio": wave, "label": int(self.labels[self.label][index])}
        item.update({kind: int(values[index]) for kind, values in self.labels.items()})
        return item


# -- shared helpers -------------------------------------------------------------------------------------------


def require_tool(tool: str, packages: str) -> str:
    """The path of a command-line tool, or an error with the exact command that installs it."""
    path = shutil.which(tool)
    if path is None:
        raise ZooError(f"{tool} is not installed; install it with: sudo apt-get install {packages}")
    return path


def _check_split(name: str, split: str) -> None:
    if split not in SPLITS:
        raise ZooError(f"dataset {name!r}: split must be one of {SPLITS}, got {split!r}")


def split_groups(groups: list, seed: int, fractions: tuple[float, float] = (0.1, 0.2)) -> dict[str, set]:
    """Partition ``groups`` by seed into ``val`` / ``test`` (given fractions, at least one each) and ``train``."""
    order = list(np.random.default_rng(seed).permutation(len(groups)))
    n_val = max(1, round(fractions[0] * len(groups)))
    n_test = max(1, round(fractions[1] * len(groups)))
    if n_val + n_test >= len(groups):
        raise ZooError(f"cannot hold out val and test groups from only {len(groups)} groups; add more")
    pick = [groups[i] for i in order]
    return {"val": set(pick[:n_val]), "test": set(pick[n_val : n_val + n_test]), "train": set(pick[n_val + n_test :])}


def _select(indices: list[int], seed: int, limit: int | None) -> list[int]:
    """A seeded random subset of ``limit`` indices (all when ``limit`` is None), in their original order."""
    if limit is None or limit >= len(indices):
        return indices
    if limit < 1:
        raise ZooError(f"limit must be a positive number of clips, got {limit}")
    chosen = np.random.default_rng(seed + 1).permutation(len(indices))[:limit]
    return [indices[i] for i in sorted(chosen)]


def _cache_file(kind: str, params: dict) -> Path:
    from zoo.hub import cache_dir

    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "datasets" / f"{kind}-{digest}.npz"


def _save_cache(path: Path, **arrays) -> None:
    from zoo.pretrained import atomic_write_bytes

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


@functools.lru_cache(maxsize=8)
def _resampler(rate: int):
    """A torchaudio resampler to 16 kHz, built once per source rate (its sinc kernel is the costly part)."""
    import torchaudio

    return torchaudio.transforms.Resample(rate, SAMPLE_RATE)


def _read_wav_16k(path: Path) -> np.ndarray:
    """A rendered file as mono int16 at 16 kHz."""
    import soundfile

    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    wave = torch.from_numpy(data.mean(axis=1))
    if rate != SAMPLE_RATE:
        wave = _resampler(rate)(wave)
    return (wave.clamp(-1, 1) * 32767).round().to(torch.int16).numpy()


# -- gm-notes -------------------------------------------------------------------------------------------------


def _vlq(value: int) -> bytes:
    """MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


def midi_file(notes: list[tuple[int, int]], slot_ticks: int, note_ticks: int, velocity: int = 100) -> bytes:
    """A format-0 MIDI file playing ``(program, pitch)`` notes one per slot on channel 1 (120 bpm, 480 ppq).

    Each slot: program change, note on, note off after ``note_ticks``, and "all sound off" at the slot's
    end so no release tail leaks into the next clip.
    """
    events = [(0, b"\xff\x51\x03\x07\xa1\x20")]  # tempo: 500000 us per quarter note
    for program, pitch in notes:
        events += [(0, bytes([0xC0, program])), (0, bytes([0x90, pitch, velocity]))]
        events += [(note_ticks, bytes([0x80, pitch, 0])), (slot_ticks - note_ticks, bytes([0xB0, 120, 0]))]
    events.append((0, b"\xff\x2f\x00"))
    track = b"".join(_vlq(delta) + event for delta, event in events)
    header = b"MThd" + b"".join(value.to_bytes(size, "big") for value, size in ((6, 4), (0, 2), (1, 2), (480, 2)))
    return header + b"MTrk" + len(track).to_bytes(4, "big") + track


def render_gm_notes(notes: list[tuple[int, int]], seconds: float) -> np.ndarray:
    """Render notes with FluidSynth into int16 clips ``[len(notes), seconds * 16000]``."""
    fluidsynth = require_tool("fluidsynth", "fluidsynth fluid-soundfont-gm")
    if not SOUNDFONT.is_file():
        raise ZooError(f"{SOUNDFONT} is missing; install it with: sudo apt-get install fluid-soundfont-gm")
    ticks_per_second = 960  # 480 ppq at 120 bpm
    slot_ticks = round(seconds * ticks_per_second)
    with tempfile.TemporaryDirectory(prefix="zoo-gm-") as tmp:
        midi, wav = Path(tmp) / "notes.mid", Path(tmp) / "notes.wav"
        midi.write_bytes(midi_file(notes, slot_ticks, note_ticks=round(slot_ticks * 0.75)))
        command = [fluidsynth, "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.8", "-r", str(SAMPLE_RATE), "-F", str(wav)]
        subprocess.run([*command, str(SOUNDFONT), str(midi)], check=True, capture_output=True)
        audio = _read_wav_16k(wav)
    clip = round(slot_ticks * SAMPLE_RATE / ticks_per_second)
    audio = np.pad(audio, (0, max(0, clip * len(notes) - len(audio))))
    starts = [round(k * slot_ticks * SAMPLE_RATE / ticks_per_second) for k in range(len(notes))]
    return np.stack([audio[start : start + clip] for start in starts])


def gm_notes(
    split: str = "train",
    seed: int = 0,
    limit: int | None = None,
    label: str = "family",
    holdout: str = "pitch",
    pitch_low: int = 36,
    pitch_high: int = 84,
    pitch_step: int = 4,
    seconds: float = 1.0,
) -> AudioClips:
    """General MIDI instruments (all 128 programs) at pitches ``pitch_low..pitch_high`` every ``pitch_step``.

    Args:
        label: ``family`` (16 GM families), ``program`` (128) or ``pitch``.
        holdout: ``pitch`` (val / test pitches never appear in train) or ``note`` (random notes).
        seconds: clip length; each note sounds for the first 75% of it.
    """
    _check_split("gm-notes", split)
    if holdout not in ("pitch", "note"):
        raise ZooError(f"dataset 'gm-notes': holdout must be 'pitch' or 'note', got {holdout!r}")
    if label == "pitch" and holdout == "pitch":
        raise ZooError("dataset 'gm-notes': label=pitch needs holdout=note (held-out pitches are unseen classes)")
    pitches = list(range(pitch_low, pitch_high + 1, pitch_step))
    if not pitches or pitches[0] < 0 or pitches[-1] > 127:
        raise ZooError(f"dataset 'gm-notes': pitches must lie in 0..127, got {pitch_low}..{pitch_high}")
    notes = [(program, pitch) for program in range(128) for pitch in pitches]
    cache = _cache_file("gm-notes", {"pitches": pitches, "seconds": seconds, "version": 1})
    if not cache.is_file():
        _save_cache(cache, audio=render_gm_notes(notes, seconds))
    audio = np.load(cache)["audio"]
    audible = np.abs(audio).max(axis=1) > 32  # drop notes an instrument does not sound (peak < 0.1% of full scale)
    program = np.array([n[0] for n in notes])
    pitch_index = np.array([pitches.index(n[1]) for n in notes])
    if holdout == "pitch":
        groups = split_groups(pitches, seed)
        group_of = [n[1] for n in notes]
    else:
        groups = split_groups(list(range(len(notes))), seed)
        group_of = list(range(len(notes)))
    indices = [i for i in range(len(notes)) if audible[i] and (split == "all" or group_of[i] in groups[split])]
    indices = _select(indices, seed, limit)
    labels = {"family": program[indices] // 8, "program": program[indices], "pitch": pitch_index[indices]}
    classes = {
        "family": list(GM_FAMILIES),
        "program": [f"program {p}" for p in range(128)],
        "pitch": [f"{NOTE_NAMES[p % 12]}{p // 12 - 1}" for p in pitches],
    }
    return AudioClips("gm-notes", [audio[i] for i in indices], labels, classes, label)


# -- espeak ------------------------------------------------------------------------------------------------------


def country_names(language: str) -> list[str]:
    """The 249 ISO 3166 country names translated into ``language`` (English where no translation exists)."""
    import gettext

    import pycountry

    names = [country.name for country in pycountry.countries]
    if language == "en":
        return names
    locales = Path(pycountry.__file__).parent / "locales"
    try:
        catalog = gettext.translation("iso3166-1", str(locales), languages=[language])
    except OSError:
        raise ZooError(f"dataset 'espeak': pycountry has no country names in language {language!r}") from None
    return [catalog.gettext(name) for name in names]


def _render_espeak(jobs: list[tuple[str, str, str, int, int]], max_seconds: float) -> list[np.ndarray]:
    """Render ``(language, variant, text, speed, pitch)`` utterances to int16 16 kHz clips."""
    espeak = require_tool("espeak-ng", "espeak-ng")
    clips = []
    with tempfile.TemporaryDirectory(prefix="zoo-espeak-") as tmp:
        wav = Path(tmp) / "utterance.wav"
        for language, variant, text, speed, pitch in jobs:
            command = [espeak, "-v", f"{language}+{variant}", "-s", str(speed), "-p", str(pitch), "-w", str(wav), text]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0 or not wav.is_file():
                raise ZooError(f"espeak-ng failed for voice {language}+{variant}: {result.stderr.strip()}")
            clips.append(_read_wav_16k(wav)[: int(max_seconds * SAMPLE_RATE)])
    return clips


def espeak(
    split: str = "train",
    seed: int = 0,
    limit: int | None = None,
    label: str = "language",
    languages: str = DEFAULT_LANGUAGES,
    per_language: int = 150,
    words: int = 3,
    max_seconds: float = 3.0,
) -> AudioClips:
    """Synthetic multilingual speech: ``per_language`` utterances of ``words`` country names per language.

    Args:
        languages: espeak-ng / pycountry language codes joined by ``+`` (``"en+de+fr"``) or a list.
        label: ``language`` or ``voice`` (the espeak-ng variant).
        max_seconds: utterances are cut to this length.
    """
    _check_split("espeak", split)
    codes = languages.split("+") if isinstance(languages, str) else list(languages)
    if len(codes) < 2 or len(set(codes)) != len(codes):
        raise ZooError(f"dataset 'espeak': languages must name at least two distinct codes, got {languages!r}")
    params = {"languages": codes, "per_language": per_language, "words": words, "seed": seed, "max": max_seconds}
    cache = _cache_file("espeak", {**params, "version": 1})
    if not cache.is_file():
        name_groups = split_groups(list(range(len(country_names("en")))), seed)
        voice_groups = split_groups(list(ESPEAK_VARIANTS), seed, fractions=(0.17, 0.17))
        rng = np.random.default_rng(seed)
        jobs, meta = [], []
        for language_index, language in enumerate(codes):
            names = country_names(language)
            for k in range(per_language):
                part = "test" if k % 10 >= 8 else "val" if k % 10 == 7 else "train"  # 70 / 10 / 20
                chosen = rng.choice(sorted(name_groups[part]), size=words, replace=False)
                variant = str(rng.choice(sorted(voice_groups[part])))
                text = ", ".join(names[i] for i in chosen)
                jobs.append((language, variant, text, int(rng.integers(140, 181)), int(rng.integers(30, 71))))
                meta.append((language_index, ESPEAK_VARIANTS.index(variant), SPLITS.index(part)))
        clips = _render_espeak(jobs, max_seconds)
        offsets = np.cumsum([0] + [len(c) for c in clips])
        texts = np.array([job[2] for job in jobs])
        _save_cache(cache, audio=np.concatenate(clips), offsets=offsets, meta=np.array(meta), texts=texts)
    stored = np.load(cache)
    audio, offsets, meta = stored["audio"], stored["offsets"], stored["meta"]
    indices = [i for i in range(len(meta)) if split == "all" or meta[i, 2] == SPLITS.index(split)]
    indices = _select(indices, seed, limit)
    labels = {"language": meta[indices, 0], "voice": meta[indices, 1]}
    classes = {"language": codes, "voice": list(ESPEAK_VARIANTS)}
    return AudioClips("espeak", [audio[offsets[i] : offsets[i + 1]] for i in indices], labels, classes, label)


# -- audio-folder ---------------------------------------------------------------------------------------------


def audio_folder(
    path: str,
    split: str = "all",
    seed: int = 0,
    limit: int | None = None,
    labels: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> AudioClips:
    """Audio files under ``path`` (WAV, FLAC, OGG, MP3), read lazily, mixed to mono and resampled to 16 kHz.

    Labels come from a CSV (``labels``: a file with ``path,label`` rows, paths relative to the folder) or
    else from the first sub-folder of each file; files directly in ``path`` without a CSV get label -1.
    Splits are a seeded random partition of the files (``val_fraction`` / ``test_fraction``).
    """
    from zoo.io import AUDIO_SUFFIXES, read_audio

    _check_split("audio-folder", split)
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ZooError(f"dataset 'audio-folder': {root} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise ZooError(f"dataset 'audio-folder': no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) under {root}")
    if labels is not None:
        table_path = Path(labels).expanduser()
        if not table_path.is_file():
            raise ZooError(f"dataset 'audio-folder': labels file {table_path} does not exist")
        with open(table_path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if not rows or not {"path", "label"} <= set(rows[0]):
            raise ZooError(f"dataset 'audio-folder': {table_path} must be a CSV with columns 'path' and 'label'")
        table = {str((root / row["path"]).resolve()): row["label"] for row in rows}
        missing = [str(f.relative_to(root)) for f in files if str(f.resolve()) not in table]
        if missing:
            raise ZooError(f"dataset 'audio-folder': {table_path} has no label for {missing[:5]}")
        names = [table[str(f.resolve())] for f in files]
    else:
        names = [f.relative_to(root).parts[0] if len(f.relative_to(root).parts) > 1 else None for f in files]
    class_names = sorted({n for n in names if n is not None})
    label_ids = np.array([class_names.index(n) if n is not None else -1 for n in names])
    if split == "all":
        indices = list(range(len(files)))
    else:
        groups = split_groups(list(range(len(files))), seed, (val_fraction, test_fraction))
        indices = sorted(groups[split])
    indices = _select(indices, seed, limit)
    waves = [lambda f=files[i]: read_audio(f, sample_rate=SAMPLE_RATE) for i in indices]
    return AudioClips("audio-folder", waves, {"label": label_ids[indices]}, {"label": class_names}, "label")


# -- audio-mix ------------------------------------------------------------------------------------------------


def audio_mix(
    sets: str | list = "gm-notes+espeak", split: str = "train", seed: int = 0, limit: int | None = None
) -> AudioClips:
    """Several audio datasets as one (for self-supervised training); ``label`` is the source set.

    Args:
        sets: dataset names joined by ``+`` (each with its defaults), or a list of dataset specs; every
            set is built on this ``split`` and ``seed``.
    """
    from zoo.data import load_dataset, parse_spec

    _check_split("audio-mix", split)
    specs = sets.split("+") if isinstance(sets, str) else list(sets)
    names = [parse_spec(spec)[0] for spec in specs]
    if not names or "audio-mix" in names:
        raise ZooError(f"dataset 'audio-mix': sets must name other audio datasets, got {sets!r}")
    waves, sources = [], []
    for source, spec in enumerate(specs):
        part = load_dataset(spec, split=split, seed=seed)
        if getattr(part, "sample_rate", None) != SAMPLE_RATE:
            raise ZooError(f"dataset 'audio-mix': {names[source]!r} is not a 16 kHz audio dataset")
        waves += [lambda part=part, i=i: part[i]["audio"] for i in range(len(part))]
        sources += [source] * len(part)
    indices = _select(list(range(len(waves))), seed, limit)
    labels = {"source": np.array(sources)[indices]}
    return AudioClips("audio-mix", [waves[i] for i in indices], labels, {"source": names}, "source")
