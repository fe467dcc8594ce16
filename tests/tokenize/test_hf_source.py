"""A local HF ``datasets`` dataset as a dataset spec: saved datasets, splits, Parquet files, columns, zoo tokenize."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zoo
from zoo.data import load_dataset
from zoo.errors import ZooError
from zoo.tokenize import tokenize

from ._files import PIXELS, TEXTS, WAVES, as_uint8, png, wav

pytestmark = pytest.mark.usefixtures("one_thread")
datasets = pytest.importorskip("datasets", reason="the hf-dataset source needs datasets (pip install datasets)")


def _saved(tmp_path, splits=False):
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(num_classes=4), "score": datasets.Value("float32")})
    rows = {"image": [{"bytes": png(p), "path": None} for p in PIXELS], "text": TEXTS,
            "label": [i % 4 for i in range(6)], "score": [0.5] * 6}
    table = datasets.Dataset.from_dict(rows, features=features)
    path = tmp_path / "saved"
    (datasets.DatasetDict({"train": table.select(range(4)), "test": table.select(range(4, 6))}) if splits
     else table).save_to_disk(str(path))
    return path, table


def test_a_saved_hf_dataset_serves_its_image_column_and_labels(tmp_path):
    path, _ = _saved(tmp_path)
    data = load_dataset(f"hf-dataset:{path}")
    assert len(data) == 6 and set(data[0]) == {"image", "label"}
    for i in range(6):
        assert np.array_equal(as_uint8(data[i]["image"]), PIXELS[i]) and data[i]["label"] == i % 4
    assert [load_dataset(f"hf-dataset:{path},column=text")[i]["text"] for i in range(6)] == TEXTS
    assert load_dataset(f"hf-dataset:{path},size=8,limit=2")[1]["image"].shape == (3, 8, 8)


def test_hf_splits_and_parquet_files(tmp_path):
    path, table = _saved(tmp_path, splits=True)
    assert len(load_dataset(f"hf-dataset:{path}")) == 4
    test = load_dataset(f"hf-dataset:{path},split=test,column=text")
    assert [test[i]["text"] for i in range(2)] == TEXTS[4:]
    with pytest.raises(ZooError, match="has splits \\['test', 'train'\\], not 'val'"):
        load_dataset(f"hf-dataset:{path},split=val")
    (tmp_path / "pq").mkdir()
    table.select(range(3)).to_parquet(str(tmp_path / "pq" / "a.parquet"))
    table.select(range(3, 6)).to_parquet(str(tmp_path / "pq" / "b.parquet"))
    files = load_dataset(f"hf-dataset:{tmp_path / 'pq'},column=text")
    assert [files[i]["text"] for i in range(6)] == TEXTS and files[5]["label"] == 1


def test_hf_audio_column(tmp_path):
    table = datasets.Dataset.from_dict({"audio": [{"bytes": wav(w, 8000), "path": None} for w in WAVES]})
    table.cast_column("audio", datasets.Audio()).save_to_disk(str(tmp_path / "audio"))
    data = load_dataset(f"hf-dataset:{tmp_path / 'audio'}")
    assert data[1]["sample_rate"] == 8000
    assert torch.equal(data[1]["audio"], torch.from_numpy(WAVES[1].astype(np.float32) / 32768))
    assert load_dataset(f"hf-dataset:{tmp_path / 'audio'},sample_rate=16000")[1]["audio"].shape == (2 * 880,)


def test_tokenize_reads_a_saved_hf_dataset(tmp_path):
    path, _ = _saved(tmp_path)
    tokenize("byte", f"hf-dataset:{path},column=text", tmp_path / "out", items_per_shard=4, engine="local",
             progress=False)
    shards, byte = load_dataset(f"token-shards:{tmp_path / 'out'}"), zoo.load("byte")
    assert [shards[i]["tokens"].tolist() for i in range(6)] == [byte.encode(t) for t in TEXTS]
    assert [shards[i]["label"] for i in range(6)] == [i % 4 for i in range(6)]


@pytest.mark.parametrize("spec, message", [
    ("hf-dataset:{d}/missing", "is no folder written by save_to_disk and holds no .parquet or .arrow files"),
    ("hf-dataset:{d}/saved,column=caption", "has no column 'caption' \\(its columns: image, text, label, score\\)"),
    ("hf-dataset:{d}/saved,column=score", "column 'score' is .*float32.*; zoo reads an Image, Audio or string"),
    ("hf-dataset:{d}/saved,label=text", "label column 'text' is .*string.*; it must hold integers"),
    ("hf-dataset:{d}/saved,split=test", "is one saved split \\('train'\\), not 'test'"),
])
def test_hf_errors_name_the_problem(tmp_path, spec, message):
    _saved(tmp_path)
    with pytest.raises(ZooError, match=message):
        load_dataset(spec.format(d=tmp_path))
