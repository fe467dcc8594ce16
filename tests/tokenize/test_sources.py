"""webdataset tars as a dataset spec: items equal the files written, errors name the problem, zoo tokenize reads."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

import zoo
from zoo.data import load_dataset
from zoo.data.images import _centre_square
from zoo.data.webdataset_source import expand_braces
from zoo.errors import ZooError
from zoo.tokenize import tokenize

from ._files import PIXELS, TEXTS, WAVES, as_uint8, image_shards, png, wav, write_tar

pytestmark = pytest.mark.usefixtures("one_thread")


def test_braces_expand_like_webdataset():
    assert expand_braces("a-{008..011}.tar") == ["a-008.tar", "a-009.tar", "a-010.tar", "a-011.tar"]
    assert expand_braces("{x,y}/{0..1}.tar") == ["x/0.tar", "x/1.tar", "y/0.tar", "y/1.tar"]


def test_webdataset_items_equal_the_files_in_shard_and_tar_order(tmp_path):
    image_shards(tmp_path)
    data = load_dataset(f"webdataset:{tmp_path}/part-{{000..001}}.tar")
    assert len(data) == 6
    for i in range(6):
        item = data[i]
        assert item["key"] == f"s{i // 3}/{i:04d}" and item["label"] == i % 4 and item["text"] == TEXTS[i]
        assert item["image"].shape == (3, 12, 16) and np.array_equal(as_uint8(item["image"]), PIXELS[i])
    # a folder and a glob name the same shards; limit keeps the first items; size resizes as image-folder does
    assert [load_dataset(f"webdataset:{tmp_path}")[i]["key"] for i in range(6)] == [data[i]["key"] for i in range(6)]
    assert len(load_dataset(f"webdataset:{tmp_path}/*.tar,limit=4")) == 4
    resized = load_dataset(f"webdataset:{tmp_path},size=8")[2]["image"]
    assert torch.equal(resized, _centre_square(data[2]["image"], 8))
    # a brace list (commas: the mapping form) keeps the order it names
    listed = load_dataset({"name": "webdataset", "path": f"{tmp_path}/part-{{001,000}}.tar"})
    assert [listed[i]["key"] for i in (0, 3)] == ["s1/0003", "s0/0000"]
    texts_only = load_dataset(f"webdataset:{tmp_path},modality=text")[0]
    assert set(texts_only) == {"key", "text", "label"}


def test_webdataset_splits_partition_the_samples(tmp_path):
    image_shards(tmp_path)
    keys = {split: [item["key"] for item in load_dataset(f"webdataset:{tmp_path},split={split},val_fraction=0.2,"
                                                         f"test_fraction=0.2")] for split in ("train", "val", "test")}
    assert sorted(sum(keys.values(), [])) == sorted(load_dataset(f"webdataset:{tmp_path}")[i]["key"] for i in range(6))
    assert [len(keys[s]) for s in ("train", "val", "test")] == [4, 1, 1] and keys["train"] == sorted(keys["train"])


def test_webdataset_audio_is_decoded_and_resampled(tmp_path):
    write_tar(tmp_path / "audio.tar", [(f"clip{i}.wav", wav(w, 8000)) for i, w in enumerate(WAVES)])
    native = load_dataset(f"webdataset:{tmp_path / 'audio.tar'}")
    for i, wave in enumerate(WAVES):
        assert native[i]["sample_rate"] == 8000
        assert torch.equal(native[i]["audio"], torch.from_numpy(wave.astype(np.float32) / 32768))
    resampled = load_dataset(f"webdataset:{tmp_path / 'audio.tar'},sample_rate=16000")
    expected = AF.resample(torch.from_numpy(WAVES[1].astype(np.float32) / 32768), 8000, 16000).clamp(-1, 1)
    assert resampled[1]["sample_rate"] == 16000 and torch.allclose(resampled[1]["audio"], expected, atol=1e-6)


def test_tokenize_reads_webdataset_text_and_images(tmp_path):
    image_shards(tmp_path)
    tokenize("byte", f"webdataset:{tmp_path},modality=text", tmp_path / "text", items_per_shard=4, engine="local",
             progress=False)
    shards, byte = load_dataset(f"token-shards:{tmp_path / 'text'}"), zoo.load("byte")
    assert [shards[i]["tokens"].tolist() for i in range(6)] == [byte.encode(t) for t in TEXTS]
    assert [shards[i]["key"] for i in range(6)] == [f"s{i // 3}/{i:04d}" for i in range(6)]
    assert [shards[i]["label"] for i in range(6)] == [i % 4 for i in range(6)]

    tokenize("vq-fmnist", f"webdataset:{tmp_path},size=16", tmp_path / "images", items_per_shard=4, engine="local",
             progress=False)
    images, shards = load_dataset(f"webdataset:{tmp_path},size=16"), load_dataset(f"token-shards:{tmp_path / 'images'}")
    vq = zoo.load("vq-fmnist", pretrained=True)
    with torch.no_grad():
        for i in (0, 5):
            assert torch.equal(shards[i]["tokens"], vq.encode(images[i]["image"][None])[0])


def test_tokenize_refuses_audio_at_another_rate_and_reads_it_resampled(tmp_path):
    write_tar(tmp_path / "audio.tar", [(f"clip{i}.wav", wav(w, 8000)) for i, w in enumerate(WAVES)])
    with pytest.raises(ZooError, match="'clip0' is audio at 8000 Hz but the tokenizer takes 16000 Hz; add "
                                       "sample_rate=16000"):
        tokenize("beats-random", f"webdataset:{tmp_path}", tmp_path / "bad", engine="local", progress=False)
    spec = f"webdataset:{tmp_path},sample_rate=16000"
    tokenize("beats-random", spec, tmp_path / "out", engine="local", progress=False)
    tok, clips, shards = zoo.load("beats-random", pretrained=True), load_dataset(spec), load_dataset(
        f"token-shards:{tmp_path / 'out'}")
    with torch.no_grad():
        encoded = tok.encode(clips[2]["audio"][None])
    assert torch.equal(shards[2]["tokens"], encoded.ids[0, : int(encoded.lengths[0])])


@pytest.mark.parametrize("make, spec, message", [
    (lambda d: None, "webdataset:{d}/nothing-here.tar", "is no tar file, folder or pattern matching any file"),
    (lambda d: (d / "a-000.tar").write_bytes(b""), "webdataset:{d}/a-{{000..001}}.tar", "names 2 shards, 1 missing"),
    (lambda d: (d / "e.tar").write_bytes(b""), "webdataset:{d}/e.tar", "e.tar holds no files \\(an empty tar\\)"),
    (lambda d: write_tar(d / "e.tar", []), "webdataset:{d}/e.tar", "e.tar holds no files \\(an empty tar\\)"),
    (lambda d: write_tar(d / "j.tar", [("a.json", b"{}")]), "webdataset:{d}/j.tar",
     "holds no sample with a file of a known kind"),
    (lambda d: (d / "z.tar").write_bytes(gzip.compress(b"x" * 1024)), "webdataset:{d}/z.tar", "is gzip-compressed"),
    (lambda d: write_tar(d / "t.tar", [("a.png", png(PIXELS[0])), ("a.jpg", png(PIXELS[1]))]), "webdataset:{d}/t.tar",
     "sample 'a' has two image files \\(a second one is a.jpg\\)"),
    (lambda d: (d / "empty").mkdir(), "webdataset:{d}/empty", "no .tar files under the folder"),
])
def test_webdataset_errors_name_the_problem(tmp_path, make, spec, message):
    make(tmp_path)
    with pytest.raises(ZooError, match=message):
        load_dataset(spec.format(d=tmp_path))


def test_a_damaged_file_inside_a_shard_is_named(tmp_path):
    write_tar(tmp_path / "x.tar", [("a.png", b"not a png"), ("a.cls", b"seven")])
    data = load_dataset(f"webdataset:{tmp_path / 'x.tar'}")
    with pytest.raises(ZooError, match="x.tar: sample 'a' \\(image\\): not an image file PIL can read"):
        data[0]
    with pytest.raises(ZooError, match="a .cls file must hold one integer, got b'seven'"):
        load_dataset(f"webdataset:{tmp_path / 'x.tar'},modality=text")[0]


def test_ray_workers_read_webdataset_shards_like_one_process(tmp_path):
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'zoo[tokenize]')")
    image_shards(tmp_path)
    spec = f"webdataset:{tmp_path},modality=text"
    tokenize("byte", spec, tmp_path / "local", items_per_shard=2, engine="local", progress=False)
    tokenize("byte", spec, tmp_path / "ray", items_per_shard=2, engine="ray", workers=2, progress=False)
    digests = [{p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((tmp_path / kind).glob("shard-*"))}
               for kind in ("local", "ray")]
    assert digests[0] == digests[1] and len(digests[0]) == 3
