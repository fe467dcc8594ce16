"""Bad inputs give one clear error at the boundary, for every entry they apply to; odd but valid ones work."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

import zoo
from zoo.cli import main
from zoo.errors import ZooError
from zoo.tokenizer import check_audio, check_images, check_sample_rate

IMAGES = zoo.list_tokenizers(modality="image")
AUDIO = zoo.list_tokenizers(modality="audio")


def _images(n: int = 2, side: int = 64) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(0))


def _audio(n: int = 2, samples: int = 16000) -> torch.Tensor:
    return torch.rand(n, samples, generator=torch.Generator().manual_seed(0)) * 0.2 - 0.1


def _with(x: torch.Tensor, index: tuple, value: float) -> torch.Tensor:
    x = x.clone()
    x[index] = value
    return x


IMAGE_CASES = [
    ("NaN", _with(_images(), (1, 2, 5, 7), float("nan")), r"1 NaN/Inf value\(s\), the first at \[1, 2, 5, 7\]"),
    ("Inf", _with(_images(), (0, 0, 0, 0), float("inf")), r"NaN/Inf value\(s\), the first at \[0, 0, 0, 0\]"),
    ("uint8", (_images() * 255).to(torch.uint8), r"got dtype torch.uint8 \(8-bit images: divide by 255\)"),
    ("0-255 floats", _images() * 255, r"values must lie in \[0, 1\], got .* \(8-bit values: divide by 255\)"),
    ("[-1, 1] floats", _images() * 2 - 1, r"\[-1, 1\] images: \(x \+ 1\) / 2"),
    ("bool", _images() > 0.5, "got dtype torch.bool"),
    ("channels last", _images().permute(0, 2, 3, 1), r"expected shape \[B, 3, H, W\], got \[2, 64, 64, 3\]"),
    ("no batch", _images()[0], r"expected shape \[B, 3, H, W\], got \[3, 64, 64\]"),
    ("a list", [[0.5]], "expected a float tensor .* got list"),
]


@pytest.mark.parametrize("case, x, message", IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_the_shared_image_check(case, x, message):
    with pytest.raises(ZooError, match=message):
        check_images(x)


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("case, x, message", IMAGE_CASES[:4], ids=[c[0] for c in IMAGE_CASES[:4]])
def test_every_image_entry_refuses_bad_images(name, case, x, message):
    tok = zoo.load(name)
    with pytest.raises(ZooError, match=message):
        tok.encode(x)


@pytest.mark.parametrize("name", IMAGES)
def test_every_image_entry_takes_other_float_precisions_and_empty_batches(name):
    tok = zoo.load(name)
    x = _images()
    with torch.no_grad():
        reference = tok.encode(x)
        assert torch.equal(tok.encode(x.double()), reference)  # float64 -> float32 is exact for these values
        for dtype in (torch.float16, torch.bfloat16):
            ids = tok.encode(x.to(dtype))
            assert ids.shape == reference.shape and (ids == reference).float().mean() > 0.5
        empty = tok.encode(x[:0])
        assert empty.shape == (0, *reference.shape[1:]) and empty.dtype == torch.long
        if tok.has_decoder:
            assert tok.decode(empty).shape == (0, *x.shape[1:])


def test_a_huge_image_is_refused_before_any_compute():
    tok = zoo.load("vq-f8")
    huge = torch.zeros(1, 3, 2048, 2048)
    with pytest.raises(ZooError, match=r"2048x2048 gives a 256x256 token grid, above the 16384 positions .* 1024x1024"):
        tok.encode(huge)


AUDIO_CASES = [
    ("NaN", _with(_audio(), (0, 100), float("nan")), r"1 NaN/Inf value\(s\), the first at \[0, 100\]"),
    ("Inf", _with(_audio(), (1, 5), float("-inf")), r"NaN/Inf value\(s\), the first at \[1, 5\]"),
    ("int16 scale", _audio() * 32768, r"peak of .* \(it looks like 16-bit PCM scale: divide by 32768\)"),
    ("clipping", _audio() * 12, r"samples must lie in \[-1, 1\], got a peak of 1\.2"),
    ("int16", (_audio() * 32767).to(torch.int16), r"dtype torch.int16 \(16-bit PCM: divide by 32768\)"),
    ("stereo", _audio().reshape(2, 2, 8000), r"expected shape \[B, T\] \(mono, batched\)"),
]


@pytest.mark.parametrize("case, x, message", AUDIO_CASES, ids=[c[0] for c in AUDIO_CASES])
def test_the_shared_audio_check(case, x, message):
    with pytest.raises(ZooError, match=message):
        check_audio(x)


@pytest.mark.parametrize("name", AUDIO)
@pytest.mark.parametrize("case, x, message", AUDIO_CASES[:4], ids=[c[0] for c in AUDIO_CASES[:4]])
def test_every_audio_entry_refuses_bad_audio(name, case, x, message):
    tok = zoo.load(name)
    with pytest.raises(ZooError, match=message):
        tok.encode(x)


@pytest.mark.parametrize("name", AUDIO)
def test_every_audio_entry_takes_float64_and_checks_the_sample_rate(name):
    tok = zoo.load(name)
    x = _audio()
    assert torch.equal(tok.encode(x.double()).ids, tok.encode(x).ids)
    with pytest.raises(ZooError, match=rf"recorded at 44100 Hz, the tokenizer takes {tok.sample_rate} Hz"):
        tok.encode(x, sample_rate=44100)


def test_sample_rate_check_passes_the_right_rate():
    check_sample_rate(16000, 16000)
    check_sample_rate(None, 16000)


def _one_line_refusal(capsys, argv: list[str], expected: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err, err


def test_cli_refuses_nan_audio_and_a_truncated_image(tmp_path, capsys):
    wav = tmp_path / "nan.wav"
    samples = np.zeros(16000, np.float32)
    samples[10] = np.nan
    soundfile.write(str(wav), samples, 16000, subtype="FLOAT")
    _one_line_refusal(capsys, ["encode", "beats-iter2", str(wav)], "NaN/Inf value(s), the first at [0, 10]")
    from PIL import Image

    png = tmp_path / "cut.png"
    Image.fromarray(np.full((64, 64, 3), 127, np.uint8)).save(png)
    png.write_bytes(png.read_bytes()[:60])
    _one_line_refusal(capsys, ["encode", "vq-f8", str(png)], f"{png}: the image data is damaged or truncated")
