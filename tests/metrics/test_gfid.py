"""gFID: FID of samples against held-out images, by hand; labels, seeds, sharing rFID's reference, errors."""

import pytest
import torch
import torch.nn.functional as F

from tests.reference_tokenizers import PatchStats, PixelQuantizer
from zoo.errors import ZooError
from zoo.evaluate import run_suite
from zoo.metrics import build_metric
from zoo.metrics.base import EvalContext
from zoo.metrics.fid import FeatureMoments, moments_distance
from zoo.metrics.gfid import GenerativeFID
from zoo.metrics.image import RFID


def images(seed: int, count: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 1, 4, 4, generator=g)
    return F.interpolate(coarse, size=16, mode="bilinear", align_corners=False).expand(-1, 3, -1, -1).contiguous()


class Brightness:
    """A 'generator' whose sample of class c is a flat grey image of level (c + noise) / 10, seeded.

    It records every call, so tests can check what gFID asked for.
    """

    modality = "image"
    vocab_size = 10
    num_classes = 10

    def __init__(self):
        self.calls = []

    def sample(self, n, labels=None, temperature=1.0, top_k=None, top_p=None, seed=0):
        self.calls.append({"n": n, "labels": None if labels is None else labels.tolist(), "seed": seed,
                           "temperature": temperature, "top_k": top_k, "top_p": top_p})
        g = torch.Generator().manual_seed(seed)
        classes = labels.float() if labels is not None else torch.zeros(n)
        level = ((classes + torch.rand(n, generator=g)) / 10).clamp(0, 1)
        return level.view(n, 1, 1, 1).expand(n, 3, 16, 16).contiguous()


def feed(metric, generator, batches):
    metric.setup(generator)
    for index, (x, y) in enumerate(batches):
        metric.update(EvalContext(generator, {"image": x, "label": y}, generator=torch.Generator().manual_seed(index)))
    return metric.compute()


def labelled(seed: int, count: int = 24):
    return images(seed, count), torch.arange(count) % 10


def test_gfid_is_the_frechet_distance_between_real_images_and_samples():
    generator, batches = Brightness(), [labelled(0), labelled(1)]
    value = feed(GenerativeFID(extractor=PatchStats()), generator, batches)
    # Replay the same sampling calls by hand.
    extractor, replay = PatchStats(), Brightness()
    real = FeatureMoments.from_features(torch.cat([extractor(x) for x, _ in batches]))
    samples = torch.cat([replay.sample(c["n"], torch.tensor(c["labels"]), seed=c["seed"]) for c in generator.calls])
    fake = FeatureMoments.from_features(extractor(samples))
    assert value == pytest.approx(moments_distance(real, fake), rel=1e-6)
    assert value > 0


def test_samples_follow_the_batch_labels_and_samples_per_item():
    generator = Brightness()
    x, y = labelled(2, count=6)
    feed(GenerativeFID(extractor=PatchStats(), samples_per_item=3, temperature=0.7, top_k=5, top_p=0.9),
         generator, [(x, y)])
    (call,) = generator.calls
    assert call["n"] == 18 and call["labels"] == y.repeat_interleave(3).tolist()
    assert (call["temperature"], call["top_k"], call["top_p"]) == (0.7, 5, 0.9)


def test_unconditional_sampling_when_asked_or_when_the_generator_has_no_classes():
    generator = Brightness()
    feed(GenerativeFID(extractor=PatchStats(), class_conditional=False), generator, [labelled(3, count=4)])
    assert generator.calls[0]["labels"] is None
    generator = Brightness()
    generator.num_classes = None
    feed(GenerativeFID(extractor=PatchStats()), generator, [labelled(3, count=4)])
    assert generator.calls[0]["labels"] is None


def test_seeds_reproduce_and_differ():
    batches = [labelled(4)]
    a = feed(GenerativeFID(extractor=PatchStats(), seed=0), Brightness(), batches)
    b = feed(GenerativeFID(extractor=PatchStats(), seed=0), Brightness(), batches)
    c = feed(GenerativeFID(extractor=PatchStats(), seed=1), Brightness(), batches)
    assert a == b and a != c


def test_figure_shows_the_first_samples():
    metric = GenerativeFID(extractor=PatchStats())
    feed(metric, Brightness(), [labelled(5, count=20)])
    ((title, row),) = metric.figures().items()
    assert "temperature 1" in title and row.dtype.name == "uint8"
    assert row.shape == (64 + 4, 16 * (64 + 2) + 2, 3)  # 16 samples enlarged to 64 px, 2 px padding


def test_errors_name_the_problem():
    with pytest.raises(ZooError, match="samples_per_item"):
        GenerativeFID(samples_per_item=0, extractor=PatchStats())
    with pytest.raises(ZooError, match="temperature"):
        GenerativeFID(temperature=0, extractor=PatchStats())
    with pytest.raises(ZooError, match="top_p"):
        GenerativeFID(top_p=1.5, extractor=PatchStats())
    with pytest.raises(ZooError, match="top_k"):
        GenerativeFID(top_k=0, extractor=PatchStats())
    metric = GenerativeFID(extractor=PatchStats())
    with pytest.raises(ZooError, match="PixelQuantizer is not a generator"):
        feed(metric, PixelQuantizer(), [labelled(6, count=4)])
    metric = GenerativeFID(extractor=PatchStats())
    with pytest.raises(ZooError, match="needs labels"):
        metric.update(EvalContext(Brightness(), {"image": images(7, 4)}))
    assert isinstance(build_metric("gfid", extractor=PatchStats()), GenerativeFID)


def test_gfid_shares_the_rfid_reference_cache():
    assert GenerativeFID(extractor=PatchStats()).reference_policy() == RFID(extractor=PatchStats()).reference_policy()


def test_suite_skips_gfid_for_a_plain_tokenizer(tmp_path):
    import timm
    from safetensors.torch import save_file

    weights = tmp_path / "test_resnet.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("test_resnet").state_dict().items()}, str(weights))
    extractor = f"timm:test_resnet,weights={weights},size=32"
    suite = {"name": "g", "data": "digits:split=test", "limit": 8, "batch_size": 4,
             "metrics": [{"name": "rfid", "extractor": extractor}, {"name": "gfid", "extractor": extractor}]}
    results = run_suite(suite, [PixelQuantizer(levels=6)], progress=False)
    (label,) = results["results"]
    assert "rfid" in results["results"][label] and "gfid" not in results["results"][label]
    assert any("gfid: skipped" in note and "not a generator" in note for note in results["notes"][label])
