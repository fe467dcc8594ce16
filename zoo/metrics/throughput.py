"""Encode and decode speed (items/s) and peak memory of any tokenizer.

Times come from the suite's shared ``encode`` / ``decode`` calls (``EvalContext.measurements``), so
measuring adds no extra work. The first batch of each process warms up caches and lazy
initialisation and is left out whenever later batches exist. Across processes, seconds and items
add up (the result is the speed of one process) and peak memory is averaged. Text also reports
MB/s of UTF-8 input, audio the real-time factor (seconds of audio encoded per second).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from zoo.metrics.base import EvalContext, Metric

# Slots of the timing vectors.
ENCODE_S, DECODE_S, ITEMS, DECODED_ITEMS, UNITS = range(5)


class Throughput(Metric):
    """Encode / decode items per second and peak memory growth (MB) during each call."""

    name: ClassVar[str] = "throughput"
    higher_is_better: ClassVar[bool | None] = None
    directions: ClassVar[dict[str, bool | None]] = {
        "encode_items_per_s": True,
        "decode_items_per_s": True,
        "encode_mb_per_s": True,
        "encode_x_realtime": True,
        "decode_x_realtime": True,
        "encode_peak_mb": False,
        "decode_peak_mb": False,
    }

    def __init__(self, decode: bool = True, warmup_batches: int = 1) -> None:
        super().__init__()
        self.decode, self.warmup_batches = decode, warmup_batches
        self.modality = "image"
        self.add_state("warm", torch.zeros(5, dtype=torch.float64))
        self.add_state("timed", torch.zeros(5, dtype=torch.float64))
        self.add_state("peak_mb", torch.zeros(2, dtype=torch.float64))  # this process's max, summed over processes
        self.add_state("processes", torch.zeros((), dtype=torch.float64))
        self.batches = 0

    def setup(self, tokenizer, data_key: str | None = None) -> None:
        self.modality = tokenizer.modality

    def reset(self) -> None:
        super().reset()
        self.batches = 0

    def update(self, ctx: EvalContext) -> None:
        _ = ctx.encoded  # runs (and times) the shared encode if no metric has yet
        decodes = self.decode and getattr(ctx.tokenizer, "has_decoder", True)
        if decodes:
            _ = ctx.reconstruction
        encode, decode = ctx.measurements["encode"], ctx.measurements.get("decode") if decodes else None
        items = len(ctx.inputs)
        row = torch.zeros(5, dtype=torch.float64)
        row[ENCODE_S], row[ITEMS] = encode.seconds, items
        if decode is not None:
            row[DECODE_S], row[DECODED_ITEMS] = decode.seconds, items
        row[UNITS] = self._units(ctx)
        if self.batches < self.warmup_batches:
            self.warm = self.warm + row
        else:
            self.timed = self.timed + row
        self.batches += 1
        peaks = torch.tensor([encode.peak_bytes, decode.peak_bytes if decode else 0], dtype=torch.float64) / 2**20
        self.processes = torch.ones((), dtype=torch.float64)
        self.peak_mb = torch.maximum(self.peak_mb, peaks)

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

    def compute(self) -> dict[str, float]:
        use = self.timed if float(self.timed[ITEMS]) > 0 else self.warm
        rate = lambda amount, seconds: float(amount / seconds) if float(seconds) > 0 else math.nan  # noqa: E731
        result = {"encode_items_per_s": rate(use[ITEMS], use[ENCODE_S])}
        if float(use[DECODED_ITEMS]) > 0:
            result["decode_items_per_s"] = rate(use[DECODED_ITEMS], use[DECODE_S])
        if float(use[UNITS]) > 0:
            key = "encode_mb_per_s" if self.modality == "text" else "encode_x_realtime"
            result[key] = rate(use[UNITS], use[ENCODE_S])
            if self.modality == "audio" and float(use[DECODED_ITEMS]) > 0:
                result["decode_x_realtime"] = rate(use[UNITS], use[DECODE_S])
        processes = max(float(self.processes), 1.0)
        result["encode_peak_mb"] = float(self.peak_mb[0]) / processes
        if "decode_items_per_s" in result:
            result["decode_peak_mb"] = float(self.peak_mb[1]) / processes
        return result
