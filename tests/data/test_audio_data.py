"""Audio datasets: MIDI writing, gm-notes and espeak renders with held-out splits, user folders, the mix."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from zoo.data import audio as audio_data
from zoo.data import collate, load_dataset
from zoo.errors import ZooError

SMALL_GM = "gm-notes:pitch_low=36,pitch_high=84,pitch_step=24"  # 3 pitches x 128 programs
SMALL_ESPEAK = {"name": "espeak", "languages": "en+de+fr", "per_language": 10}


def test_vlq_and_midi_file_layout():
    assert audio_data._vlq(0) == b"\x00"
    assert audio_data._vlq(0x7F) == b"\x7f"
    assert audio_data._vlq(0x80) == b"\x81\x00"
    assert audio_data._vlq(0x3FFF) == b"\xff\x7f"
    data = audio_data.midi_file([(40, 60), (0, 72)], slot_ticks=960, note_ticks=720)
    assert data[:4] == b"MThd" and int.from_bytes(data[8:10], "big") == 0 and int.from_bytes(data[12:14], "big") == 480
    track = data[14:]
    assert track[:4] == b"MTrk" and int.from_bytes(track[4:8], "big") == len(track) - 8
    body = track[8:]
    assert b"\xc0\x28\x00\x90\x3c\x64" in body  # program 40, then note on C4 at velocity 100
    assert b"\x85\x50\x80\x3c\x00" in body  # 720 ticks later: note off
    assert b"\x81\x70\xb0\x78\x00" in body  # 240 ticks later: all sound off
    assert body.endswith(b"\x00\xff\x2f\x00")


def test_gm_notes_hold_out_pitches_and_label_families():
    splits = {split: load_dataset(SMALL_GM, split=split) for split in ("train", "val", "test")}
    pitches = {split: set(ds.labels["pitch"].tolist()) for split, ds in splits.items()}
    assert all(len(p) == 1 for p in pitches.values())  # one pitch each, never shared
    assert len(pitches["train"] | pitches["val"] | pitches["test"]) == 3
    train = splits["train"]
    item = train[0]
    assert item["audio"].shape == (16_000,) and item["audio"].dtype == torch.float32
    assert item["audio"].abs().max() > 0.001  # silent renders are dropped
    assert item["label"] == item["family"] == item["program"] // 8
    assert train.num_classes == 16 and len(set(train.labels["program"].tolist())) > 100
    assert train.classes["pitch"] == ["C2", "C4", "C6"]
    again = load_dataset(SMALL_GM, split="train")  # from the cache
    assert torch.equal(again[5]["audio"], train[5]["audio"])
    other_seed = {load_dataset(SMALL_GM, split="test", seed=s).labels["pitch"][0] for s in range(6)}
    assert len(other_seed) > 1  # the seed chooses which pitch is held out
    program = load_dataset(SMALL_GM + ",label=program", split="train")
    assert program[0]["label"] == program[0]["program"] and program.num_classes == 128
    with pytest.raises(ZooError, match="label=pitch needs holdout=note"):
        load_dataset(SMALL_GM + ",label=pitch")
    notes = load_dataset(SMALL_GM + ",label=pitch,holdout=note", split="test", limit=20)
    assert len(notes) == 20 and len(set(notes.labels["pitch"].tolist())) > 1


def test_espeak_holds_out_words_and_voices():
    train, test = load_dataset(SMALL_ESPEAK, split="train"), load_dataset(SMALL_ESPEAK, split="test")
    assert len(train) == 21 and len(test) == 6  # 7 and 2 of every 10 utterances per language
    assert train.classes["language"] == ["en", "de", "fr"]
    assert np.bincount(test.labels["language"]).tolist() == [2, 2, 2]
    assert set(train.labels["voice"].tolist()).isdisjoint(test.labels["voice"].tolist())
    stored = np.load(audio_data._cache_file("espeak", {
        "languages": ["en", "de", "fr"], "per_language": 10, "words": 3, "seed": 0, "max": 3.0, "version": 1,
    }))  # fmt: skip
    texts, parts = stored["texts"], stored["meta"][:, 2]
    train_words = {w for t in texts[parts == 0] for w in t.split(", ")}
    test_words = {w for t in texts[parts == 2] for w in t.split(", ")}
    assert train_words.isdisjoint(test_words)
    item = test[0]
    assert 0.5 * 16_000 < item["audio"].shape[0] <= 3 * 16_000 and item["label"] == item["language"]
    with pytest.raises(ZooError, match="at least two distinct"):
        load_dataset("espeak:languages=en")


def test_audio_folder_from_subfolders_and_csv(tmp_path):
    rate = 8_000
    for label in ("dogs", "cats"):
        for k in range(5):
            path = tmp_path / "clips" / label / f"{k}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(str(path), np.random.default_rng(k).uniform(-0.1, 0.1, (rate, 2)), rate)
    data = load_dataset(f"audio-folder:{tmp_path / 'clips'}")
    assert len(data) == 10 and data.classes["label"] == ["cats", "dogs"]
    item = data[0]
    assert item["audio"].shape == (16_000,) and item["label"] == 0  # stereo 8 kHz -> mono 16 kHz
    test, train = load_dataset(f"audio-folder:{tmp_path / 'clips'},split=test"), load_dataset(
        f"audio-folder:{tmp_path / 'clips'},split=train"
    )
    assert len(test) == 2 and len(train) == 7
    table = tmp_path / "labels.csv"
    rows = [f"{kind}/{k}.wav,{'odd' if k % 2 else 'even'}" for kind in ("dogs", "cats") for k in range(5)]
    table.write_text("path,label\n" + "\n".join(rows) + "\n")
    relabelled = load_dataset({"name": "audio-folder", "path": str(tmp_path / "clips"), "labels": str(table)})
    assert relabelled.classes["label"] == ["even", "odd"]
    table.write_text("path,label\ndogs/0.wav,a\n")
    with pytest.raises(ZooError, match="has no label for"):
        load_dataset({"name": "audio-folder", "path": str(tmp_path / "clips"), "labels": str(table)})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZooError, match="no audio files"):
        load_dataset(f"audio-folder:{tmp_path / 'empty'}")


def test_audio_mix_batches_both_sets():
    mix = load_dataset({"name": "audio-mix", "sets": [SMALL_GM, SMALL_ESPEAK]}, split="test")
    assert mix.classes["source"] == ["gm-notes", "espeak"] and set(mix.labels["source"].tolist()) == {0, 1}
    assert len(mix) == len(load_dataset(SMALL_GM, split="test")) + 6
    batch = collate([mix[0], mix[len(mix) - 1]])
    assert batch["audio"].ndim == 2 and batch["audio_lengths"].max() == batch["audio"].shape[1]


def test_missing_tools_name_the_apt_command(monkeypatch):
    monkeypatch.setattr(audio_data.shutil, "which", lambda tool: None)
    with pytest.raises(ZooError, match="sudo apt-get install fluidsynth fluid-soundfont-gm"):
        audio_data.render_gm_notes([(0, 60)], 1.0)
    with pytest.raises(ZooError, match="sudo apt-get install espeak-ng"):
        audio_data._render_espeak([("en", "m1", "hello", 150, 50)], 1.0)


def test_bad_options_are_named():
    with pytest.raises(ZooError, match="split must be one of"):
        load_dataset(SMALL_GM, split="dev")
    with pytest.raises(ZooError, match="label 'colour' is not one of"):
        load_dataset(SMALL_GM + ",label=colour")
