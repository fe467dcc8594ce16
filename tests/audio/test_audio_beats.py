"""BEATs models: the random-projection tokenizer, the SSL model, the NormEMA quantizer and the distilled tokenizer."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import zoo
from zoo.audio.beats.quantizer import NormEMAVectorQuantizer
from zoo.audio.beats.random_projection import BEATsRandomTokenizer
from zoo.audio.beats.ssl import BEATsSSL, random_visible
from zoo.audio.beats.tokenizer import BEATsTokenizer
from zoo.tokenizer import AudioTokens

TINY_SSL = dict(
    dim=32, depth=2, heads=4, patch_dim=32, predictor_dim=32, predictor_depth=1, predictor_heads=4, dropout=0.0
)
TINY_TOKENIZER = dict(
    codebook_size=32, codebook_dim=8, dim=32, depth=2, heads=4, patch_dim=32, dropout=0.0,
    estimator_dim=32, estimator_depth=1, estimator_heads=4,
)  # fmt: skip


def _clips(lengths=(32_000, 20_000, 9_000), seed=0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(max(lengths)) / 16_000
    audio = torch.zeros(len(lengths), max(lengths))
    for row, length in enumerate(lengths):
        freq = 200.0 + 300.0 * row
        tone = 0.3 * torch.sin(2 * math.pi * freq * t[:length]) + 0.02 * torch.randn(length, generator=generator)
        audio[row, :length] = tone
    return audio, torch.tensor(lengths)


def _assert_batch_equals_single(tok, audio, lengths):
    batched = tok.encode(audio, lengths)
    for row, length in enumerate(lengths.tolist()):
        alone = tok.encode(audio[row : row + 1, :length])
        n = int(alone.lengths[0])
        assert int(batched.lengths[row]) == n
        assert torch.equal(batched.ids[row, :n], alone.ids[0])
        assert (batched.ids[row, n:] == -1).all()


# -- iteration 1: random projection ---------------------------------------------------------------------------


def test_random_tokenizer_matches_a_module_reference():
    tok = BEATsRandomTokenizer(seed=3)
    audio, lengths = _clips((16_000,))
    conv = nn.Conv2d(1, 512, 16, 16, bias=False)
    conv.weight.data.copy_(tok.patch_weight)
    linear = nn.Linear(512, 256, bias=False)
    linear.weight.data.copy_(tok.projection)
    fbank, _ = tok.frontend(audio, lengths)
    patches = conv(fbank).flatten(2).transpose(1, 2)  # [1, C, t, 8] -> [1, t*8, C]: time-major
    patches = nn.LayerNorm(512, elementwise_affine=False)(patches)
    z = nn.LayerNorm(256, elementwise_affine=False)(linear(patches))
    expected = torch.cdist(z[0].double(), tok.codes.double()).argmin(-1)
    assert torch.equal(tok.encode(audio).ids[0], expected)


def test_random_tokenizer_is_defined_by_its_seed():
    state = torch.get_rng_state()
    a, b, c = BEATsRandomTokenizer(seed=0), BEATsRandomTokenizer(seed=0), BEATsRandomTokenizer(seed=1)
    assert torch.equal(torch.get_rng_state(), state)  # a private generator: global RNG untouched
    assert torch.equal(a.codes, b.codes) and torch.equal(a.projection, b.projection)
    assert not torch.equal(a.codes, c.codes)
    # xavier-normal patch embedding and projection, standard normal codebook
    assert a.patch_weight.std().item() == pytest.approx(math.sqrt(2 / (256 + 512 * 256)), rel=0.05)
    assert a.projection.std().item() == pytest.approx(math.sqrt(2 / (512 + 256)), rel=0.05)
    assert a.codes.std().item() == pytest.approx(1.0, rel=0.05)
    assert BEATsRandomTokenizer.requires_weights is False and not list(a.parameters())


def test_random_tokenizer_contract_and_round_trip(tmp_path):
    tok = zoo.load("beats-random", pretrained=True)
    audio, lengths = _clips()
    tokens = tok.encode(audio, lengths)
    assert isinstance(tokens, AudioTokens) and tokens.ids.dtype == torch.long
    assert tokens.lengths.tolist() == [96, 56, 24]  # 2 s, 1.25 s, 0.56 s at 50 tokens/s (whole patches)
    assert tok.frame_rate == 50.0 and tok.sample_rate == 16_000 and tok.vocab_size == 1024
    _assert_batch_equals_single(tok, audio, lengths)
    tok.save_pretrained(tmp_path / "random")
    assert sorted(p.name for p in (tmp_path / "random").iterdir()) == ["config.json"]  # the seed is the model
    assert torch.equal(zoo.load(tmp_path / "random").encode(audio, lengths).ids, tokens.ids)
    assert torch.equal(tok.embed(tokens.ids[:, :2]), tok.codes[tokens.ids[:, :2]])
    with pytest.raises(zoo.ZooError, match="no decoder"):
        tok.decode(tokens)
    with pytest.raises(zoo.ZooError, match="needs no training"):
        tok.training_losses({"audio": audio}, 0)
    with pytest.raises(zoo.ZooError, match=r"expected shape \[B, T\]"):
        tok.encode(audio[0])


def test_clip_shorter_than_one_patch_gives_no_tokens():
    tok = BEATsRandomTokenizer()
    tokens = tok.encode(torch.zeros(2, 2799), torch.tensor([2799, 100]))  # 16 frames need 2800 samples
    assert tokens.lengths.tolist() == [0, 0] and tokens.ids.shape == (2, 0)


# -- the SSL model ---------------------------------------------------------------------------------------------


def test_random_visible_keeps_a_quarter_of_each_item():
    torch.manual_seed(0)
    pad = torch.arange(40).unsqueeze(0) >= torch.tensor([40, 17, 1]).unsqueeze(1)
    index, visible_pad, masked = random_visible(pad, 0.75)
    assert (~visible_pad).sum(1).tolist() == [10, 4, 1]
    for row in range(3):
        visible = set(index[row][~visible_pad[row]].tolist())
        hidden = set(masked[row].nonzero().flatten().tolist())
        assert visible.isdisjoint(hidden)
        assert visible | hidden == set(range(int((~pad[row]).sum())))


class _FixedLabels(nn.Module):
    """A stand-in label tokenizer returning preset labels."""

    modality, vocab_size = "audio", 16

    def __init__(self, labels: torch.Tensor, lengths: torch.Tensor):
        super().__init__()
        self.labels, self.lengths = labels, lengths

    def encode(self, audio, lengths=None):
        return AudioTokens(self.labels, self.lengths)


def _ssl_with_labels(labels, lengths, **overrides) -> BEATsSSL:
    model = BEATsSSL(vocab_size=16, **{**TINY_SSL, **overrides})
    model.__dict__["_frozen_models"] = {"label_tokenizer": _FixedLabels(labels, lengths)}
    model._zoo_config["label_tokenizer"] = "fixed"
    return model


def test_ssl_loss_counts_masked_patches_only():
    audio, lengths = _clips()
    patch_lengths = torch.tensor([96, 56, 24])
    labels = torch.randint(0, 16, (3, 96))
    model = _ssl_with_labels(labels, patch_lengths)
    torch.manual_seed(1)
    _, masked = model.masked_prediction(audio, lengths)
    torch.manual_seed(1)
    loss = model.training_losses({"audio": audio, "audio_lengths": lengths}, 0)["loss"]
    changed = labels.clone()
    changed[~masked] = (changed[~masked] + 1) % 16  # visible and padding labels must not matter
    model.__dict__["_frozen_models"]["label_tokenizer"].labels = changed
    torch.manual_seed(1)
    again = model.training_losses({"audio": audio, "audio_lengths": lengths}, 0)["loss"]
    assert torch.equal(loss, again)
    changed[masked] = (changed[masked] + 1) % 16
    torch.manual_seed(1)
    assert not torch.equal(loss, model.training_losses({"audio": audio, "audio_lengths": lengths}, 0)["loss"])


def test_ssl_learns_labels_and_exports_without_its_label_tokenizer(tmp_path):
    audio, lengths = _clips()
    patch_lengths = torch.tensor([96, 56, 24])
    labels = torch.arange(96).repeat(3, 1) % 8  # the frequency band of each patch: learnable from its position
    torch.manual_seed(0)
    model = _ssl_with_labels(labels, patch_lengths)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(30):
        loss = model.training_losses({"audio": audio, "audio_lengths": lengths}, step)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    model.save_pretrained(tmp_path / "ssl")
    record = json.loads((tmp_path / "ssl" / "config.json").read_text())
    assert record["config"]["label_tokenizer"] is None
    assert record["metadata"]["trained_with"] == {"label_tokenizer": "fixed"}
    loaded = zoo.load(tmp_path / "ssl")
    model.eval()
    assert torch.equal(loaded.encode(audio, lengths).ids, model.encode(audio, lengths).ids)
    features, feature_lengths = loaded.features(audio, lengths)
    assert features.shape == (3, 96, 32) and feature_lengths.tolist() == [96, 56, 24]
    _assert_batch_equals_single(loaded, audio, lengths)


def test_ssl_checks_its_label_tokenizer():
    audio, lengths = _clips()
    model = BEATsSSL(vocab_size=32, **TINY_SSL, label_tokenizer="beats-random")
    with pytest.raises(zoo.ZooError, match="vocab_size 32 differs from the label tokenizer's 1024"):
        model.training_losses({"audio": audio, "audio_lengths": lengths}, 0)
    with pytest.raises(zoo.ZooError, match="needs config key 'label_tokenizer'"):
        BEATsSSL(**TINY_SSL).training_losses({"audio": audio, "audio_lengths": lengths}, 0)
    missing = BEATsSSL(**TINY_SSL, label_tokenizer="runs/nowhere/final")
    with pytest.raises(zoo.ZooError, match="not a checkpoint folder"):
        missing.training_losses({"audio": audio, "audio_lengths": lengths}, 0)


# -- the normalised-EMA quantizer ------------------------------------------------------------------------------


def test_quantizer_ema_update_by_hand():
    quantizer = NormEMAVectorQuantizer(3, 2, decay=0.5)
    quantizer.codebook.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    quantizer.initted.fill_(True)
    z = torch.tensor([[[2.0, 0.2], [3.0, -0.3], [0.1, 5.0], [9.0, 9.0]]])  # the last one is padding
    pad = torch.tensor([[False, False, False, True]])
    quantizer.train()
    z_q, ids, loss = quantizer(z, pad)
    assert ids[0, :3].tolist() == [0, 0, 1]
    unit = F.normalize(z, dim=-1)[0]
    mean0 = F.normalize((unit[0] + unit[1]) / 2, dim=0)
    expected0 = F.normalize(0.5 * torch.tensor([1.0, 0.0]) + 0.5 * mean0, dim=0)
    expected1 = F.normalize(0.5 * torch.tensor([0.0, 1.0]) + 0.5 * unit[2], dim=0)
    torch.testing.assert_close(quantizer.codebook[0], expected0)
    torch.testing.assert_close(quantizer.codebook[1], expected1)
    assert quantizer.codebook[2].tolist() == [-1.0, 0.0]  # unused: kept as it was
    assert quantizer.cluster_size.tolist() == [1.0, 0.5, 0.0]  # EMA of counts, padding excluded
    # z_q holds the codes chosen before the update; loss = beta * mse over valid positions
    old = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(z_q[0, :3], old)
    torch.testing.assert_close(loss, F.mse_loss(old, unit[:3]))


def test_dead_codes_restart_only_when_asked():
    z = F.normalize(torch.tensor([[[1.0, 0.1], [1.0, -0.1], [0.9, 0.0]]]), dim=-1)
    pad = torch.zeros(1, 3, dtype=torch.bool)
    for threshold in (0.0, 0.5):
        quantizer = NormEMAVectorQuantizer(2, 2, decay=0.9, dead_code_threshold=threshold).train()
        quantizer.codebook.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        quantizer.cluster_size.fill_(1.0)
        quantizer.initted.fill_(True)
        for _ in range(8):  # code 1 is never chosen: its usage decays 0.9 per batch
            quantizer(z, pad)
        if threshold == 0.0:
            assert quantizer.codebook[1].tolist() == [-1.0, 0.0]  # BEATs: kept as it was
        else:  # moved onto one of the batch's vectors once its usage fell under 0.5
            assert any(torch.allclose(quantizer.codebook[1], v) for v in z[0])
            assert quantizer.cluster_size[1] >= 0.5 * 0.9


def test_quantizer_straight_through_and_kmeans_init():
    torch.manual_seed(0)
    quantizer = NormEMAVectorQuantizer(4, 3, kmeans_iters=5).train()
    centres = F.normalize(torch.randn(4, 3), dim=-1)
    z = (centres.repeat(50, 1) + 0.01 * torch.randn(200, 3)).unsqueeze(0).requires_grad_(True)
    z_q, ids, _ = quantizer(z, torch.zeros(1, 200, dtype=torch.bool))
    assert bool(quantizer.initted)
    torch.testing.assert_close(quantizer.codebook.norm(dim=-1), torch.ones(4))
    assert len(ids.unique()) == 4  # k-means found the four clusters
    (z_q * torch.arange(3.0)).sum().backward()
    weights = torch.arange(3.0).expand(1, 200, 3)
    expected = torch.autograd.functional.vjp(lambda v: F.normalize(v, dim=-1), z.detach(), weights)[1]
    torch.testing.assert_close(z.grad, expected)  # gradient flows as if z_q were normalize(z)


# -- the distilled tokenizer -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "ssl"
    BEATsSSL(**TINY_SSL).eval().save_pretrained(path)
    return path


def test_tokenizer_distils_its_teacher_and_exports_without_the_estimator(teacher_dir, tmp_path):
    audio, lengths = _clips()
    torch.manual_seed(0)
    tok = BEATsTokenizer(**TINY_TOKENIZER, teacher=str(teacher_dir)).train()
    assert tok.estimator is not None
    optimizer = torch.optim.Adam(tok.parameters(), lr=5e-3)
    losses = []
    for step in range(20):
        out = tok.training_losses({"audio": audio, "audio_lengths": lengths}, step)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(out["distillation"].item())
    assert bool(tok.quantizer.initted)
    assert losses[-1] < 0.5 * losses[0]
    tok.save_pretrained(tmp_path / "tok")
    record = json.loads((tmp_path / "tok" / "config.json").read_text())
    assert record["config"]["teacher"] is None
    assert record["metadata"]["trained_with"] == {"teacher": str(teacher_dir)}
    loaded = zoo.load(tmp_path / "tok")
    assert loaded.estimator is None and not any(k.startswith("estimator.") for k in loaded.state_dict())
    tok.eval()
    assert torch.equal(loaded.encode(audio, lengths).ids, tok.encode(audio, lengths).ids)
    assert torch.equal(loaded.codebook, tok.codebook)
    _assert_batch_equals_single(loaded, audio, lengths)
    with pytest.raises(zoo.ZooError, match="training needs a teacher"):
        loaded.training_losses({"audio": audio, "audio_lengths": lengths}, 0)


class _ShiftedTeacher(nn.Module):
    """A stand-in teacher: fixed random features plus a shared offset."""

    def __init__(self, shift: float):
        super().__init__()
        self.features_ = torch.randn(3, 96, 32, generator=torch.Generator().manual_seed(0))
        self.shift = shift

    def features(self, audio, lengths=None):
        return self.features_ + self.shift, torch.tensor([96, 56, 24])


@pytest.mark.parametrize("target_norm", ["none", "batch"])
def test_batch_target_norm_ignores_what_all_patches_share(target_norm, teacher_dir):
    audio, lengths = _clips()
    losses = []
    for shift in (0.0, 5.0):
        torch.manual_seed(0)
        tok = BEATsTokenizer(**TINY_TOKENIZER, teacher=str(teacher_dir), target_norm=target_norm).train()
        tok.__dict__["_frozen_models"] = {"teacher": _ShiftedTeacher(shift)}
        losses.append(tok.training_losses({"audio": audio, "audio_lengths": lengths}, 0)["distillation"])
    if target_norm == "batch":
        torch.testing.assert_close(losses[0], losses[1])
    else:  # BEATs' raw cosine sees the shared offset
        assert abs(losses[1] - losses[0]) > 0.01
    with pytest.raises(zoo.ZooError, match="target_norm must be 'none' or 'batch'"):
        BEATsTokenizer(**TINY_TOKENIZER, target_norm="layer")


def test_encode_does_not_touch_the_codebook(teacher_dir):
    tok = BEATsTokenizer(**TINY_TOKENIZER).train()
    before = tok.codebook.clone()
    audio, lengths = _clips()
    tok.encode(audio, lengths)
    assert torch.equal(tok.codebook, before) and tok.training  # encode runs in eval mode, then restores
