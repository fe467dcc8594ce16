"""Where a run's numbers go: ``log.jsonl`` (one JSON object a line) and TensorBoard when it is installed.

Only the main process writes; the trainer reduces metrics across processes before they get here.
The log is appended to, so a resumed run continues the same file (its ``resume`` record marks where).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path


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
