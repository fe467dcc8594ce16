"""Throughput: items counted, the warm-up batch left out, units per modality, tokenizers without decoder."""

import os
import subprocess
import sys

import torch

from tests.reference_tokenizers import FrameQuantizer, ImageLabeller, PixelQuantizer
from zoo.metrics import build_metric
from zoo.metrics.base import EvalContext
from zoo.text.byte import ByteTokenizer


def run(tokenizer, batches: list[dict]):
    metric = build_metric("throughput")
    metric.setup(tokenizer)
    for batch in batches:
        metric.update(EvalContext(tokenizer, batch))
    return metric


def test_throughput_counts_items_and_skips_the_warmup_batch():
    tokenizer = PixelQuantizer(factor=4, levels=4)
    metric = run(tokenizer, [{"image": torch.rand(4, 3, 16, 16)} for _ in range(3)])
    assert float(metric.warm[2]) == 4 and float(metric.timed[2]) == 8  # first batch is warm-up
    result = metric.compute()
    assert result["encode_items_per_s"] > 0 and result["decode_items_per_s"] > 0
    assert result["encode_peak_mb"] >= 0
    assert metric.direction("encode_items_per_s") is True and metric.direction("encode_peak_mb") is False


def test_throughput_units_per_modality():
    text = run(ByteTokenizer(), [{"text": ["héllo" * 100] * 4}]).compute()
    assert text["encode_mb_per_s"] > 0 and text["encode_items_per_s"] > text["encode_mb_per_s"]
    audio_tok = FrameQuantizer(hop=160)
    audio = run(audio_tok, [{"audio": torch.rand(2, 16000) * 2 - 1}]).compute()
    assert audio["encode_x_realtime"] > 1 and "decode_x_realtime" in audio


def test_throughput_of_a_tokenizer_without_decoder():
    result = run(ImageLabeller(), [{"image": torch.rand(2, 3, 8, 8)}]).compute()
    assert "encode_items_per_s" in result and "decode_items_per_s" not in result


def test_measure_call_sees_memory_growth():
    # In a fresh process: inside a long test session the allocator may hand back pages that are already
    # resident (CI saw 4 KB of growth for a 256 MB block), and resident-set growth cannot show those.
    script = """
import time, torch
from zoo.metrics.measure import measure_call
def hold_256_mb():
    block = torch.ones(64, 1024, 1024)
    time.sleep(0.2)  # held long enough for the 1 ms sampler however the machine schedules threads
    return block.sum()
result, measurement = measure_call(hold_256_mb)
print(float(result), measurement.seconds, measurement.peak_bytes)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    result, seconds, peak_bytes = done.stdout.split()
    assert float(result) == 64 * 1024 * 1024
    assert float(seconds) > 0
    assert int(peak_bytes) > 100 * 2**20
