"""Where a run's numbers go: ``log.jsonl`` (one JSON object a line) and TensorBoard when it is installed.

Only the main process writes; ``MetricWindow`` averages the numbers over steps and processes first.
The log is appended to, so a resumed run continues the same file (its ``resume`` record marks where).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from accelerate import Accelerator


class RunLog:
    def __init__(self, folder: Path, enabled: bool, tensorboard: bool = True):
        self.enabled = enabled
        self.path = folder / "log.jsonl"
        self._writer = None
        if not enabled:
            return
        folder.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                pass
            else:
                self._writer = SummaryWriter(log_dir=str(folder / "tensorboard"))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), **record}
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        if self._writer is not None and "step" in record:
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("step", "time"):
                    if math.isfinite(value):
                        self._writer.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            if self._writer is not None:
                self._writer.close()


def read_log(path: str | Path) -> list[dict]:
    """The records of a ``log.jsonl`` (a line cut short by a killed run is skipped)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class MetricWindow:
    """Sums of logged values since the last log line, kept on the device (no sync per step)."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict) -> None:
        for key, value in values.items():
            value = torch.as_tensor(value).detach().float().mean()
            self.sums[key] = self.sums.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def mean(self, accelerator: Accelerator) -> dict[str, float]:
        """Means over the window and over processes (every process holds the same keys: same steps)."""
        if not self.sums:
            return {}
        keys = sorted(self.sums)
        local = torch.stack([self.sums[k].to(accelerator.device) / self.counts[k] for k in keys])
        reduced = accelerator.reduce(local, reduction="mean")
        return {k: float(v) for k, v in zip(keys, reduced.tolist())}
