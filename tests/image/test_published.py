"""Published image tokenizers (zoo/image/published/): parity with the wrapped transformers models on tiny random
configs of the same classes, the authors' checkpoint layouts, round trips and the offline behaviour of the
entries whose weights download. The registry-wide contract tests cover the entries themselves."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import zoo
from zoo.errors import ZooError
from zoo.hub import cached_path
from zoo.image.published.chameleon import ChameleonVQTokenizer
from zoo.image.published.convert import convert_checkpoint, read_checkpoint
from zoo.image.published.emu3 import Emu3VQTokenizer
from zoo.image.published.janus import JanusVQTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

# Tiny configs of the real classes: GroupNorm(32) needs 32-channel multiples; one downsampling level (f2), so a
# 16x16 image gives an 8x8 grid, with attention at the lowest level (Janus always, Chameleon / Emu3 by config).
JANUS_TINY = {"embed_dim": 4, "num_embeddings": 64, "latent_channels": 32, "base_channels": 32,
              "channel_multiplier": [1, 2], "num_res_blocks": 1, "num_patches": 8}
EMU3_TINY = {"codebook_size": 64, "embed_dim": 4, "latent_channels": 4, "base_channels": 32,
             "channel_multiplier": [1, 2], "num_res_blocks": 1, "attn_resolutions": [1], "hidden_size": 64,
             "num_attention_heads": 1, "temporal_downsample_factor": 4}
CHAMELEON_TINY = {"embed_dim": 4, "num_embeddings": 64, "latent_channels": 32, "base_channels": 32,
                  "channel_multiplier": [1, 2], "num_res_blocks": 1, "resolution": 16, "attn_resolutions": [8]}
SIDE, GRID = 16, 8
PUBLISHED = ("llamagen-vq16", "janus-vq16", "emu3-vq")


def _tiny(kind: str, **kw):
    if kind == "janus":
        return JanusVQTokenizer(JANUS_TINY, image_size=SIDE, **kw)
    if kind == "emu3":
        return Emu3VQTokenizer(EMU3_TINY, image_size=SIDE, **kw)
    return ChameleonVQTokenizer(CHAMELEON_TINY, image_size=SIDE, **kw)


def _images(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1))


def _library_ids(tok, pixels: torch.Tensor) -> torch.Tensor:
    """The wrapped model's own encode path, as transformers' users call it."""
    with torch.no_grad():
        if isinstance(tok, Emu3VQTokenizer):
            sizes = torch.tensor([[SIDE, SIDE]] * pixels.shape[0])
            return torch.stack(tok.model.encode(pixels, image_sizes=sizes).image_tokens)
        return tok.model.encode(pixels).image_tokens.view(pixels.shape[0], GRID, GRID)


# -- parity with the library ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,kw", [("janus", {"lookup": "euclidean"}), ("emu3", {}), ("chameleon", {})])
def test_encode_ids_equal_the_library_encode(kind, kw):
    tok, x = _tiny(kind, **kw), _images()
    ids = tok.encode(x)
    assert ids.shape == (2, GRID, GRID) and ids.dtype == torch.long
    assert torch.equal(ids, _library_ids(tok, tok.to_pixels(x)))


def test_janus_cosine_lookup_is_llamagens_rule_and_differs_from_the_library_forward():
    tok, x = _tiny("janus"), _images()
    with torch.no_grad():
        z = tok.model.quant_conv(tok.model.encoder(tok.to_pixels(x)))
    # LlamaGen's VectorQuantizer with l2_norm: both sides on the unit sphere, nearest code = largest cosine
    z = torch.nn.functional.normalize(z.permute(0, 2, 3, 1), dim=-1)
    codes = torch.nn.functional.normalize(tok.model.quantize.embedding.weight, dim=-1)
    reference = torch.einsum("bhwd,kd->bhwk", z, codes).argmax(-1)
    assert torch.equal(tok.encode(x), reference)
    # transformers' JanusVQVAE.encode skips the normalisation (the caveat the entry's `lookup` records)
    assert not torch.equal(reference, _library_ids(tok, tok.to_pixels(x)))


@pytest.mark.parametrize("kind", ["janus", "emu3"])
def test_decode_equals_the_library_decode(kind):
    tok = _tiny(kind)
    ids = tok.encode(_images())
    with torch.no_grad():
        theirs = tok.model.decode(ids.flatten(1) if kind == "janus" else ids)
        ours = tok.pixels_from_ids(ids)
    difference = (ours - theirs).abs().max().item()
    assert difference == 0.0, f"max abs difference {difference}"
    images = tok.decode(ids)
    assert images.shape == (2, 3, SIDE, SIDE) and 0 <= images.min() and images.max() <= 1
    assert torch.allclose(images, ((theirs + 1) / 2).clamp(0, 1), atol=1e-6)


def test_normalisation_equals_the_librarys_image_processors():
    from transformers import ChameleonImageProcessor, Emu3ImageProcessor

    pixels = np.random.default_rng(0).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    emu3 = Emu3ImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3)(images=[pixels], do_resize=False,
                                                                           return_tensors="pt")
    chameleon = ChameleonImageProcessor()(images=[pixels], do_resize=False, do_center_crop=False, return_tensors="pt")
    assert torch.allclose(_tiny("emu3").to_pixels(x), emu3["pixel_values"], atol=1e-6)
    assert torch.allclose(_tiny("chameleon").to_pixels(x), chameleon["pixel_values"], atol=1e-6)
    assert torch.allclose(_tiny("janus").to_pixels(x), 2 * x - 1, atol=1e-6)  # LlamaGen's vq_demo: 2 * img - 1


# -- the contract ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["janus", "emu3", "chameleon"])
def test_save_pretrained_and_zoo_load_round_trip_exactly(kind, tmp_path):
    tok, x = _tiny(kind), _images()
    loaded = zoo.load(tok.save_pretrained(tmp_path / kind))
    assert type(loaded) is type(tok) and loaded.config == tok.config
    ours, theirs = tok.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert torch.equal(loaded.encode(x), tok.encode(x))


def test_seeded_build_embed_codebook_and_forward():
    tok, again = _tiny("janus"), _tiny("janus")
    assert all(torch.equal(a, b) for a, b in zip(tok.state_dict().values(), again.state_dict().values()))
    ids = tok.encode(_images())
    assert tok.embed(ids).shape == (2, GRID, GRID, 4)
    assert torch.allclose(tok.codebook.norm(dim=-1), torch.ones(64))  # the decoder reads unit-norm codes
    assert tok.vocab_size == 64 and tok.tokens_per_image == GRID * GRID
    out = tok(_images())
    assert torch.equal(out.indices, ids) and out.output.shape == (2, 3, SIDE, SIDE)


def test_chameleon_encodes_and_says_it_has_no_decoder():
    tok = _tiny("chameleon")
    ids = tok.encode(_images())
    with pytest.raises(ZooError, match="no decoder"):
        tok.decode(ids)
    assert tok(_images()).output is None


def test_boundary_errors_name_the_problem():
    tok = _tiny("janus")
    with pytest.raises(ZooError, match="multiples of 2"):
        tok.encode(torch.rand(1, 3, 15, 16))
    with pytest.raises(ZooError, match=r"\[0, 1\]"):
        tok.encode(torch.rand(1, 3, SIDE, SIDE) * 2)
    with pytest.raises(ZooError, match="num_embedding"):  # transformers' configs take any key; this one refuses
        JanusVQTokenizer({**JANUS_TINY, "num_embedding": 8})
    with pytest.raises(ZooError, match="lookup"):
        JanusVQTokenizer(JANUS_TINY, lookup="dot")
    with pytest.raises(ZooError, match="frozen"):
        tok.training_losses({"image": _images()}, 0)


# -- the authors' layouts -----------------------------------------------------------------------------------

# LlamaGen's VQModel (tokenizer/tokenizer_image/vq_model.py) names, per transformers JanusVQVAE name: levels are
# `conv_blocks` holding `res` / `attn` lists, the middle is a ModuleList of three, and the quantiser keeps a
# usage buffer the library does not have.
_TO_LLAMAGEN = (
    (r"^encoder\.down\.", "encoder.conv_blocks."),
    (r"^decoder\.up\.", "decoder.conv_blocks."),
    (r"\.block\.(\d+)\.", r".res.\1."),
    (r"\.mid\.block_1\.", ".mid.0."),
    (r"\.mid\.attn_1\.", ".mid.1."),
    (r"\.mid\.block_2\.", ".mid.2."),
)


def _llamagen_state(tok) -> dict[str, torch.Tensor]:
    state = {}
    for name, tensor in tok.model.state_dict().items():
        for pattern, replacement in _TO_LLAMAGEN:
            name = re.sub(pattern, replacement, name)
        state[name] = tensor.clone()
    state["quantize.codebook_used"] = torch.zeros(65536)
    return state


def test_llamagen_names_map_to_the_library_names():
    names = set(_llamagen_state(_tiny("janus")))
    for theirs, ours in [("encoder.conv_blocks.0.res.0.norm1.weight", "encoder.down.0.block.0.norm1.weight"),
                         ("encoder.conv_blocks.1.attn.0.q.weight", "encoder.down.1.attn.0.q.weight"),
                         ("encoder.conv_blocks.0.downsample.conv.weight", "encoder.down.0.downsample.conv.weight"),
                         ("encoder.mid.1.proj_out.weight", "encoder.mid.attn_1.proj_out.weight"),
                         ("decoder.mid.2.conv2.bias", "decoder.mid.block_2.conv2.bias"),
                         ("decoder.conv_blocks.0.attn.1.k.weight", "decoder.up.0.attn.1.k.weight"),
                         ("decoder.conv_blocks.0.upsample.conv.weight", "decoder.up.0.upsample.conv.weight")]:
        assert theirs in names
        assert JanusVQTokenizer.rename(theirs) == ours
    assert "model.quantize.codebook_used" not in JanusVQTokenizer.convert(_llamagen_state(_tiny("janus")))


@pytest.mark.parametrize("layout", ["llamagen", "janus-whole-model-bf16", "transformers-whole-model"])
def test_official_safetensors_layouts_load_into_the_wrapper(layout, tmp_path):
    source, target = _tiny("janus", seed=1), _tiny("janus", seed=2)
    state = _llamagen_state(source)
    if layout.startswith("janus"):  # deepseek-ai/Janus-1.3B: the whole model, VQ under gen_vision_model., bfloat16
        source.model.to(torch.bfloat16).float()  # what the file holds, widened back exactly
        state = {f"gen_vision_model.{k}": v.to(torch.bfloat16) for k, v in state.items()}
        state["language_model.model.embed_tokens.weight"] = torch.zeros(4, 4, dtype=torch.bfloat16)
    elif layout.startswith("transformers"):  # JanusForConditionalGeneration: model.vqmodel.*
        state = {f"model.vqmodel.{k}": v for k, v in source.model.state_dict().items()}
        state["model.language_model.norm.weight"] = torch.ones(4)
    save_file(state, str(tmp_path / "model.safetensors"))
    target.load_weights(tmp_path / "model.safetensors")
    ours, theirs = source.state_dict(), target.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert torch.equal(target.encode(_images()), source.encode(_images()))


def test_emu3_whole_model_prefix_and_a_mismatch_is_one_error(tmp_path):
    source, target = _tiny("emu3", seed=1), _tiny("emu3", seed=2)
    save_file({f"model.vqmodel.{k}": v for k, v in source.model.state_dict().items()}, str(tmp_path / "a.safetensors"))
    target.load_weights(tmp_path / "a.safetensors")
    assert torch.equal(target.encode(_images()), source.encode(_images()))
    state = {k: v for k, v in source.model.state_dict().items() if not k.startswith("decoder.conv_out")}
    save_file(state, str(tmp_path / "b.safetensors"))
    with pytest.raises(ZooError, match=r"missing \['model.decoder.conv_out"):
        target.load_weights(tmp_path / "b.safetensors")


def test_pickled_llamagen_checkpoint_converts_once_into_a_folder(tmp_path):
    source = _tiny("janus", seed=3)
    torch.save({"model": _llamagen_state(source), "steps": 100}, tmp_path / "vq_ds16_c2i.pt")
    with pytest.raises(ZooError, match="never reads"):  # zoo.load's path refuses pickles
        _tiny("janus").load_weights(tmp_path / "vq_ds16_c2i.pt")
    folder = convert_checkpoint(tmp_path / "vq_ds16_c2i.pt", tmp_path / "converted", "llamagen-vq16",
                                vq_config=JANUS_TINY, image_size=SIDE)
    loaded = zoo.load(folder)
    assert torch.equal(loaded.encode(_images()), source.encode(_images()))
    assert loaded._zoo_metadata["converted_from"].endswith("vq_ds16_c2i.pt")


class _Callback:
    """Stands for what a Lightning checkpoint stores besides tensors (callbacks, hyper-parameter objects)."""


def test_a_pickle_needing_a_full_unpickle_is_refused_with_the_reason(tmp_path):
    torch.save({"model": {"w": torch.zeros(1)}, "callbacks": [_Callback()]}, tmp_path / "full.ckpt")
    with pytest.raises(ZooError, match="full unpickle"):
        read_checkpoint(tmp_path / "full.ckpt")


# -- the entries --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PUBLISHED)
def test_offline_pretrained_load_names_the_cache_path(name):
    entry = zoo.registry.get(name)
    tiny = {"vq_config": EMU3_TINY if "emu3" in name else JANUS_TINY, "image_size": SIDE}
    with pytest.raises(ZooError) as caught:
        zoo.load(name, pretrained=True, **tiny)
    assert str(cached_path(entry.weights["path"])) in str(caught.value)
    assert "HF_HUB_OFFLINE" in str(caught.value)


@pytest.mark.parametrize("name", PUBLISHED)
def test_entries_build_the_published_architecture(name):
    """zoo.load(name) builds the real network (random weights); on the meta device it costs no memory."""
    entry = zoo.registry.get(name)
    with torch.device("meta"):
        tok = zoo.load(name)
    assert sum(p.numel() for p in tok.parameters()) == entry.card["parameters"]
    expected = {"llamagen-vq16": (16384, 256), "janus-vq16": (16384, 576), "emu3-vq": (32768, 4096)}[name]
    assert (tok.vocab_size, tok.tokens_per_image) == expected
    assert entry.inputs["size"] == tok.image_size and entry.inputs["multiple_of"] == tok.downsample
    assert entry.weights["sha256"] and entry.weights["path"].startswith("hf://")


def test_demo_skips_uncached_downloads_and_joins_cached_ones(monkeypatch, tmp_path):
    from zoo.evaluate.demo import uncached_downloads

    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    names = ["vq-f8", *PUBLISHED]
    missing = uncached_downloads(names)
    assert set(missing) == set(PUBLISHED)
    assert missing["llamagen-vq16"] == str(cached_path("hf://FoundationVision/vq-ds16-c2i/model.safetensors"))
    local = cached_path(zoo.registry.get("emu3-vq").weights["path"])
    local.parent.mkdir(parents=True)
    local.write_bytes(b"placeholder")
    assert set(uncached_downloads(names)) == {"llamagen-vq16", "janus-vq16"}
