"""The semantic probe: token histograms and pooled semantic features, each scored by a linear probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zoo.data import collate, load_dataset
from zoo.errors import ZooError
from zoo.evaluate import run_suite
from zoo.metrics import build_metric
from zoo.metrics.base import EvalContext
from zoo.metrics.probe import fit_linear_probe, probe_features
from zoo.metrics.semantic_probe import semantic_features

TRAIN = "digits:split=train"
TEST = "digits:split=test"


pytestmark = pytest.mark.usefixtures("one_thread")


class BrightnessTokenizer:
    """A deterministic image tokenizer for tests: 4 brightness levels on a 4x4 grid; codes are the level / 3."""

    modality = "image"
    vocab_size = 4

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        grey = F.avg_pool2d(x.mean(dim=1, keepdim=True), 2)[:, 0]  # [B, 4, 4] from 8x8 digits
        return (grey * 4).long().clamp(max=3)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return ids.float().unsqueeze(-1) / 3  # [B, 4, 4, 1]


class SemanticBrightnessTokenizer(BrightnessTokenizer):
    def semantic_embed(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.stack([ids.float(), (ids == 0).float()], dim=-1)  # [B, 4, 4, 2]


def _batches(spec: str, size: int = 200):
    dataset = load_dataset(spec)
    return [collate([dataset[i] for i in range(start, min(start + size, len(dataset)))])
            for start in range(0, len(dataset), size)]


def test_semantic_features_prefer_the_semantic_codebook_and_pool():
    ids = torch.tensor([[[0, 1], [2, 3]]])
    plain = semantic_features(BrightnessTokenizer(), ids)
    assert torch.allclose(plain, torch.tensor([[0.5]], dtype=torch.float64))
    semantic = semantic_features(SemanticBrightnessTokenizer(), ids)
    assert torch.allclose(semantic, torch.tensor([[1.5, 0.25]], dtype=torch.float64))
    flat = semantic_features(SemanticBrightnessTokenizer(), ids, pool="flatten")
    assert flat.shape == (1, 8) and flat[0, :2].tolist() == [0.0, 1.0]
    with pytest.raises(ZooError, match="pool must be one of"):
        semantic_features(BrightnessTokenizer(), ids, pool="max")


@pytest.mark.parametrize("tokenizer_cls", [BrightnessTokenizer, SemanticBrightnessTokenizer])
def test_accuracies_equal_a_hand_fitted_reference_probe(tokenizer_cls):
    tokenizer = tokenizer_cls()
    metric = build_metric("semantic-probe", train=TRAIN)
    metric.setup(tokenizer)
    test_batches = _batches(TEST, size=100)
    for batch in test_batches:
        metric.update(EvalContext(tokenizer, batch))
    result = metric.compute()

    train_batches = _batches(TRAIN)
    y_train = np.concatenate([b["label"].numpy() for b in train_batches])
    y_test = np.concatenate([b["label"].numpy() for b in test_batches])
    views = {
        "semantic": lambda b: semantic_features(tokenizer, tokenizer.encode(b["image"])).numpy(),
        "histogram": lambda b: probe_features(tokenizer, b, "histogram").numpy(),
    }
    for view, features in views.items():
        probe = fit_linear_probe(np.concatenate([features(b) for b in train_batches]), y_train, 1.0, 1000)
        predicted = probe.predict(np.concatenate([features(b) for b in test_batches]))
        assert result[view] == pytest.approx(float((predicted == y_test).mean()), abs=1e-12), view
    counts = np.bincount(y_test)
    assert result["chance"] == pytest.approx(counts.max() / counts.sum())
    assert result["train_items"] == len(y_train)
    hand = np.bincount(tokenizer.encode(test_batches[0]["image"][:1]).reshape(-1).numpy(), minlength=4) / 16
    assert np.allclose(views["histogram"]({"image": test_batches[0]["image"][:1]})[0], hand)
    assert result["histogram"] > 1.5 * result["chance"]  # how much ink a digit has says something about it


def test_state_sums_across_shards():
    tokenizer = BrightnessTokenizer()
    batches = _batches(TEST, size=90)
    whole = build_metric("semantic-probe", train=TRAIN, limit=400)
    whole.setup(tokenizer)
    for batch in batches:
        whole.update(EvalContext(tokenizer, batch))
    first, second = (build_metric("semantic-probe", train=TRAIN, limit=400) for _ in range(2))
    for part, shard in ((first, batches[::2]), (second, batches[1::2])):
        part.setup(tokenizer)
        for batch in shard:
            part.update(EvalContext(tokenizer, batch))
    first.merge_state(second)
    assert first.compute() == whole.compute()


def test_errors_name_the_problem():
    with pytest.raises(ZooError, match="views must be distinct names"):
        build_metric("semantic-probe", train=TRAIN, views=["semantic", "pixels"])
    with pytest.raises(ZooError, match="pool must be one of"):
        build_metric("semantic-probe", train=TRAIN, pool="max")
    metric = build_metric("semantic-probe", train="digits:split=train,limit=1")
    with pytest.raises(ZooError, match="at least two labels"):
        metric.setup(BrightnessTokenizer())
    metric = build_metric("semantic-probe", train=TRAIN, limit=200)
    batch = _batches(TEST)[0]
    del batch["label"]
    with pytest.raises(ZooError, match="semantic probe: the suite's data has no 'label' labels"):
        metric.update(EvalContext(BrightnessTokenizer(), batch))
    metric = build_metric("semantic-probe", train=TRAIN, limit=200, num_labels=5)
    with pytest.raises(ZooError, match=r"semantic probe: labels must lie in \[0, 5\), got \[0, 9\]; raise num_labels"):
        metric.update(EvalContext(BrightnessTokenizer(), _batches(TEST)[0]))


def test_suite_runs_the_probe_on_registry_tokenizers():
    suite = {"name": "probe", "data": "fashion-mnist:split=test,size=32", "limit": 40, "batch_size": 20,
             "examples": 0,
             "metrics": [{"name": "semantic-probe", "train": "fashion-mnist:split=train,size=32", "limit": 120}]}
    results = run_suite(suite, ["tokenflow-fmnist", "vq-fmnist"], progress=False)
    for name in ("tokenflow-fmnist", "vq-fmnist"):
        value = results["results"][name]["semantic-probe"]
        assert set(value) == {"semantic", "histogram", "chance", "train_items"}
        assert 0.0 <= value["semantic"] <= 1.0 and 0.0 <= value["histogram"] <= 1.0
        assert value["train_items"] == 120
    assert results["metrics"]["semantic-probe"]["higher_is_better"] is True
