"""Weight resolution: shipped and local paths, the cache for hf:// and https://, sha256, offline errors."""

from __future__ import annotations

import hashlib

import pytest

from zoo import hub
from zoo.errors import ZooError


def _file(tmp_path, data=b"weights"):
    path = tmp_path / "w.bin"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_local_path_with_matching_sha(tmp_path):
    path, digest = _file(tmp_path)
    assert hub.resolve_weights(str(path), digest) == path
    assert hub.sha256_of(path) == digest


def test_sha_mismatch_names_both_digests(tmp_path):
    path, digest = _file(tmp_path)
    with pytest.raises(ZooError, match=f"sha256 is {digest}, expected 00"):
        hub.resolve_weights(str(path), "00" * 32)


def test_missing_local_file(tmp_path):
    with pytest.raises(ZooError, match="weights file .* not found"):
        hub.resolve_weights(str(tmp_path / "absent.safetensors"))


@pytest.mark.parametrize("source", ["hf://org/repo/model.safetensors", "https://example.org/files/model.safetensors"])
def test_remote_offline_error_says_where_to_put_the_file(source, monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    expected = hub.cached_path(source)
    assert str(expected).startswith(str(tmp_path / "cache"))
    with pytest.raises(ZooError, match=f"not cached.*put the file at {expected}"):
        hub.resolve_weights(source)


@pytest.mark.parametrize("source", ["hf://org/repo/sub/model.safetensors", "https://example.org/model.safetensors"])
def test_remote_file_placed_in_the_cache_is_used_and_verified(source, monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    local = hub.cached_path(source)
    local.parent.mkdir(parents=True)
    local.write_bytes(b"abc")
    digest = hashlib.sha256(b"abc").hexdigest()
    assert hub.resolve_weights(source, digest) == local
    with pytest.raises(ZooError, match="sha256 is"):
        hub.resolve_weights(source, "ff" * 32)


def test_failed_download_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    # A closed local port: the download fails at once, whatever the network.
    source = "http://127.0.0.1:9/model.safetensors"
    with pytest.raises(ZooError, match=r"could not download http://127.0.0.1:9/model.safetensors .*put the file at"):
        hub.resolve_weights(source)
    assert not any(hub.cached_path(source).parent.glob("*.part")) if hub.cached_path(source).parent.exists() else True


def test_pretrained_entry_loads_verified_weights(tmp_path, monkeypatch):
    """A registry entry with weights: sha256 is checked before the weights are used."""
    import textwrap

    import torch

    import zoo
    from tests.core.test_pretrained import TinyNet

    net = TinyNet()
    net.save_pretrained(tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "model.safetensors"
    reg = tmp_path / "reg.yaml"
    reg.write_text(
        textwrap.dedent(
            f"""
            tokenizers:
              tiny-good:
                target: tests.core.test_pretrained:TinyNet
                modality: image
                summary: test
                weights: {{path: {weights}, sha256: {hub.sha256_of(weights)}}}
              tiny-bad:
                target: tests.core.test_pretrained:TinyNet
                modality: image
                summary: test
                weights: {{path: {weights}, sha256: '{"0" * 64}'}}
              tiny-none:
                target: tests.core.test_pretrained:TinyNet
                modality: image
                summary: test
                recipe: recipes/x.yaml
            """
        )
    )
    names = zoo.registry.add(reg)
    try:
        assert torch.equal(zoo.load("tiny-good", pretrained=True).proj.weight, net.proj.weight)
        with pytest.raises(ZooError, match="sha256 is"):
            zoo.load("tiny-bad", pretrained=True)
        with pytest.raises(ZooError, match="ships no pretrained weights; train it with `zoo train recipes/x.yaml`"):
            zoo.load("tiny-none", pretrained=True)
    finally:
        for name in names:
            zoo.registry.default_registry().remove(name)


@pytest.mark.parametrize(
    "source",
    [
        "hf://org/../../outside.bin",  # climbs out of the cache
        "hf://../../../outside.bin",
        "hf:///abs/outside.bin",  # an empty part: absolute after the scheme
        "hf://org//outside.bin",
        "hf://org/repo/./outside.bin",
        "hf://org/repo/..\\..\\outside.bin",
        "hf://org/repo/C:outside.bin",
        "hf://org/repo/out\x00side.bin",
        "hf://org/repo/" + "a" * 300,
        "hf://org/outside.bin",  # too few parts
    ],
)
def test_hf_sources_that_would_leave_the_cache_are_refused(source, monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache" / "zoo"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "cache" / "zoo").mkdir(parents=True)
    planted = tmp_path / "outside.bin"  # where '..' would lead: it must never be read as if cached
    planted.write_bytes(b"planted")
    with pytest.raises(ZooError, match="expected hf://ORG/REPO/PATH/TO/FILE"):
        hub.resolve_weights(source)


def test_a_link_planted_in_the_cache_does_not_lead_out_of_it(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.safetensors").write_bytes(b"planted")
    (tmp_path / "cache" / "hf" / "org").mkdir(parents=True)
    (tmp_path / "cache" / "hf" / "org" / "repo").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ZooError, match="leads outside the cache"):
        hub.resolve_weights("hf://org/repo/model.safetensors")


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("https://example.org/a/model.safetensors?x=1#y", "model.safetensors"),
        ("https://example.org/..", "download"),
        ("https://example.org/a%2F..%2Fb", "a_2F.._2Fb"),
        ("https://example.org/.hidden", "hidden"),
        ("https://example.org/w\x00.bin", "w_.bin"),
        ("https://example.org/" + "a" * 300, "a" * 200),
    ],
)
def test_url_cache_names_are_plain_file_names_inside_the_cache(source, name, monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    local = hub.cached_path(source)
    assert local.name == name
    assert local.parent.parent == (tmp_path / "cache" / "url").resolve()
