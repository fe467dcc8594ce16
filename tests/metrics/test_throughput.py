"""Text throughput as users call it: batch, per-document and one-call timings, per-call overhead, pinned threads,
per-process and total rates across processes; values checked against hand computation from fixed timings."""

from __future__ import annotations

import os

import pytest
import torch

import zoo.metrics.throughput as throughput
from zoo.errors import ZooError
from zoo.metrics import build_metric
from zoo.metrics.base import EvalContext
from zoo.text.byte import ByteTokenizer

# Fixed seconds per call kind: the metric's arithmetic is then checkable by hand.
SECONDS = {"batch": 0.2, "per_doc": 0.5, "one_call": 0.1}


class RecordingBytes(ByteTokenizer):
    """Byte tokenizer that records each encode call's kind and the thread settings it ran under."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, str | None, str | None, int]] = []
        self.last = None

    def encode(self, text):
        if isinstance(text, list):
            kind = "batch"
        elif "\n" in text:
            kind = "one_call"
        else:
            kind = "per_doc"
        self.last = kind
        env = os.environ.get("ZOO_TEXT_THREADS"), os.environ.get("TOKENIZERS_PARALLELISM")
        self.calls.append((kind, *env, torch.get_num_threads()))
        return super().encode(text)


@pytest.fixture
def fixed_seconds(monkeypatch):
    def fake(fn, box):
        fn()
        return SECONDS[box[0].last]  # the kind of call the recording tokenizer saw last

    box: list = []
    monkeypatch.setattr(throughput, "_seconds", lambda fn: fake(fn, box))
    return box


def run(metric, tokenizer, batches):
    metric.setup(tokenizer)
    for texts in batches:
        metric.update(EvalContext(tokenizer, {"text": texts}))
    return metric


BATCHES = [["héllo", "wörld", "abc"], ["x" * 10, "y" * 20], ["é" * 5, "z"]]


def test_text_timings_give_hand_computed_rates_and_overheads(fixed_seconds):
    tok = RecordingBytes()
    fixed_seconds.append(tok)
    result = run(build_metric("throughput", repeats=2), tok, BATCHES).compute()
    timed = BATCHES[1:]  # the first batch is the warm-up
    docs = sum(len(b) for b in timed)
    mb = sum(len(t.encode()) for b in timed for t in b) / 1e6
    one_call_mb = sum(len("\n".join(b).encode()) for b in timed) / 1e6
    seconds = {kind: s * len(timed) for kind, s in SECONDS.items()}  # min over repeats of a constant
    assert result["encode_items_per_s"] == pytest.approx(docs / seconds["batch"])
    assert result["encode_mb_per_s"] == pytest.approx(mb / seconds["batch"])
    assert result["encode_per_doc_items_per_s"] == pytest.approx(docs / seconds["per_doc"])
    assert result["encode_per_doc_mb_per_s"] == pytest.approx(mb / seconds["per_doc"])
    assert result["encode_one_call_mb_per_s"] == pytest.approx(one_call_mb / seconds["one_call"])
    same_bytes = seconds["one_call"] * mb / one_call_mb
    assert result["encode_batch_overhead_us"] == pytest.approx((seconds["batch"] - same_bytes) / docs * 1e6)
    assert result["encode_per_doc_overhead_us"] == pytest.approx((seconds["per_doc"] - same_bytes) / docs * 1e6)
    assert result["threads"] == 1 and result["processes"] == 1
    assert result["encode_items_per_s_total"] == pytest.approx(result["encode_items_per_s"])
    assert result["encode_mb_per_s_total"] == pytest.approx(result["encode_mb_per_s"])


def test_each_call_kind_runs_repeats_times_in_a_rotating_order():
    tok = RecordingBytes()
    run(build_metric("throughput", repeats=2, decode=False), tok, BATCHES)
    # Per batch: the shared encode (a batch call), then the three kinds twice each, starting one kind later per batch.
    firsts = []
    position = 0
    for texts in BATCHES:
        position += 1  # the shared encode
        firsts.append(tok.calls[position][0])
        position += 2 * (2 + len(texts))  # two repeats each of: batch, one call, per-document calls
    assert firsts == ["batch", "per_doc", "one_call"]


def test_threads_are_pinned_during_the_timed_calls_and_restored_after(monkeypatch):
    monkeypatch.setenv("ZOO_TEXT_THREADS", "7")
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    before = torch.get_num_threads()
    tok = RecordingBytes()
    result = run(build_metric("throughput", repeats=1), tok, BATCHES[:1]).compute()
    assert {call[1:] for call in tok.calls} == {("1", "false", 1)}
    assert result["threads"] == 1
    assert os.environ["ZOO_TEXT_THREADS"] == "7" and "TOKENIZERS_PARALLELISM" not in os.environ
    assert torch.get_num_threads() == before
    tok = RecordingBytes()
    assert run(build_metric("throughput", threads=2, repeats=1), tok, BATCHES[:1]).compute()["threads"] == 2
    assert {call[1:] for call in tok.calls} == {("2", "true", 2)}
    torch.set_num_threads(before)


def test_several_processes_report_per_process_and_total_rates(fixed_seconds):
    tok = RecordingBytes()
    fixed_seconds.append(tok)
    first = run(build_metric("throughput", repeats=1, warmup_batches=0), tok, BATCHES[:1])
    second = run(build_metric("throughput", repeats=1, warmup_batches=0), tok, BATCHES[1:])
    own = [float(m.rate[0]) for m in (first, second)]
    assert own == pytest.approx([3 / 0.2, 4 / 0.4])
    first.merge_state(second)  # what the cross-process sum does
    result = first.compute()
    assert result["processes"] == 2 and result["threads"] == 1
    assert result["encode_items_per_s"] == pytest.approx(7 / 0.6)  # one process's speed: items / seconds
    assert result["encode_items_per_s_total"] == pytest.approx(sum(own))  # all of them at once


def test_images_keep_the_shared_call_and_say_their_processes():
    from tests.reference_tokenizers import PixelQuantizer

    tokenizer = PixelQuantizer(factor=4, levels=4)
    metric = build_metric("throughput")
    metric.setup(tokenizer)
    for _ in range(2):
        metric.update(EvalContext(tokenizer, {"image": torch.rand(2, 3, 8, 8)}))
    result = metric.compute()
    assert result["processes"] == 1 and result["threads"] == torch.get_num_threads()
    assert result["encode_items_per_s_total"] == pytest.approx(result["encode_items_per_s"])
    assert "encode_per_doc_items_per_s" not in result
    # an 8x8 image at factor 4 is a 2x2 grid: 4 tokens an image, so tokens/s is 4x images/s
    assert result["encode_tokens_per_s"] == pytest.approx(4 * result["encode_items_per_s"])


@pytest.mark.parametrize("options", [{"threads": 0}, {"threads": "2"}, {"repeats": 0}, {"threads": True}])
def test_bad_options_are_refused(options):
    with pytest.raises(ZooError, match="throughput: (threads|repeats) must be an int >= 1"):
        build_metric("throughput", **options)
