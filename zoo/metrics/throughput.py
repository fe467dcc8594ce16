"""Encode and decode speed (items/s) and peak memory of any tokenizer, measured the way users call it.

Image and audio times come from the suite's shared ``encode`` / ``decode`` calls
(``EvalContext.measurements``), so measuring adds no extra work. Text encodes are fast and cheap to
repeat, so for text the metric times, per batch and with threads pinned (``threads``, default 1):

- the **batch call** ``encode(list_of_texts)`` (``encode_items_per_s``, ``encode_mb_per_s``);
- **per-document calls** ``[encode(t) for t in texts]`` (``encode_per_doc_*``);
- **one call** on the batch joined by newlines (``encode_one_call_mb_per_s``): the engine's speed
  on long text, what ``benchmarks/text_throughput`` measures on 64 KB blocks;

each the fastest of ``repeats`` runs (default 3, so other load on the machine counts less). It
reports the per-call overhead of the first two: their seconds above one call's for the same
bytes, per document, in µs (``encode_batch_overhead_us``, ``encode_per_doc_overhead_us``). The
three calls run in a rotating order, so no kind is always first (engines with a word cache, such as
``tokenizers``, see warmer caches in later calls). Pinning: ``$ZOO_TEXT_THREADS`` (zoo's engines,
``zoo.text.engines``), ``$TOKENIZERS_PARALLELISM`` (``tokenizers``) and ``torch.set_num_threads`` are
set for the timed calls and restored after; ``threads`` says how many. These timings run without
the memory sampler (a thread waking every millisecond, which competes with a short text encode);
peak memory still comes from the shared call.

The first batch of each process warms up caches and lazy initialisation and is left out whenever
later batches exist. Across processes (accelerate), seconds and items add up, so ``*_per_s`` is the
speed of one process (``processes`` says how many ran); ``*_per_s_total`` sums each process's own
rate, the aggregate speed of all of them running at once. Peak memory is averaged over processes.
Text also reports MB/s of UTF-8 input, audio the real-time factor (seconds of audio per second).
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from typing import ClassVar

import torch

from zoo.errors import ZooError
from zoo.metrics.base import EvalContext, Metric

# Slots of the shared-call timing vectors.
ENCODE_S, DECODE_S, ITEMS, DECODED_ITEMS, UNITS, TOKENS = range(6)
# Slots of the text timing vectors: batch call, per-document calls, one call on the joined batch.
BATCH_S, PER_DOC_S, ONE_CALL_S, DOCS, MB, ONE_CALL_MB = range(6)
# Slots of the per-process rate vector (summed over processes: the aggregate rate).
RATE_ITEMS, RATE_MB = range(2)


@contextmanager
def pinned_threads(n: int):
    """Pin zoo's text engines, ``tokenizers`` and torch to ``n`` threads inside the block."""
    saved = {key: os.environ.get(key) for key in ("ZOO_TEXT_THREADS", "TOKENIZERS_PARALLELISM")}
    torch_threads = torch.get_num_threads()
    os.environ["ZOO_TEXT_THREADS"] = str(n)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if n > 1 else "false"
    torch.set_num_threads(n)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(torch_threads)


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Throughput(Metric):
    """Encode / decode items per second (batch and per-document calls for text) and peak memory (MB)."""

    name: ClassVar[str] = "throughput"
    higher_is_better: ClassVar[bool | None] = None
    directions: ClassVar[dict[str, bool | None]] = {
        "encode_items_per_s": True,
        "encode_tokens_per_s": True,
        "decode_items_per_s": True,
        "encode_mb_per_s": True,
        "encode_per_doc_items_per_s": True,
        "encode_per_doc_mb_per_s": True,
        "encode_one_call_mb_per_s": True,
        "encode_batch_overhead_us": False,
        "encode_per_doc_overhead_us": False,
        "encode_items_per_s_total": True,
        "encode_mb_per_s_total": True,
        "encode_x_realtime": True,
        "decode_x_realtime": True,
        "encode_peak_mb": False,
        "decode_peak_mb": False,
        "threads": None,
        "processes": None,
    }

    def __init__(
        self, decode: bool = True, warmup_batches: int = 1, threads: int | None = None, repeats: int = 3
    ) -> None:
        super().__init__()
        for option, value in (("threads", threads), ("repeats", repeats)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ZooError(f"throughput: {option} must be an int >= 1, got {value!r}")
        self.decode, self.warmup_batches, self.threads, self.repeats = decode, warmup_batches, threads, repeats
        self.modality = "image"
        self.add_state("warm", torch.zeros(6, dtype=torch.float64))
        self.add_state("timed", torch.zeros(6, dtype=torch.float64))
        self.add_state("text_warm", torch.zeros(6, dtype=torch.float64))
        self.add_state("text_timed", torch.zeros(6, dtype=torch.float64))
        self.add_state("rate", torch.zeros(2, dtype=torch.float64))  # this process's rates, summed over processes
        self.add_state("thread_count", torch.zeros((), dtype=torch.float64))  # summed: processes x threads
        self.add_state("peak_mb", torch.zeros(2, dtype=torch.float64))  # this process's max, summed over processes
        self.add_state("processes", torch.zeros((), dtype=torch.float64))
        self.batches = 0

    def setup(self, tokenizer, data_key: str | None = None) -> None:
        self.modality = tokenizer.modality

    def reset(self) -> None:
        super().reset()
        self.batches = 0

    def _pin(self) -> int:
        """Threads the timed calls run on: ``threads``, else 1 for text, else torch's current count."""
        if self.threads is not None:
            return self.threads
        return 1 if self.modality == "text" else torch.get_num_threads()

    def update(self, ctx: EvalContext) -> None:
        self.modality = ctx.modality
        n = self._pin()
        with pinned_threads(n) if self.threads is not None or ctx.modality == "text" else _unpinned():
            _ = ctx.encoded  # runs (and times) the shared encode if no metric has yet
            text_row = self._text_row(ctx) if ctx.modality == "text" else None
        decodes = self.decode and getattr(ctx.tokenizer, "has_decoder", True)
        if decodes:
            _ = ctx.reconstruction
        encode, decode = ctx.measurements["encode"], ctx.measurements.get("decode") if decodes else None
        items = len(ctx.inputs)
        row = torch.zeros(6, dtype=torch.float64)
        row[ENCODE_S], row[ITEMS] = encode.seconds, items
        row[TOKENS] = self._tokens(ctx)
        if decode is not None:
            row[DECODE_S], row[DECODED_ITEMS] = decode.seconds, items
        row[UNITS] = self._units(ctx)
        warm = self.batches < self.warmup_batches
        if warm:
            self.warm = self.warm + row
        else:
            self.timed = self.timed + row
        if text_row is not None:
            if warm:
                self.text_warm = self.text_warm + text_row
            else:
                self.text_timed = self.text_timed + text_row
        self.batches += 1
        peaks = torch.tensor([encode.peak_bytes, decode.peak_bytes if decode else 0], dtype=torch.float64) / 2**20
        self.processes = torch.ones((), dtype=torch.float64)
        self.thread_count = torch.full((), float(n), dtype=torch.float64)
        self.peak_mb = torch.maximum(self.peak_mb, peaks)
        self.rate = self._own_rates()

    def _text_row(self, ctx: EvalContext) -> torch.Tensor:
        """Seconds of the batch call, the per-document calls and one call on the joined batch."""
        texts = list(ctx.inputs)
        tokenizer = ctx.tokenizer
        joined = "\n".join(texts)
        calls = [
            (BATCH_S, lambda: tokenizer.encode(texts)),
            (PER_DOC_S, lambda: [tokenizer.encode(t) for t in texts]),
            (ONE_CALL_S, lambda: tokenizer.encode(joined)),
        ]
        shift = self.batches % len(calls)
        row = torch.zeros(6, dtype=torch.float64)
        with torch.no_grad():
            for slot, call in calls[shift:] + calls[:shift]:
                row[slot] = min(_seconds(call) for _ in range(self.repeats))
        row[DOCS] = len(texts)
        row[MB] = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) / 1e6
        row[ONE_CALL_MB] = len(joined.encode("utf-8", "surrogatepass")) / 1e6
        return row

    def _own_rates(self) -> torch.Tensor:
        """This process's encode items/s and MB/s (units/s for audio) so far, timed batches first."""
        rates = torch.zeros(2, dtype=torch.float64)
        if self.modality == "text":
            use = self.text_timed if float(self.text_timed[DOCS]) > 0 else self.text_warm
            if float(use[BATCH_S]) > 0:
                rates[RATE_ITEMS], rates[RATE_MB] = use[DOCS] / use[BATCH_S], use[MB] / use[BATCH_S]
            return rates
        use = self.timed if float(self.timed[ITEMS]) > 0 else self.warm
        if float(use[ENCODE_S]) > 0:
            rates[RATE_ITEMS], rates[RATE_MB] = use[ITEMS] / use[ENCODE_S], use[UNITS] / use[ENCODE_S]
        return rates

    @staticmethod
    def _units(ctx: EvalContext) -> float:
        """UTF-8 megabytes for text, seconds of audio for audio, 0 for images."""
        if ctx.modality == "text":
            return sum(len(t.encode("utf-8", "surrogatepass")) for t in ctx.inputs) / 1e6
        if ctx.modality == "audio":
            lengths = ctx.batch.get("audio_lengths")
            samples = float(lengths.sum()) if lengths is not None else float(ctx.inputs.numel())
            return samples / float(ctx.tokenizer.sample_rate)
        return 0.0

    @staticmethod
    def _tokens(ctx: EvalContext) -> float:
        """Ids the encode call emitted: every id of an image grid or sequence (all levels), text ids, and audio ids
        up to each clip's frames (the ``-1`` padding past them is not a token)."""
        ids = ctx.ids
        if ctx.modality == "text":
            return float(sum(len(row) for row in ids))
        ids = torch.as_tensor(ids)
        return float((ids >= 0).sum()) if ctx.modality == "audio" else float(ids.numel())

    def compute(self) -> dict[str, float]:
        use = self.timed if float(self.timed[ITEMS]) > 0 else self.warm
        rate = lambda amount, seconds: float(amount / seconds) if float(seconds) > 0 else math.nan  # noqa: E731
        processes = max(float(self.processes), 1.0)
        result = {"encode_items_per_s": rate(use[ITEMS], use[ENCODE_S])}
        if self.modality != "text":  # text's tokens/s would mix the shared call with the metric's own timings
            result["encode_tokens_per_s"] = rate(use[TOKENS], use[ENCODE_S])
        if self.modality == "text" and float(self.text_timed[DOCS] + self.text_warm[DOCS]) > 0:
            text = self.text_timed if float(self.text_timed[DOCS]) > 0 else self.text_warm
            result["encode_items_per_s"] = rate(text[DOCS], text[BATCH_S])
            result["encode_mb_per_s"] = rate(text[MB], text[BATCH_S])
            result["encode_per_doc_items_per_s"] = rate(text[DOCS], text[PER_DOC_S])
            result["encode_per_doc_mb_per_s"] = rate(text[MB], text[PER_DOC_S])
            result["encode_one_call_mb_per_s"] = rate(text[ONE_CALL_MB], text[ONE_CALL_S])
            same_bytes = float(text[ONE_CALL_S]) * float(text[MB]) / max(float(text[ONE_CALL_MB]), 1e-12)
            per_doc = 1e6 / float(text[DOCS])
            result["encode_batch_overhead_us"] = (float(text[BATCH_S]) - same_bytes) * per_doc
            result["encode_per_doc_overhead_us"] = (float(text[PER_DOC_S]) - same_bytes) * per_doc
        if float(use[DECODED_ITEMS]) > 0:
            result["decode_items_per_s"] = rate(use[DECODED_ITEMS], use[DECODE_S])
        if float(use[UNITS]) > 0 and self.modality != "text":
            result["encode_x_realtime"] = rate(use[UNITS], use[ENCODE_S])
            if self.modality == "audio" and float(use[DECODED_ITEMS]) > 0:
                result["decode_x_realtime"] = rate(use[UNITS], use[DECODE_S])
        result["encode_items_per_s_total"] = float(self.rate[RATE_ITEMS])
        if self.modality == "text":
            result["encode_mb_per_s_total"] = float(self.rate[RATE_MB])
        result["threads"] = float(self.thread_count) / processes
        result["processes"] = processes
        result["encode_peak_mb"] = float(self.peak_mb[0]) / processes
        if "decode_items_per_s" in result:
            result["decode_peak_mb"] = float(self.peak_mb[1]) / processes
        return result


@contextmanager
def _unpinned():
    yield
