"""The synthetic test sets: deterministic, well-formed, labelled, with disjoint splits."""

from __future__ import annotations

import pytest
import torch

from zoo.data import collate, load_dataset
from zoo.data.synthetic import SHAPES, SOUNDS
from zoo.errors import ZooError


def test_images_are_deterministic_labelled_and_in_range():
    a = load_dataset("synthetic-images:size=16,count=40")
    b = load_dataset({"name": "synthetic-images", "size": 16, "count": 40})
    assert len(a) == 40 and torch.equal(a[7]["image"], b[7]["image"])
    batch = collate([a[i] for i in range(len(a))])
    assert batch["image"].shape == (40, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert batch["image"].min() >= 0 and batch["image"].max() <= 1
    assert set(batch["label"].tolist()) == set(range(len(SHAPES)))
    # The shape is brighter than the background: the mean of the brightest pixels beats the median.
    item = a[0]["image"]
    assert item.mean(0).max() > item.mean(0).median() + 0.1
    val = load_dataset("synthetic-images:size=16", split="val")
    assert not torch.equal(val[0]["image"], a[0]["image"]) and len(val) == 128
    assert len(load_dataset("synthetic-images", limit=5)) == 5


def test_audio_clips_vary_in_length_and_pad_in_batches():
    data = load_dataset("synthetic-audio:count=30,sample_rate=8000")
    assert data.sample_rate == 8000
    lengths = {data[i]["audio"].shape[0] for i in range(len(data))}
    assert len(lengths) > 1 and min(lengths) >= 2000 and max(lengths) <= 4000
    batch = collate([data[i] for i in range(4)])
    assert batch["audio"].shape == (4, int(batch["audio_lengths"].max()))
    assert batch["audio"].abs().max() <= 0.8 + 1e-6
    assert set(collate([data[i] for i in range(30)])["label"].tolist()) == set(range(len(SOUNDS)))
    assert torch.equal(data[3]["audio"], load_dataset("synthetic-audio:count=30,sample_rate=8000")[3]["audio"])


def test_chirps_sweep_in_their_direction():
    data = load_dataset("synthetic-audio:count=60,sample_rate=8000,min_seconds=0.5,max_seconds=0.5")
    for kind, rising in (("chirp-up", True), ("chirp-down", False)):
        item = next(data[i] for i in range(len(data)) if SOUNDS[data[i]["label"]] == kind)
        wave = item["audio"]
        half = wave.shape[0] // 2
        # Zero crossings count the frequency: more in the second half of a rising chirp.
        crossings = [int((torch.sign(x[1:]) != torch.sign(x[:-1])).sum()) for x in (wave[:half], wave[half:])]
        assert (crossings[1] > crossings[0]) == rising


def test_text_is_words_from_a_shared_lexicon():
    train, val = load_dataset("synthetic-text:count=20"), load_dataset("synthetic-text", split="val")
    texts = [train[i]["text"] for i in range(20)]
    assert all(t.endswith(".") and t[0].isupper() for t in texts)
    assert len(set(texts)) == 20
    vocabulary = {w.lower().strip(".") for t in texts for w in t.split()}
    assert len(vocabulary) < sum(len(t.split()) for t in texts)  # words repeat (Zipf)
    val_words = {w.lower().strip(".") for i in range(20) for w in val[i]["text"].split()}
    assert val_words & vocabulary and texts[0] != val[0]["text"]


def test_bad_options_are_errors():
    with pytest.raises(ZooError, match="split must be one of"):
        load_dataset("synthetic-images", split="dev")
    with pytest.raises(ZooError, match="size must be at least 8"):
        load_dataset("synthetic-images:size=4")
    with pytest.raises(ZooError, match="min_seconds <= max_seconds"):
        load_dataset("synthetic-audio:min_seconds=1,max_seconds=0.5")
    with pytest.raises(IndexError):
        load_dataset("synthetic-text:count=3")[3]
