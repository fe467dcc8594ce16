"""The second batch of published image tokenizers (issue 17): diffusers' VQModel (aMUSEd, latent diffusion's VQ-f4)
and LlamaGen's pickled checkpoints (VQ-8, the text-to-image VQ-16). Parity with the wrapped library on tiny random
configs of the same classes, the authors' file layouts (fixtures with their names, random values), the convert-once
path for pinned pickled downloads, and token perturbation (pFID / perturbed PSNR) on each codebook."""

from __future__ import annotations

import argparse
import hashlib
import json

import pytest
import torch

import zoo
from zoo.errors import ZooError
from zoo.hub import cached_path, pin_of, recorded_sha256_path
from zoo.image.published.base import CONVERTED_SUFFIX, converted_source_sha256
from zoo.image.published.convert import read_checkpoint
from zoo.image.published.diffusers_vq import DiffusersVQTokenizer
from zoo.image.published.janus import JanusVQTokenizer
from zoo.quantize.perturb import perturb_token_ids

pytestmark = pytest.mark.usefixtures("one_thread")

try:
    import diffusers  # noqa: F401

    HAS_DIFFUSERS = True
except ImportError:
    HAS_DIFFUSERS = False
needs_diffusers = pytest.mark.skipif(not HAS_DIFFUSERS, reason="diffusers is not installed (pip install 'zoo[hf]')")

SIDE, GRID = 16, 8
# Two levels (f2), GroupNorm(32)-compatible widths; aMUSEd's choices (no mid attention, ids looked up from the
# codebook) and latent diffusion's (mid attention, a separate code dimension, decode from code vectors).
AMUSED_TINY = {"block_out_channels": [32, 64], "down_block_types": ["DownEncoderBlock2D"] * 2,
               "up_block_types": ["UpDecoderBlock2D"] * 2, "latent_channels": 8, "num_vq_embeddings": 64,
               "layers_per_block": 1, "norm_num_groups": 32, "mid_block_add_attention": False,
               "lookup_from_codebook": True}
LDM_TINY = {**AMUSED_TINY, "latent_channels": 3, "vq_embed_dim": 3, "mid_block_add_attention": True,
            "lookup_from_codebook": False}
AMUSED_NORM = {"image_mean": (0.0, 0.0, 0.0), "image_std": (1.0, 1.0, 1.0)}
JANUS_TINY = {"embed_dim": 4, "num_embeddings": 64, "latent_channels": 32, "base_channels": 32,
              "channel_multiplier": [1, 2], "num_res_blocks": 1, "num_patches": 8}
NEW = ("llamagen-vq8", "llamagen-vq16-t2i", "amused-vq-256", "amused-vq-512", "ldm-vq-f4-celebahq")


def _images(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1))


def _diffusers(kind: str, seed: int = 0) -> DiffusersVQTokenizer:
    if kind == "amused":
        return DiffusersVQTokenizer(AMUSED_TINY, image_size=SIDE, seed=seed, **AMUSED_NORM)
    return DiffusersVQTokenizer(LDM_TINY, image_size=SIDE, seed=seed)


# -- parity with diffusers ---------------------------------------------------------------------------------------


@needs_diffusers
@pytest.mark.parametrize("kind", ["amused", "ldm"])
def test_diffusers_encode_and_decode_equal_the_librarys_own_path(kind):
    tok, x = _diffusers(kind), _images()
    pixels = tok.to_pixels(x)
    ids = tok.encode(x)
    assert ids.shape == (2, GRID, GRID) and ids.dtype == torch.long
    with torch.no_grad():
        latents = tok.model.encode(pixels).latents
        # aMUSEd's img2img pipeline: vqvae.quantize(latents)[2][2] are the ids
        library_ids = tok.model.quantize(latents)[2][2].view(2, GRID, GRID)
        if kind == "amused":  # AmusedPipeline: decode(ids, force_not_quantize=True, shape=(B, h, w, C))
            theirs = tok.model.decode(library_ids.reshape(-1), force_not_quantize=True,
                                      shape=(2, GRID, GRID, AMUSED_TINY["latent_channels"])).sample
        else:  # LDMPipeline: decode(latents) quantises inside
            theirs = tok.model.decode(latents).sample
    assert torch.equal(ids, library_ids)
    ours = tok.pixels_from_ids(ids)
    difference = (ours - theirs).abs().max().item()
    assert torch.allclose(ours, theirs, atol=1e-5), f"max abs difference {difference}"
    images = tok.decode(ids)
    assert images.shape == (2, 3, SIDE, SIDE) and 0 <= images.min() and images.max() <= 1
    expected = theirs if kind == "amused" else theirs / 2 + 0.5  # aMUSEd decodes to [0, 1], LDM to [-1, 1]
    assert torch.allclose(images, expected.clamp(0, 1), atol=1e-5)


@needs_diffusers
def test_diffusers_ids_are_the_euclidean_nearest_codes():
    tok, x = _diffusers("ldm"), _images()
    with torch.no_grad():
        z = tok.model.encode(tok.to_pixels(x)).latents.permute(0, 2, 3, 1)  # [B, h, w, D]
    distance = (z.unsqueeze(-2) - tok.codebook).pow(2).sum(-1)  # [B, h, w, K]
    assert torch.equal(tok.encode(x), distance.argmin(-1))


@needs_diffusers
def test_normalisation_equals_the_pipelines_image_processors():
    from diffusers.image_processor import VaeImageProcessor

    x = _images()
    amused = VaeImageProcessor(do_normalize=False).preprocess(x)  # AmusedPipeline's processor
    ldm = VaeImageProcessor(do_normalize=True).preprocess(x)  # the [-1, 1] convention of LDMPipeline
    assert torch.allclose(_diffusers("amused").to_pixels(x), amused, atol=1e-6)
    assert torch.allclose(_diffusers("ldm").to_pixels(x), ldm, atol=1e-6)


@needs_diffusers
@pytest.mark.parametrize("kind", ["amused", "ldm"])
def test_diffusers_round_trip_through_save_pretrained_is_exact(kind, tmp_path):
    tok, x = _diffusers(kind), _images()
    loaded = zoo.load(tok.save_pretrained(tmp_path / kind))
    assert type(loaded) is DiffusersVQTokenizer and loaded.config == tok.config
    ours, theirs = tok.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert torch.equal(loaded.encode(x), tok.encode(x))


@needs_diffusers
def test_diffusers_config_typos_and_mismatched_levels_are_refused():
    with pytest.raises(ZooError, match="num_embeddings"):  # diffusers would only warn and build its default
        DiffusersVQTokenizer({**AMUSED_TINY, "num_embeddings": 64})
    with pytest.raises(ZooError, match="one down_block_types entry per"):
        DiffusersVQTokenizer({**AMUSED_TINY, "down_block_types": ["DownEncoderBlock2D"]})
    with pytest.raises(ZooError, match="multiple of the downsampling factor 2"):
        DiffusersVQTokenizer(AMUSED_TINY, image_size=15)


@needs_diffusers
def test_vqvae_subfolder_file_and_whole_pipeline_layouts_load(tmp_path):
    from safetensors.torch import save_file

    source, target = _diffusers("amused", seed=1), _diffusers("amused", seed=2)
    bare = source.model.state_dict()
    save_file(bare, str(tmp_path / "diffusion_pytorch_model.safetensors"))  # vqvae/diffusion_pytorch_model.*
    target.load_weights(tmp_path / "diffusion_pytorch_model.safetensors")
    assert torch.equal(target.encode(_images()), source.encode(_images()))
    whole = {f"vqvae.{k}": v for k, v in bare.items()} | {"transformer.x.weight": torch.zeros(2)}
    save_file(whole, str(tmp_path / "pipeline.safetensors"))
    other = _diffusers("amused", seed=3)
    other.load_weights(tmp_path / "pipeline.safetensors")
    assert torch.equal(other.encode(_images()), source.encode(_images()))


# -- token perturbation on every new codebook ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["amused", "ldm", "janus"])
def test_perturbation_moves_each_token_to_its_nearest_code_and_decodes(kind):
    if kind != "janus" and not HAS_DIFFUSERS:
        pytest.skip("diffusers is not installed")
    tok = JanusVQTokenizer(JANUS_TINY, image_size=SIDE) if kind == "janus" else _diffusers(kind)
    if kind != "janus":
        # diffusers initialises codes in U(-1/K, 1/K): squared distances ~1e-4 that zoo.quantize.perturb's
        # 5-decimal tie snapping flattens into ties (reported to the lead); codes of unit scale, as trained ones
        tok.model.quantize.embedding.weight.copy_(torch.randn(64, tok.codebook.shape[1],
                                                              generator=torch.Generator().manual_seed(2)))
    ids = tok.encode(_images())
    codebook = tok.codebook.detach()
    moved = perturb_token_ids(ids, codebook, alpha=1.0, delta=1, generator=torch.Generator().manual_seed(0))
    wide = codebook.double()
    distance = (wide[:, None] - wide[None]).pow(2).sum(-1)  # squared Euclidean, exactly enough to rank
    distance.fill_diagonal_(float("inf"))
    assert torch.equal(moved, distance.argmin(1)[ids])  # delta = 1: the single nearest other code
    assert not torch.equal(moved, ids)
    images = tok.decode(moved)
    assert images.shape == (2, 3, SIDE, SIDE) and torch.isfinite(images).all()
    assert not torch.equal(images, tok.decode(ids))


# -- the authors' pickles: weights-only reads and the convert-once path --------------------------------------------


class NotAContainer:
    """A class no weights-only read admits (a checkpoint holding it needs a full unpickle)."""

    def __init__(self):
        self.value = 1


def _llamagen_training_checkpoint(tok) -> dict:
    """LlamaGen's train_vq.py layout: the VQModel state under "model" (its names), the arguments as a Namespace."""
    from tests.image.test_published import _llamagen_state

    return {"model": _llamagen_state(tok), "steps": 10, "args": argparse.Namespace(vq_model="VQ-8", lr=1e-4)}


def test_weights_only_read_admits_llamagens_namespace_and_refuses_other_objects(tmp_path):
    tok = JanusVQTokenizer(JANUS_TINY, image_size=SIDE, seed=4)
    torch.save(_llamagen_training_checkpoint(tok), tmp_path / "vq_ds8_c2i.pt")
    state = read_checkpoint(tmp_path / "vq_ds8_c2i.pt")
    assert "encoder.conv_blocks.0.res.0.norm1.weight" in state and "args" not in state
    torch.save({"model": {"w": torch.zeros(1)}, "callback": NotAContainer()}, tmp_path / "full.ckpt")
    with pytest.raises(ZooError, match="full unpickle"):
        read_checkpoint(tmp_path / "full.ckpt")


def _place(name: str, payload: dict, monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    weights = zoo.registry.get(name).weights
    local = cached_path(weights["path"], weights.get("revision"))
    local.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, local)
    return local


def test_a_pinned_llamagen_pickle_converts_once_and_later_loads_read_safetensors_only(monkeypatch, tmp_path):
    source = JanusVQTokenizer(JANUS_TINY, image_size=SIDE, seed=5)
    local = _place("llamagen-vq16-t2i", _llamagen_training_checkpoint(source), monkeypatch, tmp_path)
    tiny = {"vq_config": JANUS_TINY, "image_size": SIDE}
    first = zoo.load("llamagen-vq16-t2i", pretrained=True, **tiny)
    assert torch.equal(first.encode(_images()), source.encode(_images()))
    assert torch.equal(first.decode(first.encode(_images())), source.decode(source.encode(_images())))
    converted = local.with_name(local.name + CONVERTED_SUFFIX)
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    assert converted_source_sha256(converted) == digest
    assert recorded_sha256_path(local).read_text().strip() == digest  # the first-use pin the hub recorded

    def no_unpickling(*args, **kwargs):
        raise AssertionError("a later load unpickled the source again")

    monkeypatch.setattr(torch, "load", no_unpickling)  # nothing may read the pickle again
    again = zoo.load("llamagen-vq16-t2i", pretrained=True, **tiny)
    assert torch.equal(again.encode(_images()), source.encode(_images()))


def test_a_changed_download_fails_its_first_use_pin(monkeypatch, tmp_path):
    source = JanusVQTokenizer(JANUS_TINY, image_size=SIDE, seed=6)
    local = _place("llamagen-vq16-t2i", _llamagen_training_checkpoint(source), monkeypatch, tmp_path)
    tiny = {"vq_config": JANUS_TINY, "image_size": SIDE}
    zoo.load("llamagen-vq16-t2i", pretrained=True, **tiny)
    torch.save(_llamagen_training_checkpoint(JanusVQTokenizer(JANUS_TINY, image_size=SIDE, seed=7)), local)
    with pytest.raises(ZooError, match="sha256"):
        zoo.load("llamagen-vq16-t2i", pretrained=True, **tiny)


@needs_diffusers
def test_the_compvis_vqvae_pickle_in_diffusers_names_converts_and_matches(monkeypatch, tmp_path):
    source = _diffusers("ldm", seed=8)
    _place("ldm-vq-f4-celebahq", dict(source.model.state_dict()), monkeypatch, tmp_path)
    loaded = zoo.load("ldm-vq-f4-celebahq", pretrained=True, vq_config=LDM_TINY, image_size=SIDE)
    ids = loaded.encode(_images())
    assert torch.equal(ids, source.encode(_images()))
    difference = (loaded.decode(ids) - source.decode(ids)).abs().max().item()
    assert difference == 0.0, f"max abs difference {difference}"


# -- the entries ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW)
def test_new_entries_build_the_published_architecture(name):
    if "llamagen" not in name and not HAS_DIFFUSERS:
        pytest.skip("diffusers is not installed")
    entry = zoo.registry.get(name)
    with torch.device("meta"):
        tok = zoo.load(name)
    assert sum(p.numel() for p in tok.parameters()) == entry.card["parameters"]
    expected = {"llamagen-vq8": (16384, 32 * 32, 8), "llamagen-vq16-t2i": (16384, 32 * 32, 16),
                "amused-vq-256": (8192, 16 * 16, 16), "amused-vq-512": (8192, 32 * 32, 16),
                "ldm-vq-f4-celebahq": (8192, 64 * 64, 4)}[name]
    assert (tok.vocab_size, tok.tokens_per_image, tok.downsample) == expected
    assert entry.inputs["size"] == tok.image_size and entry.inputs["multiple_of"] == tok.downsample
    assert entry.weights["path"].startswith("hf://") and entry.card["license"]
    pins = {"llamagen-vq8": "sha256 (published)", "llamagen-vq16-t2i": "sha256 on first download",
            "amused-vq-256": "revision + sha256 on first download",
            "amused-vq-512": "revision + sha256 on first download",
            "ldm-vq-f4-celebahq": "sha256 on first download"}
    w = entry.weights
    assert pin_of(w["path"], w.get("sha256"), w.get("revision"))["kind"] == pins[name]


@pytest.mark.parametrize("name", NEW)
def test_new_entries_offline_name_the_cache_path(name, monkeypatch, tmp_path):
    if "llamagen" not in name and not HAS_DIFFUSERS:
        pytest.skip("diffusers is not installed")
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    weights = zoo.registry.get(name).weights
    tiny = {"vq_config": JANUS_TINY} if "llamagen" in name else {"vq_config": LDM_TINY}
    with pytest.raises(ZooError) as caught:
        zoo.load(name, pretrained=True, image_size=SIDE, **tiny)
    assert str(cached_path(weights["path"], weights.get("revision"))) in str(caught.value)


def test_the_convert_command_writes_a_loadable_folder_and_reports_refusals(tmp_path, capsys):
    from zoo.image.published.convert import main

    source = JanusVQTokenizer(JANUS_TINY, image_size=SIDE, seed=9)
    torch.save(_llamagen_training_checkpoint(source), tmp_path / "vq_ds8_c2i.pt")
    tiny = ["--set", f"vq_config={json.dumps(JANUS_TINY)}", "--set", f"image_size={SIDE}"]
    assert main([str(tmp_path / "vq_ds8_c2i.pt"), "--to", str(tmp_path / "out"), "llamagen-vq8", *tiny]) == 0
    loaded = zoo.load(tmp_path / "out")
    assert torch.equal(loaded.encode(_images()), source.encode(_images()))
    assert main([str(tmp_path / "vq_ds8_c2i.pt"), "--to", str(tmp_path / "bad"), "llamagen-vq8", "--set", "x"]) == 2
    assert "expected KEY=JSON" in capsys.readouterr().err


def test_an_empty_batch_gives_empty_ids_for_every_published_family():
    import torch

    import zoo

    for name in ("llamagen-vq16", "emu3-vq", "amused-vq-256"):
        tok = zoo.load(name)
        size = (tok.inputs or {}).get("size", 256) if isinstance(getattr(tok, "inputs", None), dict) else 256
        ids = tok.encode(torch.zeros(0, 3, size, size))
        assert ids.shape[0] == 0 and ids.dtype == torch.long, name
