"""pFID: the definition on a hand-checkable tokenizer, its seed, delta, figures and errors."""

import pytest
import torch
import torch.nn.functional as F

from tests.reference_tokenizers import PatchStats
from zoo.errors import ZooError
from zoo.metrics.base import EvalContext
from zoo.metrics.fid import FeatureMoments, moments_distance
from zoo.metrics.pfid import PerturbedFID, default_delta
from zoo.tokenizer import Tokenizer

LEVELS = 32


class GreyPalette(Tokenizer):
    """Each 4x4 patch -> the nearest of 32 grey levels; its codebook is the levels on a line, so the
    neighbours of code k are k +- 1, k +- 2, ... and a perturbed patch is a little lighter or darker."""

    modality = "image"
    requires_weights = False

    def __init__(self):
        pass

    @property
    def vocab_size(self) -> int:
        return LEVELS

    @property
    def codebook(self) -> torch.Tensor:
        return torch.linspace(0, 1, LEVELS).unsqueeze(1)  # [K, 1]

    def encode(self, x):
        grey = F.avg_pool2d(x.mean(1, keepdim=True), 4)[:, 0]  # [B, h, w]
        return torch.round(grey * (LEVELS - 1)).long()

    def decode(self, ids):
        grey = ids.float() / (LEVELS - 1)
        return F.interpolate(grey[:, None], scale_factor=4.0, mode="nearest").expand(-1, 3, -1, -1)


def images(seed: int, count: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 1, 4, 4, generator=g)
    return F.interpolate(coarse, size=16, mode="bilinear", align_corners=False).expand(-1, 3, -1, -1).contiguous()


def run_pfid(metric: PerturbedFID, tokenizer, batches) -> dict:
    metric.setup(tokenizer)
    for batch in batches:
        metric.update(EvalContext(tokenizer, {"image": batch}))
    return metric.compute()


def test_default_delta_is_ceil_of_a_fortieth_of_the_codebook():
    assert default_delta(256) == 7 and default_delta(4096) == 103 and default_delta(2) == 1 and default_delta(40) == 1


def test_alpha_zero_is_rfid_and_pfid_grows_with_alpha():
    tok = GreyPalette()
    batches = [images(0), images(1)]
    values = run_pfid(PerturbedFID(alphas=[0.0, 0.3, 1.0], extractor=PatchStats(), delta=3), tok, batches)
    assert set(values) == {"alpha=0", "alpha=0.3", "alpha=1", "mean"}
    # alpha 0 decodes the clean ids: pFID equals rFID computed by hand with the same extractor.
    extractor = PatchStats()
    real = FeatureMoments.from_features(torch.cat([extractor(b) for b in batches]))
    recon = FeatureMoments.from_features(torch.cat([extractor(tok.decode(tok.encode(b))) for b in batches]))
    assert values["alpha=0"] == pytest.approx(moments_distance(real, recon), rel=1e-4)
    assert values["alpha=0"] < values["alpha=0.3"] < values["alpha=1"]
    assert values["mean"] == pytest.approx((values["alpha=0"] + values["alpha=0.3"] + values["alpha=1"]) / 3)


def test_decoded_images_move_only_within_the_neighbourhood():
    tok = GreyPalette()
    batch = images(2, count=8)
    metric = PerturbedFID(alphas=[1.0], extractor=PatchStats(), delta=2)
    run_pfid(metric, tok, [batch])
    # alpha 1: every patch moved to a neighbour 1 or 2 levels away (delta 2 on a line: k +- 1 at the ends of
    # the line's interior; k +- 1 or k + 2 / k - 2 at its ends).
    clean, moved = metric.strip[1], metric.strip[2]
    steps = ((moved - clean) * (LEVELS - 1)).round().abs()
    assert steps.min() >= 1 and steps.max() <= 2


def test_fixed_seed_reproduces_and_another_seed_differs():
    tok = GreyPalette()
    batches = [images(3)]
    a = run_pfid(PerturbedFID(extractor=PatchStats(), seed=0), tok, batches)
    b = run_pfid(PerturbedFID(extractor=PatchStats(), seed=0), tok, batches)
    c = run_pfid(PerturbedFID(extractor=PatchStats(), seed=1), tok, batches)
    assert a == b and a != c
    assert set(a) == {"alpha=0.1", "alpha=0.2", "alpha=0.3", "mean"}


def test_delta_default_and_errors():
    tok = GreyPalette()
    metric = PerturbedFID(extractor=PatchStats())
    metric.setup(tok)
    assert metric.delta == 1  # ceil(0.025 * 32)
    assert any("delta 1 nearest codes of 32" in note for note in metric.notes)
    with pytest.raises(ZooError, match="delta 32 must be smaller than the codebook size 32"):
        PerturbedFID(extractor=PatchStats(), delta=32).setup(tok)
    with pytest.raises(ZooError, match="alphas must be"):
        PerturbedFID(alphas=[1.5], extractor=PatchStats())
    with pytest.raises(ZooError, match="delta must be an integer"):
        PerturbedFID(delta=0, extractor=PatchStats())


def test_figure_is_a_strip_of_original_reconstruction_and_each_alpha():
    tok = GreyPalette()
    metric = PerturbedFID(extractor=PatchStats())
    run_pfid(metric, tok, [images(4, count=4)])
    (title, strip), = metric.figures().items()
    assert "alpha 0.1" in title and "alpha 0.3" in title
    assert strip.dtype.name == "uint8" and strip.shape == (16, 5 * 16 + 4 * 2, 3)


def test_pfid_shares_the_rfid_reference_cache():
    from zoo.metrics.image import RFID

    assert PerturbedFID(extractor=PatchStats()).reference_policy() == RFID(extractor=PatchStats()).reference_policy()
