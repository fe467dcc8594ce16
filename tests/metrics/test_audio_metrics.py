"""Token purity / PNMI against hand-computed values and fairseq's formulas; the linear probe."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile
import torch

import zoo
from zoo.audio.beats.ssl import BEATsSSL
from zoo.data import collate, load_dataset
from zoo.metrics import build_metric
from zoo.metrics.audio import TokenPurity, purity_scores
from zoo.metrics.base import EvalContext
from zoo.metrics.probe import probe_features
from zoo.tokenizer import AudioTokens


class _TableTokenizer:
    """Returns preset ids: a stand-in audio tokenizer."""

    modality, vocab_size, sample_rate = "audio", 3, 16_000

    def __init__(self, ids, lengths):
        self.ids, self.lengths = torch.tensor(ids), torch.tensor(lengths)

    def encode(self, audio, lengths=None):
        return AudioTokens(self.ids, self.lengths)


def _fairseq_scores(p_xy: np.ndarray) -> dict:
    """fairseq examples/hubert/measure_teacher_quality.py, transcribed: rows are labels, columns tokens."""
    p_xy = p_xy / p_xy.sum()
    p_x, p_y = p_xy.sum(axis=1, keepdims=True), p_xy.sum(axis=0, keepdims=True)
    mi = (p_xy * np.log(p_xy / (p_x @ p_y) + 1e-8)).sum()
    h_x = (-p_x * np.log(p_x + 1e-8)).sum()
    return {"label_purity": p_xy.max(axis=0).sum(), "cluster_purity": p_xy.max(axis=1).sum(), "pnmi": mi / h_x}


def test_purity_and_pnmi_by_hand():
    # clip 0 (label 0): tokens 0 0 0 1 | clip 1 (label 1): tokens 2 2 2 1, then padding that must not count
    tok = _TableTokenizer([[0, 0, 0, 1, -1], [2, 2, 2, 1, 0]], [4, 4])
    metric = build_metric("token-purity", num_labels=4)
    assert isinstance(metric, TokenPurity)
    metric.update(EvalContext(tok, {"audio": torch.zeros(2, 10), "label": torch.tensor([0, 1])}))
    scores = metric.compute()
    assert scores["label_purity"] == pytest.approx(7 / 8)  # 3/8 + 1/8 + 3/8
    assert scores["cluster_purity"] == pytest.approx(6 / 8)  # 3/8 + 3/8
    assert scores["mutual_information"] == pytest.approx(0.75 * math.log(2))
    assert scores["pnmi"] == pytest.approx(0.75)  # I(y; z) / H(y) = (3/4 log 2) / log 2
    assert scores["label_entropy"] == pytest.approx(math.log(2))


def test_purity_matches_fairseq_and_sums_across_shards():
    rng = np.random.default_rng(0)
    joint = rng.integers(0, 20, (5, 12)).astype(float)
    joint[:, 3] = 0  # an unused token
    ours = purity_scores(torch.tensor(joint))
    for key, value in _fairseq_scores(joint[:, joint.sum(0) > 0]).items():
        assert ours[key] == pytest.approx(value, abs=1e-6)
    a, b = TokenPurity(num_labels=2), TokenPurity(num_labels=2)
    whole = TokenPurity(num_labels=2)
    batches = [([[0, 1, 2]], [3], [0]), ([[2, 2, 1]], [2], [1])]
    contexts = [
        EvalContext(_TableTokenizer(ids, lengths), {"audio": torch.zeros(1, 4), "label": torch.tensor(labels)})
        for ids, lengths, labels in batches
    ]
    a.update(contexts[0])
    b.update(contexts[1])
    for ctx in contexts:
        whole.update(ctx)
    a.merge_state(b)
    assert a.compute() == whole.compute()


def test_purity_errors_name_the_problem():
    metric, tok = TokenPurity(num_labels=2), _TableTokenizer([[0]], [1])
    with pytest.raises(zoo.ZooError, match="raise num_labels"):
        metric.update(EvalContext(tok, {"audio": torch.zeros(1, 4), "label": torch.tensor([5])}))
    with pytest.raises(zoo.ZooError, match="has no 'label' labels"):
        metric.update(EvalContext(tok, {"audio": torch.zeros(1, 4)}))


def test_histogram_features_count_valid_tokens_only():
    tok = _TableTokenizer([[0, 0, 2, 1], [1, 1, 1, 1]], [3, 2])
    features = probe_features(tok, {"audio": torch.zeros(2, 8), "audio_lengths": torch.tensor([8, 4])}, "histogram")
    torch.testing.assert_close(features, torch.tensor([[2 / 3, 0, 1 / 3], [0, 1, 0]], dtype=torch.float64))


@pytest.fixture(scope="module")
def loud_and_quiet(tmp_path_factory):
    """A labelled folder: loud noise bursts vs quiet tones, 12 clips each."""
    root = tmp_path_factory.mktemp("probe")
    rng = np.random.default_rng(0)
    t = np.arange(16_000) / 16_000
    (root / "loud").mkdir()
    (root / "quiet").mkdir()
    for k in range(12):
        soundfile.write(str(root / "loud" / f"{k}.wav"), rng.uniform(-0.5, 0.5, 16_000), 16_000)
        soundfile.write(str(root / "quiet" / f"{k}.wav"), 0.05 * np.sin(2 * np.pi * (200 + 50 * k) * t), 16_000)
    return root


@pytest.mark.parametrize("features", ["histogram", "codes", "hidden"])
def test_linear_probe_separates_an_easy_task(loud_and_quiet, features):
    torch.manual_seed(0)
    tiny_ssl = BEATsSSL(dim=32, depth=1, heads=4, patch_dim=32, predictor_dim=32, predictor_depth=1, predictor_heads=4)
    tok = tiny_ssl.eval() if features == "hidden" else zoo.load("beats-random")
    metric = build_metric("linear-probe", train=f"audio-folder:{loud_and_quiet},split=train", features=features)
    test = load_dataset(f"audio-folder:{loud_and_quiet},split=test")
    for start in range(0, len(test), 3):
        items = [test[i] for i in range(start, min(start + 3, len(test)))]
        metric.update(EvalContext(tok, collate(items)))
    result = metric.compute()
    assert result["accuracy"] == 1.0
    assert result["train_items"] == len(load_dataset(f"audio-folder:{loud_and_quiet},split=train"))
    assert 0.5 <= result["chance"] < 1.0


def test_linear_probe_needs_two_labels_and_known_features(tmp_path):
    (tmp_path / "only").mkdir()
    soundfile.write(str(tmp_path / "only" / "a.wav"), np.zeros(16_000), 16_000)
    metric = build_metric("linear-probe", train=f"audio-folder:{tmp_path}")
    with pytest.raises(zoo.ZooError, match="at least two labels"):
        metric.setup(zoo.load("beats-random"))
    with pytest.raises(zoo.ZooError, match="features must be one of"):
        build_metric("linear-probe", train="x", features="pixels")
    with pytest.raises(zoo.ZooError, match="has no features"):
        probe_features(zoo.load("beats-random"), {"audio": torch.zeros(1, 16_000)}, "hidden")
