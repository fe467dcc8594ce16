"""Pins for downloaded weights: a revision gets its own cache folder, and without a published sha256 the first
copy seen is recorded (trust on first use) and every later use is checked against it."""

from __future__ import annotations

import hashlib
import sys
import types

import pytest

import zoo
from zoo import hub
from zoo.errors import ZooError
from zoo.registry import read_registry_file

SOURCE = "hf://org/repo/sub/model.safetensors"
REV = "0123456789abcdef0123456789abcdef01234567"


def _place(source, data: bytes, revision=None):
    local = hub.cached_path(source, revision)
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)
    return local


def test_each_revision_has_its_own_cache_folder(cache):
    plain, pinned = hub.cached_path(SOURCE), hub.cached_path(SOURCE, REV)
    assert plain == cache.resolve() / "hf" / "org" / "repo" / "sub" / "model.safetensors"
    assert pinned == cache.resolve() / "hf" / "org" / "repo" / f"@{REV}" / "sub" / "model.safetensors"


@pytest.mark.parametrize("revision", ["../../etc", "a/b", ".hidden", "", "x" * 101, "main\n"])
def test_a_revision_that_is_not_a_name_is_refused(cache, revision):
    with pytest.raises(ZooError, match="revision .* is not allowed; expected a commit hash, tag or branch"):
        hub.cached_path(SOURCE, revision)


def test_a_revision_on_a_url_is_refused():
    with pytest.raises(ZooError, match="a revision pins hf:// files only"):
        hub.cached_path("https://example.org/m.bin", REV)


def test_first_use_records_the_sha256_and_later_uses_check_it(cache):
    local = _place(SOURCE, b"first copy", REV)
    record = hub.recorded_sha256_path(local)
    assert not record.exists()
    assert hub.resolve_weights(SOURCE, revision=REV) == local
    assert record.read_text().strip() == hashlib.sha256(b"first copy").hexdigest()
    assert hub.pin_of(SOURCE, revision=REV) == {
        "kind": "revision + sha256 on first download", "sha256": hashlib.sha256(b"first copy").hexdigest(),
        "revision": REV, "recorded_at": str(record),
    }  # fmt: skip
    assert hub.resolve_weights(SOURCE, revision=REV) == local  # the same file: still fine
    local.write_bytes(b"swapped in")
    with pytest.raises(ZooError, match="was recorded when it was first used .* the cached file changed"):
        hub.resolve_weights(SOURCE, revision=REV)


def test_a_damaged_record_is_an_error_not_a_new_trust(cache):
    local = _place(SOURCE, b"copy")
    hub.recorded_sha256_path(local).write_text("not a digest\n")
    with pytest.raises(ZooError, match="not a sha256 record .64 hex digits.; delete it"):
        hub.resolve_weights(SOURCE)


def test_a_published_sha256_is_checked_and_no_record_is_written(cache):
    local = _place(SOURCE, b"copy")
    digest = hashlib.sha256(b"copy").hexdigest()
    assert hub.resolve_weights(SOURCE, digest) == local
    assert not hub.recorded_sha256_path(local).exists()
    assert hub.pin_of(SOURCE, digest)["kind"] == "sha256 (published)"
    with pytest.raises(ZooError, match="the file is corrupt or not the one named"):
        hub.resolve_weights(SOURCE, "0" * 64)


def test_a_download_goes_to_the_revision_and_is_recorded(cache, monkeypatch, tmp_path):
    """Online: huggingface_hub is asked for that revision; the copy lands in the revision's folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    asked = {}

    def fake_download(repo, filename, revision=None):
        asked.update(repo=repo, filename=filename, revision=revision)
        fetched = tmp_path / "hub-copy"
        fetched.write_bytes(b"downloaded")
        return str(fetched)

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=fake_download))
    local = hub.resolve_weights(SOURCE, revision=REV)
    assert asked == {"repo": "org/repo", "filename": "sub/model.safetensors", "revision": REV}
    assert local == hub.cached_path(SOURCE, REV) and local.read_bytes() == b"downloaded"
    assert hub.recorded_sha256_path(local).read_text().strip() == hashlib.sha256(b"downloaded").hexdigest()


def test_the_registry_checks_a_revision_and_info_shows_the_pin(tmp_path):
    catalog = tmp_path / "catalog.yaml"
    entry = "tokenizers:\n  x:\n    target: zoo.text.byte:ByteTokenizer\n    modality: text\n    summary: s\n"
    catalog.write_text(entry + "    weights: {path: hf://o/r/f.json, revision: ../x}\n")
    with pytest.raises(ZooError, match="revision '../x' is not allowed"):
        read_registry_file(catalog)
    catalog.write_text(entry + "    weights: {path: hf://o/r/f.json, revision: abc123, tag: 1}\n")
    with pytest.raises(ZooError, match="weights.tag"):
        read_registry_file(catalog)
    pin = zoo.info("llamagen-vq16")["pin"]
    assert pin["kind"] == "sha256 (published)" and len(pin["sha256"]) == 64
