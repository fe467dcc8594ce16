"""Weights inside a sharded hub checkpoint (``weights.select``): only the shards the index names for the prefix are
read, their tensors are gathered once into one cached file, every file is pinned on first use, and the
``chameleon-vq`` entry loads its VQ out of a 7B-style sharded layout (a full-size fake, random tensors)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import zoo
from zoo import hub
from zoo.errors import ZooError
from zoo.image.published.chameleon import ChameleonVQTokenizer

INDEX = "hf://org/big-model/model.safetensors.index.json"


def _place_sharded(shards: dict[str, dict[str, torch.Tensor]], source: str = INDEX, revision=None, skip=()):
    """A sharded checkpoint in the cache: its index and every shard not in ``skip``."""
    index = hub.cached_path(source, revision)
    index.parent.mkdir(parents=True, exist_ok=True)
    weight_map = {name: shard for shard, tensors in shards.items() for name in tensors}
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    for shard, tensors in shards.items():
        if shard not in skip:
            save_file(tensors, str(index.with_name(shard)))
    return index


def test_only_the_prefix_tensors_of_the_shards_that_hold_them_are_gathered(cache):
    shards = {
        "model-00001-of-00003.safetensors": {"model.layers.0.w": torch.ones(2), "model.vqmodel.a": torch.arange(3.0)},
        "model-00002-of-00003.safetensors": {"model.vqmodel.b": torch.full((2, 2), 7.0)},
        "model-00003-of-00003.safetensors": {"lm_head.weight": torch.zeros(4)},
    }
    index = _place_sharded(shards, skip={"model-00003-of-00003.safetensors"})  # never needed, never fetched
    gathered = hub.resolve_selected(INDEX, "model.vqmodel.")
    assert gathered == hub.selected_path(INDEX, None, "model.vqmodel.")
    assert gathered == hub.remote_cache_path({"path": INDEX, "select": "model.vqmodel."})
    tensors = load_file(str(gathered))
    assert sorted(tensors) == ["model.vqmodel.a", "model.vqmodel.b"]
    assert torch.equal(tensors["model.vqmodel.a"], torch.arange(3.0)) and tensors["model.vqmodel.b"].sum() == 28
    for path in (index, index.with_name("model-00001-of-00003.safetensors"), gathered):
        assert hub.recorded_sha256_path(path).is_file()  # every file pinned on first use
    index.unlink()  # later uses read the gathered file only
    assert hub.resolve_selected(INDEX, "model.vqmodel.") == gathered
    gathered.write_bytes(gathered.read_bytes()[:-1] + b" ")
    with pytest.raises(ZooError, match="was recorded when it was first used"):
        hub.resolve_selected(INDEX, "model.vqmodel.")


def test_a_changed_shard_is_caught_by_its_first_use_pin(cache):
    shards = {"model-1.safetensors": {"model.vqmodel.a": torch.ones(2)}}
    index = _place_sharded(shards)
    gathered = hub.resolve_selected(INDEX, "model.vqmodel.")
    gathered.unlink()
    save_file({"model.vqmodel.a": torch.zeros(2)}, str(index.with_name("model-1.safetensors")))
    with pytest.raises(ZooError, match="model-1.safetensors: sha256 is .* the cached file changed"):
        hub.resolve_selected(INDEX, "model.vqmodel.")


def test_offline_errors_name_the_missing_index_then_the_missing_shard(cache):
    with pytest.raises(ZooError, match=r"model.safetensors.index.json is not cached .* put the file at"):
        hub.resolve_selected(INDEX, "model.vqmodel.")
    _place_sharded({"model-2.safetensors": {"model.vqmodel.a": torch.ones(1)}}, skip={"model-2.safetensors"})
    with pytest.raises(ZooError, match=r"hf://org/big-model/model-2.safetensors is not cached"):
        hub.resolve_selected(INDEX, "model.vqmodel.")


@pytest.mark.parametrize(("weight_map", "message"), [
    ({"model.x": "model-1.safetensors"}, "no tensor name starts with 'model.vqmodel.'"),
    ({"model.vqmodel.a": "../../elsewhere.safetensors"}, "is not a .safetensors file name beside the index"),
    ({"model.vqmodel.a": "model.bin"}, "is not a .safetensors file name beside the index"),
    ([1, 2], "'weight_map' must map tensor names"),
])
def test_a_bad_index_is_refused_with_the_reason(cache, weight_map, message):
    index = hub.cached_path(INDEX)
    index.parent.mkdir(parents=True)
    index.write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ZooError, match=message):
        hub.resolve_selected(INDEX, "model.vqmodel.")


def test_select_needs_a_hub_index(cache):
    with pytest.raises(ZooError, match=r"weights.path must then be an hf:// path ending in \.safetensors\.index\.json"):
        hub.resolve_selected("hf://org/repo/model.safetensors", "model.")
    from zoo.registry import read_registry_file

    bad = cache.parent / "bad.yaml"
    bad.write_text("tokenizers:\n  x:\n    target: zoo.text.byte:ByteTokenizer\n    modality: text\n    summary: s\n"
                   "    weights: {path: hf://org/repo/model.safetensors, select: model.}\n")
    with pytest.raises(ZooError, match="weights.select takes a tensor-name prefix from a sharded hub checkpoint"):
        read_registry_file(bad)


def test_chameleon_entry_loads_its_vq_out_of_a_sharded_7b_layout(cache):
    entry = zoo.registry.get("chameleon-vq")
    assert entry.weights == {"path": "hf://facebook/chameleon-7b/model.safetensors.index.json",
                             "select": "model.vqmodel."}
    reference = ChameleonVQTokenizer(**entry.config)  # random weights, the entry's full-size config
    with torch.no_grad():
        for parameter in reference.parameters():  # away from the default init, so a missed tensor would show
            noise = torch.randn(parameter.shape, generator=torch.Generator().manual_seed(parameter.numel()))
            parameter.add_(noise * 0.01)
    vq = {"model.vqmodel." + name[len("model."):]: value.contiguous() for name, value in reference.state_dict().items()}
    names = sorted(vq)
    half = len(names) // 2
    _place_sharded({
        "model-00001-of-00003.safetensors": {"model.embed_tokens.weight": torch.zeros(8, 4),
                                             **{n: vq[n] for n in names[:half]}},
        "model-00002-of-00003.safetensors": {n: vq[n] for n in names[half:]},
        "model-00003-of-00003.safetensors": {"lm_head.weight": torch.zeros(8, 4)},
    }, source=entry.weights["path"], skip={"model-00003-of-00003.safetensors"})
    tok = zoo.load("chameleon-vq", pretrained=True)
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ids = tok.encode(images)
        assert ids.shape == (1, 4, 4)
        assert torch.equal(ids, reference.encode(images))
    with pytest.raises(ZooError, match="no decoder|encode"):
        tok.decode(ids)
