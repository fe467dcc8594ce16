"""VAR's multi-scale VQVAE (zoo/image/var/, issue 17): a port of the authors' code, tested offline.

A fixture state dict in the authors' layout (names and shapes of FoundationVision/VAR's ``VQVAE``, random values)
converts, loads strictly and gives the ids and images of a reference computation written here from the paper's
algorithm and the authors' module structure (plain ``F.conv2d`` / ``F.group_norm`` over their tensor names). Also:
the ids layout, the save_pretrained / zoo.load round trip, the pickle convert paths, token perturbation, and the
registry entries at full size (meta device)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.errors import ZooError
from zoo.hub import cached_path, pin_of
from zoo.image.published.base import CONVERTED_SUFFIX, converted_source_sha256
from zoo.image.var.convert import rename
from zoo.image.var.model import VARTokenizer
from zoo.image.var.quantizer import phi_schedule
from zoo.quantize.perturb import perturb_token_ids

pytestmark = pytest.mark.usefixtures("one_thread")

# The authors' topology (ch_mult fixed at (1, 1, 2, 2, 4) in their VQVAE: f16), narrow: 64px -> a 4x4 latent grid.
AUTHORS_TINY = {"vocab_size": 64, "z_channels": 8, "ch": 32, "v_patch_nums": [1, 2, 3, 4]}
AUTHORS_SIDE = 64
# A smaller one for the contract tests: two levels (f2), 16px -> an 8x8 grid.
TINY = {**AUTHORS_TINY, "ch_mult": [1, 2], "num_res_blocks": 1, "v_patch_nums": [1, 2, 4, 8]}
SIDE, LENGTH = 16, 1 + 4 + 16 + 64


def _images(batch: int = 2, side: int = SIDE) -> torch.Tensor:
    return torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(1))


def _tiny(seed: int = 0, **vq) -> VARTokenizer:
    return VARTokenizer({**TINY, **vq}, image_size=SIDE, seed=seed)


# -- the authors' layout, and a reference computation over it ------------------------------------------------------


def _authors_shapes(vocab_size: int, z_channels: int, ch: int, v_patch_nums, ch_mult=(1, 1, 2, 2, 4),
                    num_res_blocks: int = 2, share_quant_resi: int = 4) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of VAR's ``VQVAE(...).state_dict()`` (models/vqvae.py, basic_vae.py, quant.py)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name, c_in, c_out, k):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (c_out, c_in, k, k), (c_out,)

    def norm(name, c):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (c,), (c,)

    def block(name, c_in, c_out):
        norm(f"{name}.norm1", c_in), conv(f"{name}.conv1", c_in, c_out, 3)
        norm(f"{name}.norm2", c_out), conv(f"{name}.conv2", c_out, c_out, 3)
        if c_in != c_out:
            conv(f"{name}.nin_shortcut", c_in, c_out, 1)

    def attn(name, c):
        norm(f"{name}.norm", c), conv(f"{name}.qkv", c, 3 * c, 1), conv(f"{name}.proj_out", c, c, 1)

    levels = len(ch_mult)
    conv("encoder.conv_in", 3, ch, 3)
    width = ch
    for i, mult in enumerate(ch_mult):
        for j in range(num_res_blocks):
            block(f"encoder.down.{i}.block.{j}", width, ch * mult)
            width = ch * mult
            if i == levels - 1:
                attn(f"encoder.down.{i}.attn.{j}", width)
        if i != levels - 1:
            conv(f"encoder.down.{i}.downsample.conv", width, width, 3)
    for part in ("encoder", "decoder"):
        top = ch * ch_mult[-1]
        if part == "decoder":
            conv("decoder.conv_in", z_channels, top, 3)
        block(f"{part}.mid.block_1", top, top), attn(f"{part}.mid.attn_1", top), block(f"{part}.mid.block_2", top, top)
    norm("encoder.norm_out", width), conv("encoder.conv_out", width, z_channels, 3)
    width = ch * ch_mult[-1]
    for i in reversed(range(levels)):
        for j in range(num_res_blocks + 1):
            block(f"decoder.up.{i}.block.{j}", width, ch * ch_mult[i])
            width = ch * ch_mult[i]
            if i == levels - 1:
                attn(f"decoder.up.{i}.attn.{j}", width)
        if i:
            conv(f"decoder.up.{i}.upsample.conv", width, width, 3)
    norm("decoder.norm_out", width), conv("decoder.conv_out", width, 3, 3)
    shapes["quantize.ema_vocab_hit_SV"] = (len(v_patch_nums), vocab_size)
    phis = {0: [f"quant_resi.{k}" for k in range(len(v_patch_nums))], 1: ["quant_resi.qresi"]}.get(
        share_quant_resi, [f"quant_resi.qresi_ls.{k}" for k in range(share_quant_resi)])
    for name in phis:
        conv(f"quantize.{name}", z_channels, z_channels, 3)
    shapes["quantize.embedding.weight"] = (vocab_size, z_channels)
    conv("quant_conv", z_channels, z_channels, 3), conv("post_quant_conv", z_channels, z_channels, 3)
    return shapes


def _authors_state(seed: int = 3, **arguments) -> dict[str, torch.Tensor]:
    """Random values under the authors' names: norms near 1, weights small enough to keep activations finite."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in _authors_shapes(**arguments).items():
        values = torch.randn(shape, generator=generator)
        if name.endswith("ema_vocab_hit_SV"):
            values = values.abs()
        elif ".norm" in name and name.endswith(".weight"):
            values = 1 + 0.1 * values
        elif name != "quantize.embedding.weight":
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            values = values / fan_in ** 0.5 * (1.0 if len(shape) > 1 else 0.1)
        state[name] = values
    return state


def _gn(s, name, x):
    return F.group_norm(x, 32, s[f"{name}.weight"], s[f"{name}.bias"], eps=1e-6)


def _conv(s, name, x, **kw):
    weight = s[f"{name}.weight"]
    return F.conv2d(x, weight, s[f"{name}.bias"], padding=kw.get("padding", weight.shape[-1] // 2),
                    stride=kw.get("stride", 1))


def _block(s, name, x):
    h = _conv(s, f"{name}.conv1", F.silu(_gn(s, f"{name}.norm1", x)))
    h = _conv(s, f"{name}.conv2", F.silu(_gn(s, f"{name}.norm2", h)))
    return (_conv(s, f"{name}.nin_shortcut", x) if f"{name}.nin_shortcut.weight" in s else x) + h


def _attn(s, name, x):
    b, c, height, width = x.shape
    q, k, v = _conv(s, f"{name}.qkv", _gn(s, f"{name}.norm", x)).reshape(b, 3, c, height * width).unbind(1)
    weights = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / c ** 0.5, dim=-1)  # [B, queries, keys]
    return x + _conv(s, f"{name}.proj_out", torch.einsum("bij,bcj->bci", weights, v).reshape(b, c, height, width))


def _levels(s, part):
    return sorted({int(k.split(".")[2]) for k in s if k.startswith(f"{part}.{'down' if part == 'encoder' else 'up'}.")})


def _run_level(s, prefix, x):
    j = 0
    while f"{prefix}.block.{j}.conv1.weight" in s:
        x = _block(s, f"{prefix}.block.{j}", x)
        if f"{prefix}.attn.{j}.qkv.weight" in s:
            x = _attn(s, f"{prefix}.attn.{j}", x)
        j += 1
    return x


def _mid(s, part, x):
    return _block(s, f"{part}.mid.block_2", _attn(s, f"{part}.mid.attn_1", _block(s, f"{part}.mid.block_1", x)))


def reference_encoder(s, x):
    h = _conv(s, "encoder.conv_in", x)
    for i in _levels(s, "encoder"):
        h = _run_level(s, f"encoder.down.{i}", h)
        if f"encoder.down.{i}.downsample.conv.weight" in s:  # pad right and bottom, then stride 2
            h = _conv(s, f"encoder.down.{i}.downsample.conv", F.pad(h, (0, 1, 0, 1)), stride=2, padding=0)
    return _conv(s, "encoder.conv_out", F.silu(_gn(s, "encoder.norm_out", _mid(s, "encoder", h))))


def reference_decoder(s, z):
    h = _mid(s, "decoder", _conv(s, "decoder.conv_in", z))
    for i in reversed(_levels(s, "decoder")):
        h = _run_level(s, f"decoder.up.{i}", h)
        if f"decoder.up.{i}.upsample.conv.weight" in s:
            h = _conv(s, f"decoder.up.{i}.upsample.conv", F.interpolate(h, scale_factor=2, mode="nearest"))
    return _conv(s, "decoder.conv_out", F.silu(_gn(s, "decoder.norm_out", h)))


def _reference_phi(s, scales, k, h):
    """phi_k(h) = 0.5 h + 0.5 conv(h), the conv of the four shared ones whose tick lies nearest k / (K - 1)."""
    ticks = np.linspace(1 / 12, 11 / 12, 4)
    which = int(np.argmin(np.abs(ticks - k / (len(scales) - 1))))
    return 0.5 * h + 0.5 * _conv(s, f"quantize.quant_resi.qresi_ls.{which}", h)


def reference_tokenize(s, scales, x):
    """Algorithm 1 of the VAR paper over the authors' tensors: ids [B, L] and f_hat."""
    f = _conv(s, "quant_conv", reference_encoder(s, 2 * x - 1))
    codes, side = s["quantize.embedding.weight"], scales[-1]
    rest, f_hat, ids = f.clone(), torch.zeros_like(f), []
    for k, scale in enumerate(scales):
        r = F.interpolate(rest, size=(scale, scale), mode="area") if scale != side else rest
        rows = r.permute(0, 2, 3, 1).reshape(-1, r.shape[1])
        found = torch.cdist(rows.double(), codes.double()).argmin(dim=1)
        h = codes[found].view(x.shape[0], scale, scale, -1).permute(0, 3, 1, 2)
        if scale != side:
            h = F.interpolate(h, size=(side, side), mode="bicubic")
        h = _reference_phi(s, scales, k, h)
        f_hat, rest = f_hat + h, rest - h
        ids.append(found.view(x.shape[0], -1))
    return torch.cat(ids, dim=1), f_hat


def reference_images(s, f_hat):
    return (reference_decoder(s, _conv(s, "post_quant_conv", f_hat)).clamp(-1, 1) + 1) / 2


def test_the_authors_layout_converts_and_matches_the_reference_computation():
    state = _authors_state(**AUTHORS_TINY)
    tok = VARTokenizer(AUTHORS_TINY, image_size=AUTHORS_SIDE, seed=9)
    converted = tok.convert(dict(state))
    assert "model.quantize.ema_vocab_hit_SV" not in converted and len(converted) == len(state) - 1
    tok.load_converted(converted, "fixture")  # strict: every name and shape fits
    x = _images(side=AUTHORS_SIDE)
    with torch.no_grad():
        expected_ids, f_hat = reference_tokenize(state, AUTHORS_TINY["v_patch_nums"], x)
        expected = reference_images(state, f_hat)
    ids = tok.encode(x)
    assert ids.shape == (2, 1 + 4 + 9 + 16) and torch.equal(ids, expected_ids)
    images = tok.decode(ids)
    difference = (images - expected).abs().max().item()
    assert difference < 1e-5, f"max abs difference {difference}"
    assert torch.allclose(tok.model.quantize.latent_from_ids(ids), f_hat, atol=1e-5)


@pytest.mark.parametrize("share", [0, 1, 4, 2])
def test_every_phi_sharing_layout_of_the_authors_loads(share):
    arguments = {**AUTHORS_TINY, "share_quant_resi": share}
    tok = VARTokenizer(arguments, image_size=AUTHORS_SIDE)
    tok.load_converted(tok.convert(_authors_state(**arguments)), "fixture")
    assert len(tok.model.quantize.phi) == {0: 4, 1: 1, 4: 4, 2: 2}[share]
    assert tok.encode(_images(1, AUTHORS_SIDE)).shape == (1, 30)


def test_renames_move_only_the_phi_convs():
    assert rename("quantize.quant_resi.qresi_ls.3.weight") == "quantize.phi.3.weight"
    assert rename("quantize.quant_resi.qresi.bias") == "quantize.phi.0.bias"
    assert rename("quantize.quant_resi.7.weight") == "quantize.phi.7.weight"
    assert rename("decoder.up.4.attn.2.qkv.weight") == "decoder.up.4.attn.2.qkv.weight"


def test_phi_schedule_is_the_authors():
    # Printed by the authors' PhiPartiallyShared (models/quant.py) for 10 scales and 4 convs: 2/9 ties between the
    # first two ticks and their float64 rounding picks the second.
    assert phi_schedule(10, 4) == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    assert phi_schedule(4, 4) == [0, 1, 2, 3]
    assert phi_schedule(6, 6) == list(range(6))  # PhiNonShared: one conv per scale
    assert _tiny(share_quant_resi=1).model.quantize.phi_index == [0, 0, 0, 0]
    assert len(_tiny(quant_resi=0.0).model.quantize.phi) == 0  # phi is the identity: no conv at all


# -- the contract ---------------------------------------------------------------------------------------------------


def test_ids_are_the_scales_token_maps_concatenated_coarse_to_fine():
    tok, x = _tiny(), _images()
    ids = tok.encode(x)
    assert ids.shape == (2, LENGTH) and ids.dtype == torch.long and tok.tokens_per_image == LENGTH
    maps = tok.split_scales(ids)
    assert [m.shape[1] for m in maps] == [1, 4, 16, 64]
    assert torch.equal(tok.join_scales([m.view(2, s, s) for m, s in zip(maps, tok.scales)]), ids)
    # The first scale is the area average of the whole latent: its id is the code nearest to the mean latent.
    with torch.no_grad():
        mean = tok.model.quant_conv(tok.model.encoder(tok.to_pixels(x))).mean(dim=(2, 3))
    assert torch.equal(ids[:, 0], torch.cdist(mean.double(), tok.codebook.double()).argmin(1))
    assert torch.equal(tok.embed(ids), tok.codebook[ids]) and tok.embed(ids).shape == (2, LENGTH, 8)
    images = tok.decode(ids)
    assert images.shape == x.shape and 0 <= images.min() and images.max() <= 1
    out = tok(x)
    assert torch.equal(out.indices, ids) and torch.equal(out.output, images)


def test_save_pretrained_and_zoo_load_round_trip_exactly(tmp_path):
    tok, x = _tiny(seed=4), _images()
    loaded = zoo.load(tok.save_pretrained(tmp_path / "var"))
    assert type(loaded) is VARTokenizer and loaded.config == tok.config
    ours, theirs = tok.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert torch.equal(loaded.encode(x), tok.encode(x))
    assert torch.equal(loaded.decode(loaded.encode(x)), tok.decode(tok.encode(x)))


def test_bad_inputs_and_configs_are_refused_with_what_was_expected():
    tok = _tiny()
    with pytest.raises(ZooError, match="fix the side at 16x16"):
        tok.encode(_images(side=32))
    with pytest.raises(ZooError, match=rf"expected \[B, {LENGTH}\]"):
        tok.decode(torch.zeros(1, LENGTH - 1, dtype=torch.long))
    with pytest.raises(ZooError):
        tok.decode(torch.full((1, LENGTH), 64))  # outside the codebook
    with pytest.raises(ZooError, match="not VQVAE arguments"):
        VARTokenizer({**TINY, "n_embed": 64}, image_size=SIDE)
    with pytest.raises(ZooError, match="does not match the scales"):
        VARTokenizer(TINY, image_size=32)
    with pytest.raises(ZooError, match="strictly increasing"):
        VARTokenizer({**TINY, "v_patch_nums": [1, 4, 2, 8]}, image_size=SIDE)
    with pytest.raises(ZooError, match="multiple of 32"):
        VARTokenizer({**TINY, "ch": 24}, image_size=SIDE)
    assert tok.encode(torch.zeros(0, 3, SIDE, SIDE)).shape == (0, LENGTH)


def test_perturbation_moves_each_token_to_its_nearest_code_and_decodes():
    tok = _tiny()
    ids = tok.encode(_images())
    codebook = tok.codebook.detach()
    moved = perturb_token_ids(ids, codebook, alpha=1.0, delta=1, generator=torch.Generator().manual_seed(0))
    wide = codebook.double()
    distance = (wide[:, None] - wide[None]).pow(2).sum(-1)
    distance.fill_diagonal_(float("inf"))
    assert torch.equal(moved, distance.argmin(1)[ids])
    images = tok.decode(moved)
    assert images.shape == (2, 3, SIDE, SIDE) and not torch.equal(images, tok.decode(ids))


# -- the authors' pickle: zoo convert and the convert-once path ------------------------------------------------------


def test_zoo_convert_writes_a_folder_from_the_authors_pth(tmp_path):
    from zoo.image.published.convert import main

    state = _authors_state(seed=5, **AUTHORS_TINY)
    torch.save(state, tmp_path / "vae_ch160v4096z32.pth")
    tiny = ["--set", f"vq_config={json.dumps(AUTHORS_TINY)}", "--set", f"image_size={AUTHORS_SIDE}"]
    assert main([str(tmp_path / "vae_ch160v4096z32.pth"), "--to", str(tmp_path / "out"), "var-vqvae", *tiny]) == 0
    loaded = zoo.load(tmp_path / "out")
    x = _images(side=AUTHORS_SIDE)
    with torch.no_grad():
        expected_ids, _ = reference_tokenize(state, AUTHORS_TINY["v_patch_nums"], x)
    assert type(loaded) is VARTokenizer and torch.equal(loaded.encode(x), expected_ids)


def test_a_pinned_download_converts_once_and_later_loads_read_safetensors_only(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    local = cached_path(zoo.registry.get("var-vqvae").weights["path"])
    local.parent.mkdir(parents=True, exist_ok=True)
    torch.save(_authors_state(seed=6, **AUTHORS_TINY), local)
    tiny = {"vq_config": AUTHORS_TINY, "image_size": AUTHORS_SIDE}
    first = zoo.load("var-vqvae", pretrained=True, **tiny)
    converted = local.with_name(local.name + CONVERTED_SUFFIX)
    assert converted_source_sha256(converted) == hashlib.sha256(local.read_bytes()).hexdigest()

    def no_unpickling(*args, **kwargs):
        raise AssertionError("a later load unpickled the source again")

    monkeypatch.setattr(torch, "load", no_unpickling)
    again = zoo.load("var-vqvae", pretrained=True, **tiny)
    x = _images(side=AUTHORS_SIDE)
    assert torch.equal(again.encode(x), first.encode(x))


# -- the entries -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, tokens, side", [("var-vqvae", 680, 256), ("var-vqvae-512", 2240, 512)])
def test_entries_build_the_published_architecture(name, tokens, side):
    entry = zoo.registry.get(name)
    with torch.device("meta"):
        tok = zoo.load(name)
    assert sum(p.numel() for p in tok.parameters()) == entry.card["parameters"] == 108948355
    assert (tok.vocab_size, tok.tokens_per_image, tok.downsample, tok.image_size) == (4096, tokens, 16, side)
    assert entry.inputs == {"size": side, "range": [0, 1], "channels": 3}
    # The authors' full-size names all land (shapes from their code, VQVAE(vocab_size=4096, z_channels=32, ch=160))
    shapes = _authors_shapes(4096, 32, 160, entry.config["vq_config"]["v_patch_nums"])
    converted = {rename(k): v for k, v in shapes.items() if k != "quantize.ema_vocab_hit_SV"}
    own = {k.removeprefix("model."): tuple(v.shape) for k, v in tok.state_dict().items()}
    assert own == converted
    assert pin_of(entry.weights["path"])["kind"] == "sha256 on first download" and entry.card["license"] == "MIT"


def test_entries_offline_name_the_cache_path(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    path = zoo.registry.get("var-vqvae").weights["path"]
    with pytest.raises(ZooError) as caught:
        zoo.load("var-vqvae", pretrained=True, vq_config=TINY, image_size=SIDE)
    assert str(cached_path(path)) in str(caught.value)
