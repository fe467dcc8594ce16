"""``--device`` / ``--precision``: autocast around encode / decode only, float32 to metrics, both recorded."""

from __future__ import annotations

import argparse
import json
from typing import ClassVar

import pytest
import torch

from zoo.errors import ZooError
from zoo.evaluate import run_suite
from zoo.evaluate.runner import codec_precision, resolve_device
from zoo.tokenizer import check_images

SUITE = {"name": "precision", "data": "photos:split=test,size=16", "limit": 4, "batch_size": 2, "examples": 0,
         "metrics": ["psnr"]}  # fmt: skip


class ConvCodec(torch.nn.Module):
    """A 1x1-conv "tokenizer" that records the dtype its convolutions compute in and returns what they give."""

    modality: ClassVar[str] = "image"
    vocab_size = 256

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.conv.bias.zero_()
        self.seen: list[tuple[str, torch.dtype, bool]] = []

    @property
    def device(self) -> torch.device:
        return self.conv.weight.device

    def encode(self, x):
        y = self.conv(check_images(x))
        self.seen.append(("encode", y.dtype, torch.is_autocast_enabled(y.device.type)))
        return torch.round(y.float().clamp(0, 1) * 255).long()[:, 0]  # [B, H, W]: the red channel's bytes

    def decode(self, ids):
        grey = (ids.float() / 255)[:, None].expand(-1, 3, -1, -1)
        y = self.conv(grey)
        self.seen.append(("decode", y.dtype, torch.is_autocast_enabled(y.device.type)))
        return y  # bf16 under autocast: the runner hands metrics float32


def test_bf16_autocasts_the_codec_and_is_recorded():
    codec = ConvCodec()
    results = run_suite(SUITE, [codec], device="cpu", precision="bf16", progress=False)
    assert results["run"]["precision"] == "bf16" and results["run"]["device"] == "cpu"
    assert {(kind, dtype, on) for kind, dtype, on in codec.seen} == {("encode", torch.bfloat16, True),
                                                                     ("decode", torch.bfloat16, True)}  # fmt: skip
    assert "encode" not in vars(codec) and "decode" not in vars(codec)  # the class methods are back
    codec.seen.clear()
    fp32 = run_suite(SUITE, [codec], device="cpu", progress=False)
    assert fp32["run"]["precision"] == "fp32" and {dtype for _, dtype, _ in codec.seen} == {torch.float32}
    # bf16 rounds the conv's output to 8 mantissa bits: a little worse, not another number altogether.
    bf16_psnr, fp32_psnr = results["results"]["ConvCodec"]["psnr"], fp32["results"]["ConvCodec"]["psnr"]
    assert 20 < bf16_psnr <= fp32_psnr + 1e-6 and fp32_psnr - bf16_psnr < 10


def test_decode_output_is_float32_inside_the_block():
    codec = ConvCodec()
    with codec_precision(codec, torch.device("cpu"), "bf16"):
        out = codec.decode(codec.encode(torch.rand(1, 3, 4, 4)))
    assert out.dtype == torch.float32
    assert codec.decode(torch.zeros(1, 4, 4, dtype=torch.long)).dtype == torch.float32  # fp32 outside


def test_bad_device_and_precision_are_clear():
    with pytest.raises(ZooError, match="--precision 'int8': expected one of fp32, bf16, fp16"):
        run_suite(SUITE, [ConvCodec()], precision="int8", progress=False)
    with pytest.raises(ZooError, match="not a torch device"):
        resolve_device("gpu0")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ZooError, match="CUDA is not available"):
            resolve_device("cuda")


def test_cli_options_reach_results_json(tmp_path, capsys):
    from zoo.evaluate import command

    suite = tmp_path / "suite.json"  # JSON is YAML
    suite.write_text(json.dumps({**SUITE, "metrics": ["psnr", "codebook"]}))
    parser = argparse.ArgumentParser()
    command.configure(parser)
    defaults = parser.parse_args([str(suite), "-t", "vq-f8"])
    assert defaults.device == "auto" and defaults.precision == "fp32"
    args = parser.parse_args([str(suite), "-t", "vq-f8", "--device", "cpu", "--precision", "bf16", "--out",
                              str(tmp_path / "out"), "--no-progress", "--suite-set", "limit=2"])  # fmt: skip
    assert command.run(args) == 0
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written["run"]["precision"] == "bf16" and written["run"]["device"] == "cpu"
    assert written["data"]["items"] == 2 and written["suite"]["limit"] == 2
    assert "vq-f8" in capsys.readouterr().out
