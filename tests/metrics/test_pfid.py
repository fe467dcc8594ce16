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


# -- perturbed PSNR: the same perturbed decodes, scored per image ------------------------------------------------


def on_levels(seed: int, count: int = 6) -> torch.Tensor:
    """Images GreyPalette reconstructs exactly: every 4x4 patch already one of its grey levels."""
    ids = torch.randint(0, LEVELS, (count, 4, 4), generator=torch.Generator().manual_seed(seed))
    return GreyPalette().decode(ids).contiguous()


def test_perturbed_psnr_matches_the_hand_computed_value():
    from zoo.metrics import build_metric

    tok = GreyPalette()
    metric = build_metric("perturbed-psnr", alphas=[0.0, 1.0], delta=1)
    values = run_pfid(metric, tok, [on_levels(0), on_levels(1)])
    # alpha 0 decodes the exact reconstruction: PSNR at its 100 dB cap. alpha 1 with delta 1 moves every patch
    # one level (1/31) up or down: MSE (1/31)^2 in every pixel, PSNR 20 log10(31).
    assert values["alpha=0"] == pytest.approx(100.0)
    assert values["alpha=1"] == pytest.approx(20 * torch.log10(torch.tensor(31.0)).item(), rel=1e-6)
    assert values["mean"] == pytest.approx((values["alpha=0"] + values["alpha=1"]) / 2)
    assert values["drop"] == pytest.approx(100.0 - values["mean"])
    assert metric.direction("drop") is False and metric.direction("mean") is True
    assert metric.notes == ["delta 1 nearest codes of 32, seed 0"]


def test_perturbed_psnr_replays_pfids_draws():
    from zoo.metrics.image import psnr
    from zoo.metrics.pfid import PerturbedPSNR
    from zoo.quantize.perturb import perturb_token_ids

    tok = GreyPalette()
    batches = [on_levels(2), on_levels(3)]
    values = run_pfid(PerturbedPSNR(alphas=[0.3, 0.6], delta=2, seed=5), tok, batches)
    generator = torch.Generator().manual_seed(5)  # pFID's draws: one generator, batch after batch, alpha by alpha
    scores = {0.3: [], 0.6: []}
    for batch in batches:
        for alpha in (0.3, 0.6):
            moved = perturb_token_ids(tok.encode(batch), tok.codebook, alpha, 2, generator)
            scores[alpha].append(psnr(batch, tok.decode(moved)))
    for alpha, parts in scores.items():
        assert values[f"alpha={alpha:g}"] == pytest.approx(torch.cat(parts).mean().item())


def test_perturbed_psnr_refuses_bad_options():
    from zoo.metrics.pfid import PerturbedPSNR

    with pytest.raises(ZooError, match="perturbed-psnr: alphas must be"):
        PerturbedPSNR(alphas=[])
    with pytest.raises(ZooError, match="perturbed-psnr: delta 32 must be smaller"):
        PerturbedPSNR(delta=32).setup(GreyPalette())
