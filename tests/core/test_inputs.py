"""Bad inputs give one clear error at the boundary, for every entry they apply to; odd but valid ones work."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile
import torch

import zoo
from zoo.cli import main
from zoo.errors import ZooError
from zoo.image.vq.vqgan import MAX_TOKENS
from zoo.tokenizer import check_audio, check_images, check_sample_rate


def _built_here(name: str) -> bool:
    """Entries whose weights ship with zoo (or that need none): published ones are checked by their own tests,
    which build them at test size instead of their full random-initialised size."""
    weights = zoo.registry.get(name).weights
    return weights is None or "://" not in weights["path"]


IMAGES = [n for n in zoo.list_tokenizers(modality="image") if _built_here(n)]
AUDIO = [n for n in zoo.list_tokenizers(modality="audio") if _built_here(n)]


def _images(n: int = 2, side: int = 64) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(0))


def _fixed_side(name: str) -> int | None:
    """The one image side an entry takes (a learned-position ViT), or None when any multiple of its factor works."""
    spec = zoo.registry.get(name).inputs or {}
    return spec.get("size") if "size" in spec and "multiple_of" not in spec else None


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
    ("no pixels", torch.rand(2, 3, 0, 64), "expected at least one pixel per side, got 0x64"),
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
    x = _images(side=_fixed_side(name) or 64)
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
    # A NaN image that holds one value: refused for its size, so no value was read and nothing was allocated.
    huge = torch.full((1, 3, 1, 1), float("nan")).expand(1, 3, 2048, 2048)
    with pytest.raises(ZooError, match=r"2048x2048 gives a 256x256 token grid, above the 16384 positions .* 1024x1024"):
        tok.encode(huge)


@pytest.mark.parametrize("name", IMAGES)
def test_every_image_entry_names_its_size_limit(name):
    tok = zoo.load(name)
    fixed = _fixed_side(name)
    if fixed is not None:  # one side only: any other is refused with that side named
        with pytest.raises(ZooError, match=rf"cover {fixed}x{fixed} images only, got {2 * fixed}x{2 * fixed}"):
            tok.encode(torch.zeros(1, 3, 1, 1).expand(2, 3, 2 * fixed, 2 * fixed))
        return
    limit = getattr(tok, "max_tokens", MAX_TOKENS)
    side = (math.isqrt(limit) + 1) * tok.downsample  # the smallest square grid above the limit
    huge = torch.zeros(1, 3, 1, 1).expand(2, 3, side, side)  # no memory behind it: refused before any compute
    with pytest.raises(ZooError, match=rf"{side}x{side} gives a \d+x\d+ token grid, above the {limit} positions"):
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


@pytest.mark.parametrize("name", AUDIO)
def test_every_audio_entry_gives_empty_ids_for_empty_audio(name):
    tok = zoo.load(name)
    for x in (torch.zeros(0, 16000), torch.zeros(2, 0)):
        encoded = tok.encode(x)
        ids, lengths = encoded.ids, encoded.lengths
        assert ids.shape[:2] == (x.shape[0], 0) and ids.dtype == torch.long  # [B, 0] or [B, 0, q]
        assert lengths.tolist() == [0] * x.shape[0]


def test_sample_rate_check_passes_the_right_rate():
    check_sample_rate(16000, 16000)
    check_sample_rate(np.int64(16000), 16000)
    check_sample_rate(None, 16000)
    for bad in ("16k", -1, 0, float("nan"), True):
        with pytest.raises(ZooError, match="sample_rate must be a positive number of Hz"):
            check_sample_rate(bad, 16000)


def _wav(path, samples, rate: int = 16000):
    soundfile.write(str(path), np.asarray(samples, np.float32), rate, subtype="FLOAT")
    return path


def test_read_audio_checks_the_file_and_resamples_full_scale_audio_into_range(tmp_path):
    from zoo.io import read_audio

    samples = np.zeros(16000, np.float32)
    samples[10] = np.inf
    with pytest.raises(ZooError, match=r"inf\.wav: expected finite samples .* the first at \[0, 10\] \(inf\)"):
        read_audio(_wav(tmp_path / "inf.wav", samples), sample_rate=16000)
    with pytest.raises(ZooError, match=r"loud\.wav: samples must lie in \[-1, 1\], got a peak of 32\d\d "
                                       r"\(it looks like 16-bit PCM scale"):
        read_audio(_wav(tmp_path / "loud.wav", _audio(1)[0].numpy() * 32768))
    # A full-scale square wave at 44.1 kHz: the resampler's overshoot (peak 1.18) is clipped, the file is fine.
    square = np.where((np.arange(44100) // 50) % 2 == 0, 1.0, -1.0)
    wave = read_audio(_wav(tmp_path / "square.wav", square, 44100), sample_rate=16000)
    assert wave.shape == (16000,) and float(wave.abs().max()) <= 1.0
    assert zoo.load("beats-iter2").encode_file(tmp_path / "square.wav").ids.shape == (1, 48)


def test_read_image_names_the_file_for_unreadable_data(tmp_path, monkeypatch):
    from PIL import Image

    from zoo.io import read_image

    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(ZooError, match=r"notes\.png: not an image file PIL can read \(expected .*\.png"):
        read_image(text)
    png = tmp_path / "small.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(png)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels is then twice past PIL's bomb limit
    with pytest.raises(ZooError, match=r"small\.png: refused as a possible decompression bomb"):
        read_image(png)


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


def _png(path, side: int = 64):
    from PIL import Image

    Image.fromarray(np.full((side, side, 3), 127, np.uint8)).save(path)
    return path


CLI_CASES = [
    ("NaN wav", "beats-iter2", "nan.wav", lambda p: _wav(p, np.where(np.arange(16000) == 10, np.nan, 0.0)),
     "nan.wav: expected finite samples in [-1, 1], got 1 NaN/Inf value(s), the first at [0, 10] (nan)"),
    ("int16-scale wav", "beats-random", "loud.wav", lambda p: _wav(p, _audio(1)[0].numpy() * 32768),
     "(it looks like 16-bit PCM scale: divide by 32768)"),
    ("text as wav", "beats-iter2", "text.wav", lambda p: p.write_text("hello"),
     "text.wav: not an audio file soundfile can read"),
    ("text as png", "vq-f8", "text.png", lambda p: p.write_text("hello"), "text.png: not an image file PIL can read"),
    ("unknown suffix", "vq-f8", "photo.xyz", lambda p: p.write_text("hello"), "photo.xyz: expected an image file"),
    ("2048x2048 png", "vq-f8", "big.png", lambda p: _png(p, 2048),
     "2048x2048 gives a 256x256 token grid, above the 16384 positions this tokenizer serves"),
]


@pytest.mark.parametrize("case, name, file, make, expected", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_bad_files_in_one_line(tmp_path, capsys, case, name, file, make, expected):
    make(tmp_path / file)
    _one_line_refusal(capsys, ["encode", name, str(tmp_path / file)], expected)
