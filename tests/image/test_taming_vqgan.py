"""taming-transformers' VQGAN checkpoints (issue 17): the authors' ``.ckpt`` layout -> diffusers' ``VQModel``.

A tiny random state dict in taming's names (built here from taming's ``Encoder`` / ``Decoder`` definitions, with
the ``loss.*`` discriminator keys a training checkpoint carries) is converted and loaded into
``DiffusersVQTokenizer``; its ids and reconstructions are compared with a reference forward written here from
taming's modules (``taming/modules/diffusionmodules/model.py``, ``VectorQuantizer2``) on the raw taming tensors.
Also: Lightning-like ``.ckpt`` files read with ``torch.load(weights_only=True)``, refusals, the config map, and
the two registry entries."""

from __future__ import annotations

import hashlib
import json
import sys
import types

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.errors import ZooError
from zoo.hub import cached_path, pin_of
from zoo.image.published.base import CONVERTED_SUFFIX, converted_source_sha256
from zoo.image.published.convert import read_checkpoint
from zoo.image.published.taming import is_taming_layout, taming_to_diffusers, vq_config_from_taming

diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed (pip install 'zoo[hf]')")

from zoo.image.published.diffusers_vq import DiffusersVQTokenizer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SIDE = 16
# Three levels (16, 8, 4 px) so the decoder's level order matters: attention at the 4px level only, as the real
# models attend at their lowest (16px) level; channel changes give the 1x1 nin_shortcut convolutions.
TINY = {"double_z": False, "z_channels": 8, "resolution": SIDE, "in_channels": 3, "out_ch": 3, "ch": 32,
        "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [4], "dropout": 0.0}
N_EMBED, EMBED_DIM = 64, 4
GRID = SIDE // 4
# taming's configs/imagenet_vqgan.yaml (the f16-1024 model); the f16-16384 model differs in n_embed only
IMAGENET_DDCONFIG = {"double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3,
                     "ch": 128, "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16],
                     "dropout": 0.0}
ENTRIES = {"taming-vqgan-f16-1024": 1024, "taming-vqgan-f16-16384": 16384}


# -- a taming-layout state dict and a reference forward written from taming's modules ---------------------------


def _taming_state(cfg: dict = TINY, n_embed: int = N_EMBED, embed_dim: int = EMBED_DIM, seed: int = 0) -> dict:
    """Random tensors under taming VQModel's names and shapes (its Encoder / Decoder __init__, level by level)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}

    def conv(name, c_in, c_out, k=3):
        state[f"{name}.weight"] = torch.randn(c_out, c_in, k, k, generator=generator) / (c_in * k * k) ** 0.5
        state[f"{name}.bias"] = 0.1 * torch.randn(c_out, generator=generator)

    def norm(name, c):
        state[f"{name}.weight"] = 1 + 0.1 * torch.randn(c, generator=generator)
        state[f"{name}.bias"] = 0.1 * torch.randn(c, generator=generator)

    def resnet(name, c_in, c_out):
        norm(f"{name}.norm1", c_in), conv(f"{name}.conv1", c_in, c_out)
        norm(f"{name}.norm2", c_out), conv(f"{name}.conv2", c_out, c_out)
        if c_in != c_out:
            conv(f"{name}.nin_shortcut", c_in, c_out, k=1)

    def attention(name, c):
        norm(f"{name}.norm", c)
        for part in ("q", "k", "v", "proj_out"):
            conv(f"{name}.{part}", c, c, k=1)

    ch, mult, blocks, levels = cfg["ch"], cfg["ch_mult"], cfg["num_res_blocks"], len(cfg["ch_mult"])
    conv("encoder.conv_in", cfg["in_channels"], ch)
    resolution, c_in = cfg["resolution"], ch
    for level in range(levels):
        for block in range(blocks):
            resnet(f"encoder.down.{level}.block.{block}", c_in, ch * mult[level])
            c_in = ch * mult[level]
            if resolution in cfg["attn_resolutions"]:
                attention(f"encoder.down.{level}.attn.{block}", c_in)
        if level != levels - 1:
            conv(f"encoder.down.{level}.downsample.conv", c_in, c_in)
            resolution //= 2
    for part in ("encoder", "decoder"):
        top = ch * mult[-1]
        resnet(f"{part}.mid.block_1", top, top), attention(f"{part}.mid.attn_1", top)
        resnet(f"{part}.mid.block_2", top, top)
    norm("encoder.norm_out", c_in), conv("encoder.conv_out", c_in, cfg["z_channels"])
    conv("quant_conv", cfg["z_channels"], embed_dim, k=1)
    state["quantize.embedding.weight"] = torch.randn(n_embed, embed_dim, generator=generator)
    conv("post_quant_conv", embed_dim, cfg["z_channels"], k=1)
    conv("decoder.conv_in", cfg["z_channels"], ch * mult[-1])
    c_in = ch * mult[-1]
    for level in reversed(range(levels)):  # taming builds the lowest resolution first and stores it as up[levels-1]
        for block in range(blocks + 1):
            resnet(f"decoder.up.{level}.block.{block}", c_in, ch * mult[level])
            c_in = ch * mult[level]
            if resolution in cfg["attn_resolutions"]:
                attention(f"decoder.up.{level}.attn.{block}", c_in)
        if level != 0:
            conv(f"decoder.up.{level}.upsample.conv", c_in, c_in)
            resolution *= 2
    norm("decoder.norm_out", c_in), conv("decoder.conv_out", c_in, cfg["out_ch"])
    # a training checkpoint's loss module (LPIPS and the patch discriminator): not part of the tokenizer
    state["loss.discriminator.main.0.weight"] = torch.randn(8, 3, 4, 4, generator=generator)
    state["loss.perceptual_loss.scaling_layer.shift"] = torch.randn(1, 3, 1, 1, generator=generator)
    return state


def _ref_conv(x, s, name, stride=1):
    weight = s[f"{name}.weight"]
    return F.conv2d(x, weight, s[f"{name}.bias"], stride=stride, padding=0 if stride == 2 else weight.shape[-1] // 2)


def _ref_norm(x, s, name):
    return F.group_norm(x, 32, s[f"{name}.weight"], s[f"{name}.bias"], eps=1e-6)  # taming's Normalize


def _ref_resnet(x, s, name):
    h = _ref_conv(F.silu(_ref_norm(x, s, f"{name}.norm1")), s, f"{name}.conv1")
    h = _ref_conv(F.silu(_ref_norm(h, s, f"{name}.norm2")), s, f"{name}.conv2")
    shortcut = _ref_conv(x, s, f"{name}.nin_shortcut") if f"{name}.nin_shortcut.weight" in s else x
    return shortcut + h


def _ref_attention(x, s, name):
    """taming's AttnBlock: single-head softmax(q^T k / sqrt(C)) over positions, 1x1 convolutions throughout."""
    b, c, h, w = x.shape
    normed = _ref_norm(x, s, f"{name}.norm")
    q, k, v = (_ref_conv(normed, s, f"{name}.{part}").reshape(b, c, h * w) for part in "qkv")
    weights = torch.softmax(torch.einsum("bci,bcj->bij", q, k) * c ** -0.5, dim=2)  # [b, query, key]
    attended = torch.einsum("bij,bcj->bci", weights, v).reshape(b, c, h, w)
    return x + _ref_conv(attended, s, f"{name}.proj_out")


def _ref_encode(x, s, cfg=TINY):
    """taming VQModel.encode up to the nearest code: pixels in [-1, 1] -> ids [B, h, w]."""
    levels = len(cfg["ch_mult"])
    h = _ref_conv(x, s, "encoder.conv_in")
    for level in range(levels):
        for block in range(cfg["num_res_blocks"]):
            h = _ref_resnet(h, s, f"encoder.down.{level}.block.{block}")
            if f"encoder.down.{level}.attn.{block}.q.weight" in s:
                h = _ref_attention(h, s, f"encoder.down.{level}.attn.{block}")
        if level != levels - 1:  # taming's Downsample: pad right and bottom by one, 3x3 stride-2 convolution
            h = _ref_conv(F.pad(h, (0, 1, 0, 1)), s, f"encoder.down.{level}.downsample.conv", stride=2)
    h = _ref_resnet(h, s, "encoder.mid.block_1")
    h = _ref_resnet(_ref_attention(h, s, "encoder.mid.attn_1"), s, "encoder.mid.block_2")
    z = _ref_conv(_ref_conv(F.silu(_ref_norm(h, s, "encoder.norm_out")), s, "encoder.conv_out"), s, "quant_conv")
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    codes = s["quantize.embedding.weight"]
    # VectorQuantizer2: d = |z|^2 + |e|^2 - 2 z.e, argmin
    distance = flat.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * flat @ codes.T
    return distance.argmin(1).view(z.shape[0], z.shape[2], z.shape[3])


def _ref_decode(ids, s, cfg=TINY):
    """taming VQModel.decode_code: ids -> codes -> post_quant_conv -> decoder -> pixels in about [-1, 1]."""
    levels = len(cfg["ch_mult"])
    h = _ref_conv(s["quantize.embedding.weight"][ids].permute(0, 3, 1, 2), s, "post_quant_conv")
    h = _ref_resnet(_ref_conv(h, s, "decoder.conv_in"), s, "decoder.mid.block_1")
    h = _ref_resnet(_ref_attention(h, s, "decoder.mid.attn_1"), s, "decoder.mid.block_2")
    for level in reversed(range(levels)):
        for block in range(cfg["num_res_blocks"] + 1):
            h = _ref_resnet(h, s, f"decoder.up.{level}.block.{block}")
            if f"decoder.up.{level}.attn.{block}.q.weight" in s:
                h = _ref_attention(h, s, f"decoder.up.{level}.attn.{block}")
        if level != 0:  # taming's Upsample: nearest x2, 3x3 convolution
            h = _ref_conv(F.interpolate(h, scale_factor=2.0, mode="nearest"), s, f"decoder.up.{level}.upsample.conv")
    return _ref_conv(F.silu(_ref_norm(h, s, "decoder.norm_out")), s, "decoder.conv_out")


def _tokenizer(seed: int = 1) -> DiffusersVQTokenizer:
    return DiffusersVQTokenizer(vq_config_from_taming(TINY, N_EMBED, EMBED_DIM), image_size=SIDE, seed=seed)


def _images(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(3))


# -- the key map ---------------------------------------------------------------------------------------------------


def test_converted_taming_weights_reproduce_the_reference_forward():
    state = _taming_state()
    tok = _tokenizer()
    tok.load_converted(DiffusersVQTokenizer.convert(state), "taming fixture")
    x = _images()
    ids = tok.encode(x)
    with torch.no_grad():
        reference_ids = _ref_encode(2 * x - 1, state)  # taming's data: x / 127.5 - 1
        reference = _ref_decode(reference_ids, state)
    assert ids.shape == (2, GRID, GRID) and torch.equal(ids, reference_ids)
    ours = tok.pixels_from_ids(ids)
    difference = (ours - reference).abs().max().item()
    assert difference < 1e-5, f"max abs difference {difference}"  # measured 3.9e-06 (docs/image-published.md)
    assert torch.allclose(tok.decode(ids), (reference / 2 + 0.5).clamp(0, 1), atol=1e-5)
    assert torch.equal(tok.codebook, state["quantize.embedding.weight"])


def test_the_map_reverses_decoder_levels_reshapes_attention_and_drops_the_loss():
    state = _taming_state()
    converted = DiffusersVQTokenizer.convert(state)
    assert not any(".loss." in name or name.startswith("model.loss") for name in converted)
    # taming's up.0 is the full-resolution level (run last): diffusers' up_blocks.2 of 3
    assert torch.equal(converted["model.decoder.up_blocks.2.resnets.0.conv1.weight"],
                       state["decoder.up.0.block.0.conv1.weight"])
    assert torch.equal(converted["model.decoder.up_blocks.0.upsamplers.0.conv.weight"],
                       state["decoder.up.2.upsample.conv.weight"])
    assert torch.equal(converted["model.decoder.up_blocks.0.attentions.1.to_out.0.weight"],
                       state["decoder.up.2.attn.1.proj_out.weight"][:, :, 0, 0])
    assert torch.equal(converted["model.encoder.mid_block.attentions.0.group_norm.bias"],
                       state["encoder.mid.attn_1.norm.bias"])
    assert torch.equal(converted["model.encoder.down_blocks.1.resnets.0.conv_shortcut.weight"],
                       state["encoder.down.1.block.0.nin_shortcut.weight"])
    # every converted name and shape is the diffusers model's own: nothing left over, nothing missing
    own = {name: tuple(t.shape) for name, t in _tokenizer().state_dict().items()}
    assert {name: tuple(t.shape) for name, t in converted.items()} == own
    assert is_taming_layout(state) and not is_taming_layout(dict(_tokenizer().model.state_dict()))


def test_diffusers_layout_files_are_left_as_they_are():
    source = _tokenizer(seed=4)
    bare = dict(source.model.state_dict())
    assert DiffusersVQTokenizer.convert(bare) == {f"model.{name}": t for name, t in bare.items()}


def test_a_taming_state_with_a_gap_in_its_levels_is_refused():
    state = {name.replace("decoder.up.2.", "decoder.up.3."): t for name, t in _taming_state().items()}
    with pytest.raises(ZooError, match=r"decoder.up levels \[0, 1, 3\]"):
        taming_to_diffusers(state)


def test_taming_configs_map_to_the_entries_vq_config():
    for name, n_embed in ENTRIES.items():
        assert zoo.registry.get(name).config["vq_config"] == vq_config_from_taming(IMAGENET_DDCONFIG, n_embed, 256)
    with pytest.raises(ZooError, match="double_z"):
        vq_config_from_taming({**IMAGENET_DDCONFIG, "double_z": True}, 1024, 256)


# -- Lightning .ckpt files: weights-only reads --------------------------------------------------------------------


class Opaque:
    """An object no weights-only read admits."""

    def __init__(self):
        self.value = 1


def _lightning_checkpoint(state: dict, monkeypatch, callback_key: str = "ModelCheckpoint") -> dict:
    """What PyTorch Lightning 1.0 (taming's pin) saves: the model's state_dict beside counters, optimizer state and
    ``callbacks`` keyed by the callback's class (pickled by reference; a stand-in module provides the name)."""
    module = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")
    callback = type(callback_key, (), {"__module__": module.__name__})
    setattr(module, callback_key, callback)
    for name in ("pytorch_lightning", "pytorch_lightning.callbacks"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return {"epoch": 3, "global_step": 120000, "pytorch-lightning_version": "1.0.8",
            "callbacks": {callback: {"best_model_score": torch.tensor(0.1), "best_model_path": "last.ckpt"}},
            "optimizer_states": [{"state": {0: {"step": 5, "exp_avg": torch.zeros(2)}},
                                  "param_groups": [{"lr": 4.5e-6, "betas": (0.5, 0.9), "params": [0]}]}],
            "lr_schedulers": [], "state_dict": state}


def test_a_lightning_checkpoint_reads_with_weights_only_and_an_arbitrary_object_is_refused(monkeypatch, tmp_path):
    state = _taming_state()
    torch.save(_lightning_checkpoint(state, monkeypatch), tmp_path / "last.ckpt")
    monkeypatch.undo()  # reading must not need the stand-in module (nor Lightning)
    read = read_checkpoint(tmp_path / "last.ckpt")
    assert read.keys() == state.keys() and all(torch.equal(read[k], state[k]) for k in state)
    # a callback class not on the list is an unknown global: refused with the reason, never imported
    torch.save(_lightning_checkpoint(state, monkeypatch, callback_key="ImageLogger"), tmp_path / "other.ckpt")
    monkeypatch.undo()
    with pytest.raises(ZooError, match="refused: reading it needs a full unpickle"):
        read_checkpoint(tmp_path / "other.ckpt")
    torch.save({"state_dict": state, "hparams": Opaque()}, tmp_path / "object.ckpt")
    with pytest.raises(ZooError, match="weights_only=True only"):
        read_checkpoint(tmp_path / "object.ckpt")


def test_the_convert_command_turns_a_taming_ckpt_into_a_folder(monkeypatch, tmp_path):
    from zoo.image.published.convert import main

    state = _taming_state(seed=5)
    torch.save(_lightning_checkpoint(state, monkeypatch), tmp_path / "last.ckpt")
    monkeypatch.undo()
    tiny = ["--set", f"vq_config={json.dumps(vq_config_from_taming(TINY, N_EMBED, EMBED_DIM))}",
            "--set", f"image_size={SIDE}"]
    assert main([str(tmp_path / "last.ckpt"), "--to", str(tmp_path / "out"), "taming-vqgan-f16-1024", *tiny]) == 0
    loaded = zoo.load(tmp_path / "out")
    x = _images()
    with torch.no_grad():
        reference_ids = _ref_encode(2 * x - 1, state)
    assert torch.equal(loaded.encode(x), reference_ids)
    record = json.loads((tmp_path / "out" / "config.json").read_text())
    assert record["metadata"]["source_sha256"] == hashlib.sha256((tmp_path / "last.ckpt").read_bytes()).hexdigest()


# -- the entries ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ENTRIES)
def test_entries_build_the_published_architecture(name):
    entry = zoo.registry.get(name)
    with torch.device("meta"):
        tok = zoo.load(name)
    assert sum(p.numel() for p in tok.parameters()) == entry.card["parameters"]
    expected = (ENTRIES[name], 16 * 16, 16, 256)  # codes, tokens at 256px, f16, code dimension
    assert (tok.vocab_size, tok.tokens_per_image, tok.downsample, tok.codebook.shape[1]) == expected
    assert entry.inputs["size"] == tok.image_size == 256 and entry.inputs["multiple_of"] == tok.downsample
    assert entry.weights["path"].startswith("https://heibox.uni-heidelberg.de/d/")
    assert pin_of(entry.weights["path"])["kind"] == "sha256 on first download"


@pytest.mark.parametrize("name", ENTRIES)
def test_a_share_link_is_cached_under_the_file_name_it_names(name):
    # heibox (Seafile) links end at a folder and name the file in the query: the cache keeps its .ckpt suffix,
    # which is what sends the download through the weights-only conversion
    assert cached_path(zoo.registry.get(name).weights["path"]).name == "last.ckpt"


def test_a_cached_taming_download_converts_once_and_matches_the_reference(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    state = _taming_state(seed=6)
    local = cached_path(zoo.registry.get("taming-vqgan-f16-16384").weights["path"])
    local.parent.mkdir(parents=True)
    torch.save(_lightning_checkpoint(state, monkeypatch), local)
    monkeypatch.undo()
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    tiny = {"vq_config": vq_config_from_taming(TINY, N_EMBED, EMBED_DIM), "image_size": SIDE}
    tok = zoo.load("taming-vqgan-f16-16384", pretrained=True, **tiny)
    x = _images()
    with torch.no_grad():
        reference_ids = _ref_encode(2 * x - 1, state)
        reference = _ref_decode(reference_ids, state)
    assert torch.equal(tok.encode(x), reference_ids)
    assert (tok.pixels_from_ids(reference_ids) - reference).abs().max().item() < 1e-5
    converted = local.with_name(local.name + CONVERTED_SUFFIX)
    assert converted_source_sha256(converted) == hashlib.sha256(local.read_bytes()).hexdigest()


def test_transformers_chameleon_encoder_reads_the_same_taming_names_and_gives_the_same_ids():
    """transformers' ChameleonVQVAE keeps taming's names (Meta's vqgan.ckpt is a taming-layout Lightning file):
    the same tensors loaded into it, and through the taming map into diffusers' VQModel, give the same ids."""
    from transformers.models.chameleon.configuration_chameleon import ChameleonVQVAEConfig
    from transformers.models.chameleon.modeling_chameleon import ChameleonVQVAE

    config = ChameleonVQVAEConfig(embed_dim=EMBED_DIM, num_embeddings=N_EMBED, latent_channels=TINY["z_channels"],
                                  base_channels=TINY["ch"], channel_multiplier=TINY["ch_mult"],
                                  num_res_blocks=TINY["num_res_blocks"], resolution=SIDE,
                                  attn_resolutions=TINY["attn_resolutions"])
    chameleon = ChameleonVQVAE(config).eval()
    state = _taming_state(seed=7)
    chameleon.load_state_dict({name: state[name] for name in chameleon.state_dict()}, strict=True)
    tok = _tokenizer()
    tok.load_converted(DiffusersVQTokenizer.convert(state), "taming fixture")
    x = _images()
    with torch.no_grad():
        theirs = chameleon.encode(2 * x - 1).image_tokens.view(2, GRID, GRID)
    assert torch.equal(tok.encode(x), theirs)


def test_a_chameleon_vqgan_ckpt_converts_into_an_encoder_and_decoder(tmp_path):
    """Meta's tokenizer/vqgan.ckpt: a Lightning dict (state_dict beside primitive fields) in taming's names, no
    attention outside the mid blocks (vqgan.yaml: attn_resolutions []). Read weights-only, mapped into diffusers'
    VQModel, it encodes as transformers' ChameleonVQVAE does and decodes as taming's decoder (which transformers
    lacks)."""
    from transformers.models.chameleon.configuration_chameleon import ChameleonVQVAEConfig
    from transformers.models.chameleon.modeling_chameleon import ChameleonVQVAE

    from zoo.image.published.convert import convert_checkpoint

    ddconfig = {**TINY, "attn_resolutions": []}
    state = _taming_state(ddconfig, seed=8)
    assert not any(".attn." in name for name in state)  # only the mid blocks attend
    torch.save({"state_dict": state, "epoch": 0, "global_step": 190000}, tmp_path / "vqgan.ckpt")
    tok = DiffusersVQTokenizer(vq_config_from_taming(ddconfig, N_EMBED, EMBED_DIM), image_size=SIDE)
    folder = convert_checkpoint(tmp_path / "vqgan.ckpt", tmp_path / "chameleon-vqgan", tok)
    loaded = zoo.load(folder)
    config = ChameleonVQVAEConfig(embed_dim=EMBED_DIM, num_embeddings=N_EMBED, latent_channels=TINY["z_channels"],
                                  base_channels=TINY["ch"], channel_multiplier=TINY["ch_mult"],
                                  num_res_blocks=TINY["num_res_blocks"], resolution=SIDE, attn_resolutions=[])
    chameleon = ChameleonVQVAE(config).eval()
    chameleon.load_state_dict({name: state[name] for name in chameleon.state_dict()}, strict=True)
    x = _images()
    with torch.no_grad():
        theirs = chameleon.encode(2 * x - 1).image_tokens.view(2, GRID, GRID)  # Meta's input: 2x - 1
        reference = _ref_decode(theirs, state, ddconfig)
    ids = loaded.encode(x)
    assert torch.equal(ids, theirs)
    assert (loaded.pixels_from_ids(ids) - reference).abs().max().item() < 1e-5
