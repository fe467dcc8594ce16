"""Wall time and peak memory of one call, for throughput metrics.

On CUDA, peak memory is ``torch.cuda.max_memory_allocated`` above what was allocated before the
call. On CPU, a sampling thread reads the process's resident set size (``/proc/self/statm``)
every millisecond and reports the peak growth above the size at the start: a lower bound, since
memory the allocator already held and reuses does not show as growth.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass
class Measurement:
    seconds: float
    peak_bytes: int


def resident_bytes() -> int | None:
    """The process's resident set size in bytes, or None where ``/proc`` is unavailable."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


class _RssSampler(threading.Thread):
    def __init__(self, interval: float = 0.001):
        super().__init__(daemon=True)
        self.interval, self.stop_event, self.sampling = interval, threading.Event(), threading.Event()
        self.start_bytes = resident_bytes() or 0
        self.peak = self.start_bytes

    def start(self) -> None:
        # Return only once the thread samples, so a short call is not over before sampling begins.
        super().start()
        self.sampling.wait()

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.peak = max(self.peak, resident_bytes() or 0)
            self.sampling.set()
            self.stop_event.wait(self.interval)

    def finish(self) -> int:
        self.stop_event.set()
        self.join()
        self.peak = max(self.peak, resident_bytes() or 0)
        return max(0, self.peak - self.start_bytes)


def measure_call(fn: Callable[[], Any], device: torch.device | str | None = None) -> tuple[Any, Measurement]:
    """Run ``fn()`` and return its result with the wall time and peak memory growth it took."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        start = time.perf_counter()
        result = fn()
        torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        return result, Measurement(seconds, max(0, torch.cuda.max_memory_allocated(device) - before))
    sampler = _RssSampler() if resident_bytes() is not None else None
    if sampler is not None:
        sampler.start()
    start = time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = time.perf_counter() - start
        peak = sampler.finish() if sampler is not None else 0
    return result, Measurement(seconds, peak)
