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
