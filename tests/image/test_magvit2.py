"""Open-MAGVIT2's LFQ tokenizer, ported (zoo/image/magvit2/). A fixture state dict in the authors' Lightning layout
(names and shapes written out from their improved_model.py / lfqgan.py / ema.py, random values) converts and gives
the same ids and images as a functional reference computation of their forward pass; the LFQ bit order; the
contract; save_pretrained / zoo.load; the convert-once path of a pinned download; grid neighbours for pFID."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.errors import ZooError
from zoo.hub import cached_path, pin_of
from zoo.image.magvit2 import Magvit2Tokenizer
from zoo.image.magvit2.convert import ema_name, from_authors
from zoo.image.magvit2.model import LFQ
from zoo.image.published.base import CONVERTED_SUFFIX, converted_source_sha256
from zoo.image.published.convert import read_checkpoint
from zoo.quantize.perturb import perturb_token_ids
from zoo.tokenizer import TokenizerOutput

pytestmark = pytest.mark.usefixtures("one_thread")

SIDE = 16
TINY = {"ch": 32, "ch_mult": [1, 2], "num_res_blocks": 2, "z_channels": 6}  # f2, 64 codes; widths 32 and 64
NAMES = ("open-magvit2-256", "open-magvit2-128")


def _images(batch: int = 2, side: int = SIDE, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _tiny(seed: int = 0, **config) -> Magvit2Tokenizer:
    return Magvit2Tokenizer({**TINY, **config}, image_size=SIDE, seed=seed)


# -- the authors' layout, written out from their constructors -------------------------------------------------------


def _resblock_shapes(prefix: str, cin: int, cout: int) -> dict[str, tuple]:
    shapes = {f"{prefix}.norm1.weight": (cin,), f"{prefix}.norm1.bias": (cin,),
              f"{prefix}.conv1.weight": (cout, cin, 3, 3),
              f"{prefix}.norm2.weight": (cout,), f"{prefix}.norm2.bias": (cout,),
              f"{prefix}.conv2.weight": (cout, cout, 3, 3)}
    if cin != cout:
        shapes[f"{prefix}.nin_shortcut.weight"] = (cout, cin, 1, 1)
    return shapes


def authors_shapes(ch: int, ch_mult: list[int], num_res_blocks: int, z_channels: int) -> dict[str, tuple]:
    """encoder.* / decoder.* names and shapes of lfqgan.VQModel (improved_model.Encoder / Decoder)."""
    shapes: dict[str, tuple] = {"encoder.conv_in.weight": (ch, 3, 3, 3)}
    in_mult = [1, *ch_mult]
    for i, mult in enumerate(ch_mult):
        block_in, block_out = ch * in_mult[i], ch * mult
        for j in range(num_res_blocks):
            shapes.update(_resblock_shapes(f"encoder.down.{i}.block.{j}", block_in, block_out))
            block_in = block_out
        if i < len(ch_mult) - 1:
            shapes[f"encoder.down.{i}.downsample.weight"] = (block_out, block_out, 3, 3)
            shapes[f"encoder.down.{i}.downsample.bias"] = (block_out,)
    for r in range(num_res_blocks):
        shapes.update(_resblock_shapes(f"encoder.mid_block.{r}", block_in, block_in))
    shapes.update({"encoder.norm_out.weight": (block_in,), "encoder.norm_out.bias": (block_in,),
                   "encoder.conv_out.weight": (z_channels, block_in, 1, 1), "encoder.conv_out.bias": (z_channels,)})
    block_in = ch * ch_mult[-1]
    shapes.update({"decoder.conv_in.weight": (block_in, z_channels, 3, 3), "decoder.conv_in.bias": (block_in,)})
    for r in range(num_res_blocks):
        shapes.update(_resblock_shapes(f"decoder.mid_block.{r}", block_in, block_in))
    for i in reversed(range(len(ch_mult))):
        block_out = ch * ch_mult[i]
        for part in ("gamma", "beta"):
            shapes[f"decoder.adaptive.{i}.{part}.weight"] = (block_in, z_channels)
            shapes[f"decoder.adaptive.{i}.{part}.bias"] = (block_in,)
        for j in range(num_res_blocks):
            shapes.update(_resblock_shapes(f"decoder.up.{i}.block.{j}", block_in, block_out))
            block_in = block_out
        if i > 0:
            shapes[f"decoder.up.{i}.upsample.conv1.weight"] = (4 * block_in, block_in, 3, 3)
            shapes[f"decoder.up.{i}.upsample.conv1.bias"] = (4 * block_in,)
    shapes.update({"decoder.norm_out.weight": (block_in,), "decoder.norm_out.bias": (block_in,),
                   "decoder.conv_out.weight": (3, block_in, 3, 3), "decoder.conv_out.bias": (3,)})
    return shapes


def random_weights(shapes: dict[str, tuple], seed: int) -> dict[str, torch.Tensor]:
    """Seeded values that keep activations of order one: fan-in scaled kernels, norms near 1, small biases."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes.items():
        noise = torch.randn(shape, generator=generator)
        if len(shape) > 1:
            state[name] = noise / math.sqrt(math.prod(shape[1:]))
        elif ".norm" in name and name.endswith("weight"):
            state[name] = 1 + 0.1 * noise
        else:
            state[name] = 0.1 * noise
    return state


def authors_checkpoint(seed: int = 0, config: dict = TINY) -> tuple[dict, dict[str, torch.Tensor]]:
    """A Lightning checkpoint as lfqgan.VQModel with use_ema=True saves it, and the EMA weights it holds."""
    shapes = authors_shapes(config["ch"], config["ch_mult"], config["num_res_blocks"], config["z_channels"])
    trained, ema = random_weights(shapes, seed), random_weights(shapes, seed + 1000)
    state = {**trained, **{ema_name(name): tensor for name, tensor in ema.items()},
             "model_ema.decay": torch.tensor(0.999), "model_ema.num_updates": torch.tensor(-1, dtype=torch.int),
             "loss.discriminator.main.0.weight": torch.zeros(4, 3, 3, 3), "loss.logvar": torch.zeros(())}
    return {"state_dict": state, "epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.2.1"}, ema


# -- a functional reference of the authors' forward pass ------------------------------------------------------------


def _swish(x):
    return x * torch.sigmoid(x)


def _resblock(p, prefix, x):
    h = F.conv2d(_swish(F.group_norm(x, 32, p[f"{prefix}.norm1.weight"], p[f"{prefix}.norm1.bias"], 1e-6)),
                 p[f"{prefix}.conv1.weight"], padding=1)
    h = F.conv2d(_swish(F.group_norm(h, 32, p[f"{prefix}.norm2.weight"], p[f"{prefix}.norm2.bias"], 1e-6)),
                 p[f"{prefix}.conv2.weight"], padding=1)
    shortcut = p.get(f"{prefix}.nin_shortcut.weight")
    return h + (x if shortcut is None else F.conv2d(x, shortcut))


def _depth_to_space(x, block):
    b, c, h, w = x.shape  # DCR: the channel axis is (row, col, c)
    x = x.view(b, block, block, c // block**2, h, w).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(b, c // block**2, h * block, w * block)


def reference_forward(p: dict, images: torch.Tensor, config: dict = TINY):
    """Images in [-1, 1] -> (ids [B, h, w], reconstruction) as lfqgan.VQModel.encode / decode compute them."""
    levels, blocks, bits = len(config["ch_mult"]), config["num_res_blocks"], config["z_channels"]
    x = F.conv2d(images, p["encoder.conv_in.weight"], padding=1)
    for i in range(levels):
        for j in range(blocks):
            x = _resblock(p, f"encoder.down.{i}.block.{j}", x)
        if i < levels - 1:
            x = F.conv2d(x, p[f"encoder.down.{i}.downsample.weight"], p[f"encoder.down.{i}.downsample.bias"],
                         stride=2, padding=1)
    for r in range(blocks):
        x = _resblock(p, f"encoder.mid_block.{r}", x)
    x = _swish(F.group_norm(x, 32, p["encoder.norm_out.weight"], p["encoder.norm_out.bias"], 1e-6))
    z = F.conv2d(x, p["encoder.conv_out.weight"], p["encoder.conv_out.bias"])
    # LFQ: sign, straight-through in the forward value, id = sum_i (q_i > 0) * 2 ** i
    q = torch.where(z > 0, torch.tensor(1.0), torch.tensor(-1.0))
    ids = ((q > 0).long() * (2 ** torch.arange(bits)).view(1, -1, 1, 1)).sum(1)
    q = z + (q - z)
    h = F.conv2d(q, p["decoder.conv_in.weight"], p["decoder.conv_in.bias"], padding=1)
    for r in range(blocks):
        h = _resblock(p, f"decoder.mid_block.{r}", h)
    flat = q.flatten(2)
    for i in reversed(range(levels)):
        scale = F.linear((flat.var(dim=-1) + 1e-6).sqrt(), p[f"decoder.adaptive.{i}.gamma.weight"],
                         p[f"decoder.adaptive.{i}.gamma.bias"])
        bias = F.linear(flat.mean(dim=-1), p[f"decoder.adaptive.{i}.beta.weight"], p[f"decoder.adaptive.{i}.beta.bias"])
        h = F.group_norm(h, 32, eps=1e-6) * scale[..., None, None] + bias[..., None, None]
        for j in range(blocks):
            h = _resblock(p, f"decoder.up.{i}.block.{j}", h)
        if i > 0:
            h = _depth_to_space(F.conv2d(h, p[f"decoder.up.{i}.upsample.conv1.weight"],
                                         p[f"decoder.up.{i}.upsample.conv1.bias"], padding=1), 2)
    h = _swish(F.group_norm(h, 32, p["decoder.norm_out.weight"], p["decoder.norm_out.bias"], 1e-6))
    return ids, F.conv2d(h, p["decoder.conv_out.weight"], p["decoder.conv_out.bias"], padding=1)


# -- parity with the reference ---------------------------------------------------------------------------------------


def test_an_authors_checkpoint_converts_to_the_ema_weights_and_matches_the_reference(tmp_path):
    checkpoint, ema = authors_checkpoint(seed=3)
    torch.save(checkpoint, tmp_path / "imagenet_256_L.ckpt")
    tok = _tiny()
    tok.load_converted(Magvit2Tokenizer.convert(read_checkpoint(tmp_path / "imagenet_256_L.ckpt")), "fixture")
    x = _images()
    ref_ids, ref_images = reference_forward(ema, x * 2 - 1)
    ids = tok.encode(x)
    assert ids.shape == (2, SIDE // 2, SIDE // 2) and torch.equal(ids, ref_ids)
    assert ids.unique().numel() > 8  # the fixture's codes are spread, not one corner of the grid
    expected = ((ref_images + 1) / 2).clamp(0, 1)
    difference = (tok.decode(ids) - expected).abs().max().item()
    assert difference < 1e-5, f"max abs difference {difference}"
    # the training weights give other ids: the EMA copy, not them, was loaded
    training = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith(("encoder.", "decoder."))}
    assert not torch.equal(reference_forward(training, x * 2 - 1)[0], ids)


def test_training_weights_when_asked_and_refusals_of_partial_or_foreign_files():
    checkpoint, _ = authors_checkpoint(seed=4)
    state = checkpoint["state_dict"]
    plain = from_authors(state, use_ema=False)
    assert torch.equal(plain["model.encoder.conv_in.weight"], state["encoder.conv_in.weight"])
    assert set(plain) == set(_tiny().state_dict())
    partial = {k: v for k, v in state.items() if k != ema_name("decoder.conv_out.bias")}
    with pytest.raises(ZooError, match="lacks 1 of the"):
        from_authors(partial)
    with pytest.raises(ZooError, match="no Open-MAGVIT2 encoder"):
        from_authors({"transformer.tok_emb.weight": torch.zeros(2, 2)})


def test_upsampling_is_depth_to_space_in_dcr_order_not_pixel_shuffle():
    tok = _tiny(seed=2)
    upsampler = tok.model.decoder.up[1].upsample
    x = torch.randn(1, 64, 3, 3, generator=torch.Generator().manual_seed(0))
    conv = F.conv2d(x, upsampler.conv1.weight, upsampler.conv1.bias, padding=1)
    assert torch.equal(upsampler(x), _depth_to_space(conv, 2))
    assert not torch.equal(upsampler(x), F.pixel_shuffle(conv, 2))


# -- LFQ ids --------------------------------------------------------------------------------------------------------


def test_lfq_ids_are_the_sign_bits_with_channel_zero_least_significant():
    lfq = LFQ(4)
    z = torch.tensor([0.5, -1.0, 2.0, 0.0]).view(1, 4, 1, 1)  # bits 1, 0, 1, 0 (zero is -1)
    assert lfq.ids(z).item() == 1 + 4
    assert lfq.codes(torch.tensor([5])).tolist() == [[1.0, -1.0, 1.0, -1.0]]
    all_ids = torch.arange(16)
    assert torch.equal(lfq.ids(lfq.codes(all_ids).view(16, 4, 1, 1)).flatten(), all_ids)


def test_codebook_embed_and_perturbation_neighbours_on_the_grid():
    tok = _tiny(seed=5)
    codebook = tok.codebook
    assert codebook.shape == (64, 6) and set(codebook.unique().tolist()) == {-1.0, 1.0}
    ids = tok.encode(_images())
    assert torch.equal(tok.embed(ids), codebook[ids])
    # delta = bits: the nearest other codes are the single-bit flips (Hamming distance 1)
    moved = perturb_token_ids(ids, codebook, alpha=1.0, delta=6, generator=torch.Generator().manual_seed(0))
    flipped = (moved ^ ids).flatten().tolist()
    assert all(bin(v).count("1") == 1 for v in flipped)
    assert tok.decode(moved).shape == (2, 3, SIDE, SIDE)


def test_the_18_bit_implicit_codebook_gives_hamming_neighbours():
    tok = Magvit2Tokenizer({**TINY, "num_res_blocks": 1, "z_channels": 18}, image_size=SIDE)
    assert tok.vocab_size == 262144 and tok.codebook.shape == (262144, 18)
    ids = torch.tensor([[[0, 262143], [5, 1 << 17]]])
    moved = perturb_token_ids(ids, tok.codebook, alpha=1.0, delta=18, generator=torch.Generator().manual_seed(0))
    assert all(bin(v).count("1") == 1 for v in (moved ^ ids).flatten().tolist())


# -- the contract -------------------------------------------------------------------------------------------------


def test_contract_shapes_ranges_and_errors():
    tok = _tiny(seed=6)
    x = _images(3)
    ids = tok.encode(x)
    assert ids.dtype == torch.long and ids.shape == (3, 8, 8) and 0 <= ids.min() and ids.max() < 64
    images = tok.decode(ids)
    assert images.shape == x.shape and 0 <= images.min() and images.max() <= 1
    out = tok(x)
    assert isinstance(out, TokenizerOutput) and torch.equal(out.indices, ids) and torch.equal(out.output, images)
    assert tok.encode(x[:0]).shape == (0, 8, 8)
    assert torch.equal(tok.encode(_images(1, side=12)), tok.encode(_images(1, side=12)))  # any even side
    with pytest.raises(ZooError, match="multiples of 2"):
        tok.encode(_images(1, side=15))
    with pytest.raises(ZooError, match=r"ids must lie in \[0, 64\)"):
        tok.decode(torch.full((1, 2, 2), 64))
    with pytest.raises(ZooError, match="needs at least 2"):
        tok.decode(torch.zeros(1, 1, 1, dtype=torch.long))
    with pytest.raises(ZooError, match="frozen"):
        tok.training_losses({"image": x}, 0)


def test_config_typos_and_widths_groupnorm_cannot_take_are_refused():
    with pytest.raises(ZooError, match=r"vq_config keys \['chmult'\] are unknown"):
        Magvit2Tokenizer({**TINY, "chmult": [1, 2]}, image_size=SIDE)
    with pytest.raises(ZooError, match="multiples of 32"):
        Magvit2Tokenizer({**TINY, "ch": 48}, image_size=SIDE)
    with pytest.raises(ZooError, match=r"z_channels \(LFQ bits\)"):
        Magvit2Tokenizer({**TINY, "z_channels": 40}, image_size=SIDE)


def test_round_trip_through_save_pretrained_is_exact(tmp_path):
    tok = _tiny(seed=7)
    loaded = zoo.load(tok.save_pretrained(tmp_path / "magvit2"))
    assert isinstance(loaded, Magvit2Tokenizer) and loaded.config == tok.config
    ids = tok.encode(_images())
    assert torch.equal(loaded.encode(_images()), ids)
    assert torch.equal(loaded.decode(ids), tok.decode(ids))


# -- the entries -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_entries_build_the_published_architecture(name):
    entry = zoo.registry.get(name)
    with torch.device("meta"):
        tok = zoo.load(name)
    assert sum(p.numel() for p in tok.parameters()) == entry.card["parameters"]
    expected = {"open-magvit2-256": (16, 256), "open-magvit2-128": (8, 128)}[name]
    assert (tok.vocab_size, tok.tokens_per_image, tok.downsample, tok.image_size) == (262144, 256, *expected)
    assert entry.inputs["size"] == tok.image_size and entry.inputs["multiple_of"] == tok.downsample
    # the largest side the entry states is the largest grid the wrapper serves
    assert (entry.inputs["max_size"] // tok.downsample) ** 2 == tok.max_tokens
    w = entry.weights
    assert w["path"].startswith("hf://TencentARC/Open-MAGVIT2-Tokenizer-") and w["path"].endswith("_L.ckpt")
    assert pin_of(w["path"], w.get("sha256"), w.get("revision"))["kind"] == "sha256 on first download"


@pytest.mark.parametrize("name", NAMES)
def test_entries_offline_name_the_cache_path(name, monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    weights = zoo.registry.get(name).weights
    with pytest.raises(ZooError) as caught:
        zoo.load(name, pretrained=True, vq_config=TINY, image_size=SIDE)
    assert str(cached_path(weights["path"], weights.get("revision"))) in str(caught.value)


def test_a_pinned_download_converts_once_and_later_loads_read_safetensors_only(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    weights = zoo.registry.get("open-magvit2-256").weights
    local = cached_path(weights["path"], weights.get("revision"))
    local.parent.mkdir(parents=True, exist_ok=True)
    checkpoint, ema = authors_checkpoint(seed=8)
    torch.save(checkpoint, local)
    tiny = {"vq_config": TINY, "image_size": SIDE}
    first = zoo.load("open-magvit2-256", pretrained=True, **tiny)
    ref_ids, _ = reference_forward(ema, _images() * 2 - 1)
    assert torch.equal(first.encode(_images()), ref_ids)
    converted = local.with_name(local.name + CONVERTED_SUFFIX)
    assert converted_source_sha256(converted) == hashlib.sha256(local.read_bytes()).hexdigest()

    def no_unpickling(*args, **kwargs):
        raise AssertionError("a later load unpickled the source again")

    monkeypatch.setattr(torch, "load", no_unpickling)
    again = zoo.load("open-magvit2-256", pretrained=True, **tiny)
    assert torch.equal(again.encode(_images()), ref_ids)


def test_the_convert_command_writes_a_loadable_folder(tmp_path):
    from zoo.image.published.convert import main

    checkpoint, ema = authors_checkpoint(seed=9)
    torch.save(checkpoint, tmp_path / "imagenet_128_L.ckpt")
    tiny = ["--set", f"vq_config={json.dumps(TINY)}", "--set", f"image_size={SIDE}"]
    assert main([str(tmp_path / "imagenet_128_L.ckpt"), "--to", str(tmp_path / "out"), "open-magvit2-128", *tiny]) == 0
    loaded = zoo.load(tmp_path / "out")
    ref_ids, ref_images = reference_forward(ema, _images() * 2 - 1)
    assert torch.equal(loaded.encode(_images()), ref_ids)
    assert (loaded.decode(ref_ids) - ((ref_images + 1) / 2).clamp(0, 1)).abs().max().item() < 1e-5


def test_zoo_convert_on_the_command_line(tmp_path, capsys):
    from zoo.cli import main

    checkpoint, ema = authors_checkpoint(seed=10)
    torch.save(checkpoint, tmp_path / "imagenet_256_L.ckpt")
    code = main(["convert", str(tmp_path / "imagenet_256_L.ckpt"), "open-magvit2-256", "--to", str(tmp_path / "cli"),
                 "--set", f"vq_config={json.dumps(TINY)}", "--set", f"image_size={SIDE}"])
    assert code == 0 and "wrote" in capsys.readouterr().out
    assert torch.equal(zoo.load(tmp_path / "cli").encode(_images()), reference_forward(ema, _images() * 2 - 1)[0])
