"""Codebook usage and perplexity, hand-computed, for image, text and audio ids and several codebooks."""

import math

import pytest
import torch

from tests.reference_tokenizers import FrameQuantizer, PixelQuantizer
from zoo.evaluate.report import figure_to_png
from zoo.metrics import build_metric
from zoo.metrics.base import EvalContext
from zoo.text.byte import ByteTokenizer


def entropy(counts: list[int]) -> float:
    total = sum(counts)
    return -sum(c / total * math.log(c / total) for c in counts if c)


def run(metric_name: str, tokenizer, batches: list[dict]):
    metric = build_metric(metric_name)
    metric.setup(tokenizer)
    for batch in batches:
        metric.update(EvalContext(tokenizer, batch))
    return metric


def test_image_usage_and_perplexity_by_hand():
    tokenizer = PixelQuantizer(factor=2, levels=2)  # vocab 8
    ids = torch.tensor([[[0, 0], [0, 5]], [[5, 7], [0, 0]]])  # [B=2, h=2, w=2]: code 0 x5, 5 x2, 7 x1
    images = tokenizer.decode(ids)
    assert torch.equal(tokenizer.encode(images), ids)  # exact decoder: the ids are the ones we wrote
    metric = run("codebook", tokenizer, [{"image": images[:1]}, {"image": images[1:]}])
    result = metric.compute()
    assert result["usage"] == pytest.approx(3 / 8)
    assert result["perplexity"] == pytest.approx(math.exp(entropy([5, 2, 1])), rel=1e-12)
    assert metric.counts[0].tolist() == [5, 0, 0, 0, 0, 2, 0, 1]


def test_several_codebooks_are_counted_per_level():
    tokenizer = PixelQuantizer(factor=2, levels=4, split_channels=True)  # ids [B, h, w, 3], vocab 4 each
    ids = torch.tensor([[[[0, 1, 3], [0, 2, 3]], [[0, 3, 3], [1, 0, 3]]]])  # [1, 2, 2, 3]
    metric = run("codebook", tokenizer, [{"image": tokenizer.decode(ids)}])
    result = metric.compute()
    assert result["usage.level0"] == pytest.approx(2 / 4)  # codes 0, 1
    assert result["usage.level1"] == pytest.approx(4 / 4)
    assert result["usage.level2"] == pytest.approx(1 / 4)
    assert result["perplexity.level0"] == pytest.approx(math.exp(entropy([3, 1])))
    assert result["perplexity.level2"] == pytest.approx(1.0)
    assert result["usage"] == pytest.approx((2 / 4 + 1 + 1 / 4) / 3)
    assert figure_to_png(metric.figures()["usage per code"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_text_ids():
    metric = run("codebook", ByteTokenizer(), [{"text": ["aab", ""]}, {"text": ["é"]}])
    # bytes: a a b 0xC3 0xA9 -> counts 2, 1, 1, 1 over a vocabulary of 259
    assert metric.compute()["usage"] == pytest.approx(4 / 259)
    assert metric.compute()["perplexity"] == pytest.approx(math.exp(entropy([2, 1, 1, 1])))


def test_audio_padding_frames_are_not_counted():
    tokenizer = FrameQuantizer(hop=4, levels=4)
    audio = torch.zeros(2, 16)
    audio[0] = 1.0  # item 0: 4 frames of id 3; item 1: 2 valid frames (8 samples) of id ... 0 -> middle level
    encoded = tokenizer.encode(audio, lengths=torch.tensor([16, 8]))
    assert encoded.lengths.tolist() == [4, 2] and (encoded.ids[1, 2:] == -1).all()
    metric = run("codebook", tokenizer, [{"audio": audio, "audio_lengths": torch.tensor([16, 8])}])
    assert metric.counts.sum() == 6
    assert metric.counts[0, 3] == 4 and metric.counts[0, int(encoded.ids[1, 0])] == 2


def test_shards_merge_to_the_whole():
    tokenizer = PixelQuantizer(factor=4, levels=4)
    images = torch.rand(6, 3, 16, 16)
    whole = run("codebook", tokenizer, [{"image": images}])
    first = run("codebook", tokenizer, [{"image": images[:2]}])
    first.merge_state(run("codebook", tokenizer, [{"image": images[2:]}]))
    assert first.compute() == whole.compute()
