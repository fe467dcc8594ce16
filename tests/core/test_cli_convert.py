"""``zoo convert SRC NAME --to DIR``: the CLI verb over the image and audio converters (weights-only reads)."""

from __future__ import annotations

import json

import torch

import zoo
from tests.image.test_published_more import JANUS_TINY, SIDE, _images, _llamagen_training_checkpoint
from zoo.cli import main
from zoo.image.published.janus import JanusVQTokenizer


def test_zoo_convert_writes_a_folder_zoo_load_reads(tmp_path, capsys):
    source = JanusVQTokenizer(JANUS_TINY, image_size=SIDE, seed=3)
    torch.save(_llamagen_training_checkpoint(source), tmp_path / "vq_ds8_c2i.pt")
    tiny = ["--set", f"vq_config={json.dumps(JANUS_TINY)}", "--set", f"image_size={SIDE}"]
    assert main(["convert", str(tmp_path / "vq_ds8_c2i.pt"), "llamagen-vq8", "--to", str(tmp_path / "out"), *tiny]) == 0
    assert "wrote" in capsys.readouterr().out
    loaded = zoo.load(tmp_path / "out")
    assert torch.equal(loaded.encode(_images()), source.encode(_images()))
    assert json.loads((tmp_path / "out" / "config.json").read_text())["metadata"]["converted_from"].endswith(".pt")


def test_zoo_convert_refuses_in_one_line(tmp_path, capsys):
    (tmp_path / "x.pt").write_bytes(b"not a pickle")
    cases = [
        (["convert", str(tmp_path / "x.pt"), "bpe-32k", "--to", str(tmp_path / "o")], "is a text tokenizer"),
        (["convert", str(tmp_path / "x.pt"), "llamagen-vq9", "--to", str(tmp_path / "o")], "did you mean"),
        (["convert", str(tmp_path / "x.pt"), "llamagen-vq8", "--to", str(tmp_path / "o"), "--set", "a=[1,"],
         "--set a: not valid JSON"),
        (["convert", str(tmp_path / "x.pt"), "snac-24khz", "--to", str(tmp_path / "o"), "--set", "a=1"],
         "audio codecs convert into their entry's own config"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "o").exists()
