"""``zoo encode`` / ``zoo decode`` carry EnCodec 48 kHz's per-chunk scales: the encode record holds them beside the
ids, decode reads them back, and bare ids are refused with the codec's own error (tiny random config)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import torch

import zoo
from tests.audio.test_encodec48_parity import CHUNKED, _audio
from zoo import cli
from zoo.audio.published.encodec_chunked import ChunkedEncodecTokenizer


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("encodec48") / "tok"
    ChunkedEncodecTokenizer(CHUNKED, bandwidth=1.6).save_pretrained(path)
    return path


def test_encode_record_holds_the_scales_and_decode_uses_them(folder, tmp_path, capsys):
    wave = _audio(1, 305)[0]
    soundfile.write(tmp_path / "in.wav", wave.numpy(), 800, subtype="FLOAT")
    assert cli.main(["encode", str(folder), str(tmp_path / "in.wav")]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    tok = zoo.load(str(folder))
    expected = tok.encode(torch.from_numpy(soundfile.read(tmp_path / "in.wav", dtype="float32")[0])[None])
    assert record["ids"] == expected.ids[0].tolist() and len(record["scales"]) == 3
    assert np.allclose(record["scales"], expected.scales[0].numpy(), rtol=1e-6)

    assert cli.main(["decode", str(folder), json.dumps(record), "-o", str(tmp_path / "out.wav")]) == 0
    decoded, _ = soundfile.read(tmp_path / "out.wav", dtype="float32")
    reference = tok.decode(expected)[0].numpy()
    assert decoded.shape == reference.shape and np.abs(decoded - reference).max() < 1e-4  # 16-bit or float file


def test_bare_ids_are_refused_and_bad_scales_named(folder, tmp_path, capsys):
    ids = [[0] * 4] * 20
    assert cli.main(["decode", str(folder), json.dumps(ids), "-o", str(tmp_path / "out.wav")]) == 2
    assert "scales" in capsys.readouterr().err
    bad = json.dumps({"ids": ids, "scales": ["x"]})
    assert cli.main(["decode", str(folder), bad, "-o", str(tmp_path / "out.wav")]) == 2
    assert "'scales' must be a list of numbers" in capsys.readouterr().err



def test_token_shards_refuse_a_codec_whose_ids_need_scales(folder, tmp_path):
    from zoo.errors import ZooError
    from zoo.tokenize import tokenize

    with pytest.raises(ZooError, match="gives per-chunk scales beside its ids .* token shards store ids only"):
        tokenize(str(folder), "synthetic-audio:count=2,sample_rate=800", tmp_path / "shards", engine="local",
                 progress=False)
    assert not list((tmp_path / "shards").glob("shard-*.parquet"))  # nothing half-written
