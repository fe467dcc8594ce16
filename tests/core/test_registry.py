"""Catalog validation, lookups with suggestions, wildcard listing, user catalogs, lazy imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import zoo
from zoo.errors import ZooError
from zoo.registry import Registry, read_registry_file


def _write(tmp_path, body: str, name: str = "reg.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


GOOD = """
tokenizers:
  my-bytes:
    target: zoo.text.byte:ByteTokenizer
    modality: text
    summary: a user's entry
    config: {add_special_tokens: true}
    needs_training: false
"""


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ZooError, match=r"unknown tokenizer 'bytee'.*'byte'"):
        zoo.load("bytee")


def test_typo_in_a_key_names_entry_and_key(tmp_path):
    path = _write(tmp_path, GOOD.replace("summary:", "sumary:"))
    with pytest.raises(ZooError, match=r"entry 'my-bytes': unknown key 'sumary' \(did you mean 'summary'\?\)"):
        read_registry_file(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("    summary: a user's entry\n", ""), "missing required key 'summary'"),
        (("modality: text", "modality: video"), "key 'modality' must be one of"),
        (("config: {add_special_tokens: true}", "config: [1, 2]"), "key 'config' must be a mapping"),
        (("target: zoo.text.byte:ByteTokenizer", "target: zoo.text.byte.ByteTokenizer"), "key 'target' must look"),
        (("needs_training: false", "needs_training: 3"), "key 'needs_training' must be a bool"),
        (("needs_training: false", "weights: {url: x}"), "unknown key 'weights.url'"),
        (("needs_training: false", "weights: {sha256: abc}"), "missing required key 'weights.path'"),
        (("my-bytes:", "My Bytes:"), "names must be lowercase"),
    ],
)
def test_bad_entries_name_the_entry_and_key(tmp_path, edit, message):
    path = _write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(ZooError, match=message):
        read_registry_file(path)


ENTRY = """
tokenizers:
  my-entry:
    target: zoo.image.vq.model:VQTokenizer
    modality: {modality}
    summary: a user's entry
    {extra}
"""
DESCRIBED = """inputs: {size: 64, multiple_of: 8, min_size: 8, max_size: 256, range: [0, 1], channels: 3}
    card: {parameters: 10, data: photos, steps: 5, license: MIT, metrics: {psnr: 20.5}, metrics_source: r.md}"""


def test_inputs_and_card_are_read_and_shown(tmp_path):
    entry = read_registry_file(_write(tmp_path, ENTRY.format(modality="image", extra=DESCRIBED)))["my-entry"]
    assert entry.inputs == {"size": 64, "multiple_of": 8, "min_size": 8, "max_size": 256, "range": [0, 1],
                            "channels": 3}
    assert entry.card["metrics"] == {"psnr": 20.5} and entry.as_dict()["card"] == entry.card
    assert entry.as_dict()["inputs"] == entry.inputs
    assert entry.describe_inputs() == ("images [B, 3, H, W] in [0, 1]: 64x64 native, H and W multiples of 8 "
                                       "(at least 8, up to 256x256)")
    fixed = read_registry_file(_write(tmp_path, ENTRY.format(modality="image", extra="inputs: {size: 224}")))
    assert fixed["my-entry"].describe_inputs() == "images [B, C, 224, 224] (224x224 only)"
    audio = ENTRY.format(modality="audio", extra="inputs: {sample_rate: 16000, channels: 1, min_samples: 400}")
    assert read_registry_file(_write(tmp_path, audio))["my-entry"].describe_inputs() == (
        "audio [B, T], mono 16000 Hz, at least 400 samples for one token")
    # Both are optional: an entry without them reads as before.
    bare = read_registry_file(_write(tmp_path, ENTRY.format(modality="image", extra="")))["my-entry"]
    assert bare.inputs is None and bare.card is None and bare.describe_inputs() is None


@pytest.mark.parametrize(
    ("modality", "extra", "message"),
    [
        ("image", "inputs: [64]", "key 'inputs' must be a mapping"),
        ("image", "inputs: {multiple_of: 8}", "missing required key 'inputs.size' for modality 'image'"),
        ("image", "inputs: {size: 64, sample_rate: 16000}", "unknown key 'inputs.sample_rate' for modality 'image'"),
        ("image", "inputs: {size: 64, chanels: 3}", r"unknown key 'inputs.chanels'.*did you mean 'inputs.channels'"),
        ("image", "inputs: {size: 64.5}", "key 'inputs.size' must be an integer, got float"),
        ("image", "inputs: {size: true}", "key 'inputs.size' must be an integer, got bool"),
        ("image", "inputs: {size: 0}", "key 'inputs.size' must be a positive integer"),
        ("image", "inputs: {size: 64, range: [1, 0]}", r"key 'inputs.range' must be \[low, high\]"),
        ("image", "inputs: {size: 64, range: [0, high]}", r"key 'inputs.range' must be \[low, high\]"),
        ("image", "inputs: {size: 64, multiple_of: 6}", r"'inputs.size' \(64\) must be a multiple of"),
        ("image", "inputs: {size: 64, min_size: 8}", "need 'inputs.multiple_of'"),
        ("image", "inputs: {size: 64, multiple_of: 8, max_size: 32}", "must lie within 'inputs.min_size'"),
        ("audio", "inputs: {channels: 1}", "missing required key 'inputs.sample_rate' for modality 'audio'"),
        ("audio", "inputs: {sample_rate: 16000, size: 64}", "unknown key 'inputs.size' for modality 'audio'"),
        ("audio", "inputs: {sample_rate: 16000, min_samles: 400}", "did you mean 'inputs.min_samples'"),
        ("text", "inputs: {type: bytes}", "key 'inputs.type' must be 'str'"),
        ("text", "inputs: {type: str, size: 8}", "unknown key 'inputs.size' for modality 'text'"),
        ("text", "card: [MIT]", "key 'card' must be a mapping"),
        ("text", "card: {params: 10}", r"unknown key 'card.params' \(did you mean 'card.parameters'\?\)"),
        ("text", "card: {licence: MIT}", "did you mean 'card.license'"),
        ("text", "card: {parameters: '10'}", "key 'card.parameters' must be an integer, got str"),
        ("text", "card: {steps: -1}", "key 'card.steps' must be an integer >= 0"),
        ("text", "card: {license: 3}", "key 'card.license' must be a string"),
        ("text", "card: {metrics: {psnr: 20}}", "needs 'card.metrics_source'"),
        ("text", "card: {metrics: {psnr: high}, metrics_source: r.md}", "must map metric names to numbers"),
        ("text", "card: {metrics: {psnr: true}, metrics_source: r.md}", "must map metric names to numbers"),
    ],
)
def test_bad_inputs_and_cards_name_the_entry_and_key(tmp_path, modality, extra, message):
    path = _write(tmp_path, ENTRY.format(modality=modality, extra=extra))
    with pytest.raises(ZooError, match=f"entry 'my-entry': .*{message}"):
        read_registry_file(path)


def test_bad_documents(tmp_path):
    with pytest.raises(ZooError, match="one top-level key 'tokenizers'"):
        read_registry_file(_write(tmp_path, "models: {}\n"))
    with pytest.raises(ZooError, match="not valid YAML"):
        read_registry_file(_write(tmp_path, "tokenizers: [\n"))
    with pytest.raises(ZooError, match="does not exist"):
        read_registry_file(tmp_path / "absent.yaml")


def test_user_catalog_adds_entries_and_collisions_fail(tmp_path):
    registry = Registry()
    assert registry.add(_write(tmp_path, GOOD)) == ["my-bytes"]
    assert registry.names("my-*") == ["my-bytes"]
    with pytest.raises(ZooError, match="'my-bytes' is already defined in"):
        registry.add(_write(tmp_path, GOOD, name="again.yaml"))


def test_add_to_default_registry_then_load(tmp_path):
    names = zoo.registry.add(_write(tmp_path, GOOD))
    try:
        tok = zoo.load("my-bytes")
        assert tok.encode("a") == [257, 97, 258]
        with pytest.raises(ZooError, match="already defined"):
            zoo.registry.add(_write(tmp_path, GOOD.replace("my-bytes", "byte"), name="clash.yaml"))
    finally:
        for name in names:
            zoo.registry.default_registry().remove(name)


def test_listing_is_natural_sorted_and_filtered(tmp_path):
    registry = Registry()
    entries = "".join(
        f"""
  {name}:
    target: zoo.text.byte:ByteTokenizer
    modality: {modality}
    summary: s
    {"weights: {path: w.safetensors}" if pretrained else "needs_training: true"}
"""
        for name, modality, pretrained in [
            ("vq-f16", "image", True),
            ("vq-f8", "image", False),
            ("vq-f4", "image", True),
            ("bpe-32k", "text", True),
        ]
    )
    registry.add(_write(tmp_path, "tokenizers:" + entries))
    assert registry.names() == ["bpe-32k", "vq-f4", "vq-f8", "vq-f16"]
    assert registry.names("vq-*") == ["vq-f4", "vq-f8", "vq-f16"]
    assert registry.names(modality="text") == ["bpe-32k"]
    assert registry.names(pretrained=True) == ["bpe-32k", "vq-f4", "vq-f16"]
    with pytest.raises(ZooError, match="modality must be one of"):
        registry.names(modality="video")


def test_info_reports_the_entry():
    record = zoo.info("byte")
    assert record["target"] == "zoo.text.byte:ByteTokenizer" and record["pretrained"] is True


def test_loading_a_text_tokenizer_does_not_import_image_or_audio_code():
    code = (
        "import sys, zoo; zoo.load('byte'); print([m for m in sys.modules if m.startswith(('zoo.image', 'zoo.audio'))])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
