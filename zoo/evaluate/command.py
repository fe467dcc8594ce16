"""``zoo eval SUITE -t NAME... [--limit N] [--out DIR] [--device D] [--precision P]``: run a suite, print results.

``--device`` defaults to ``auto`` (CUDA when available, else CPU; under ``accelerate launch`` each process's
own device). ``--precision bf16`` / ``fp16`` autocasts the tokenizers' encode / decode; metrics stay float32.
Both are recorded in results.json (``run.device``, ``run.precision``).

Under ``accelerate launch -m zoo eval ...`` the items are sharded over the processes and metric
state is summed; the main process writes the outputs.

One run writes one ``--out`` folder at a time: the run holds ``OUT/.zoo-eval.lock`` (created with O_EXCL,
holding its pid and host) and a second run into the same folder is refused, naming the first one's pid, so
no run's results are silently replaced. A lock left by a run that died (its pid is gone on this host) is
taken over.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
from pathlib import Path

from zoo.errors import ZooError

LOCK_NAME = ".zoo-eval.lock"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", help="a suite YAML file, or a shipped suite's name (e.g. image-recon)")
    parser.add_argument(
        "-t",
        "--tokenizers",
        nargs="+",
        required=True,
        metavar="NAME",
        help="registry names (pretrained when the entry ships weights) or checkpoint folders",
    )
    parser.add_argument("--limit", type=int, help="evaluate at most N items (overrides the suite)")
    parser.add_argument("--batch-size", type=int, help="items per batch (overrides the suite)")
    parser.add_argument("--out", help="folder for results.json, results.md and report.html (default: runs/eval/SUITE)")
    parser.add_argument("--device", default="auto",
                        help="cpu, cuda, cuda:N, mps, or auto: CUDA when available (default: auto)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                        help="autocast dtype for encode / decode; metrics compute in fp32 (default: fp32)")
    parser.add_argument("--suite-set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="change the suite: data=imagefolder:/data/imagenet/val, limit=5000, "
                             "metrics.rfid.batch_size=100 (values read as YAML)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")


def _accelerator():
    """An Accelerator when launched with several processes (``accelerate launch``), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import Accelerator

    return Accelerator()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _read_lock(path: Path) -> dict | None:
    """The lock's owner, or None when the file is gone; an unreadable lock counts as held by nobody known."""
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


@contextlib.contextmanager
def out_folder_lock(out: Path):
    """Hold ``out/.zoo-eval.lock`` for the run: refuse a folder another live run holds, take over a dead one's."""
    if out.exists() and not out.is_dir():
        raise ZooError(f"--out {out}: is a file; expected a folder for results.json, results.md and report.html")
    out.mkdir(parents=True, exist_ok=True)
    lock = out / LOCK_NAME
    mine = {"pid": os.getpid(), "host": socket.gethostname()}
    text = json.dumps(mine)
    for _ in range(3):  # a stale lock is removed, then the O_EXCL create decides who runs
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner = _read_lock(lock)
            if owner is None:
                continue
            pid, host = owner.get("pid"), owner.get("host")
            stale = isinstance(pid, int) and host == mine["host"] and not _pid_alive(pid)
            if not stale:
                who = f"pid {pid} on {host}" if isinstance(pid, int) else "a run whose lock cannot be read"
                raise ZooError(
                    f"--out {out}: another zoo eval ({who}) is writing this folder; wait for it, use "
                    f"another --out, or delete {lock} if no such run is alive"
                ) from None
            if _read_lock(lock) == owner:  # still the dead run's lock (not one a rival just took over)
                lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        break
    else:
        raise ZooError(f"--out {out}: could not take {lock}; another zoo eval keeps taking it")
    try:
        yield lock
    finally:
        if _read_lock(lock) == mine:
            lock.unlink(missing_ok=True)


def apply_suite_settings(suite, settings: list[str]):
    """The suite with ``KEY=VALUE`` settings applied: a top-level key (``data``, ``limit``, ...) or one metric's
    option (``metrics.NAME.OPTION``); values are YAML (``limit=500`` is a number). Checked like the file."""
    import yaml

    from zoo.evaluate import parse_suite

    if not settings:
        return suite
    raw = suite.as_dict()
    path = raw.pop("path")
    raw["metrics"] = [dict(m) for m in raw["metrics"]]
    for setting in settings:
        key, eq, text = setting.partition("=")
        if not eq or not key:
            raise ZooError(f"--suite-set {setting!r}: expected KEY=VALUE, e.g. data=imagefolder:/data/val")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            value = text
        parts = key.split(".")
        if len(parts) == 1:
            raw[key] = value
        elif len(parts) == 3 and parts[0] == "metrics":
            metric = next((m for m in raw["metrics"] if m["name"] == parts[1]), None)
            if metric is None:
                names = ", ".join(m["name"] for m in raw["metrics"])
                raise ZooError(f"--suite-set {setting!r}: the suite has no metric {parts[1]!r} (it has {names})")
            metric[parts[2]] = value
        else:
            raise ZooError(f"--suite-set {setting!r}: KEY is a suite key (data, limit, ...) or metrics.NAME.OPTION")
    changed = parse_suite(raw, where=f"{path or suite.name} (with --suite-set {' '.join(settings)})")
    changed.path = path
    return changed


def run(args: argparse.Namespace) -> int:
    from zoo.evaluate import load_suite, run_suite
    from zoo.evaluate.report import json_safe, markdown_table

    suite = apply_suite_settings(load_suite(args.suite), getattr(args, "suite_set", []))
    out = Path(args.out) if args.out else Path("runs") / "eval" / suite.name
    accelerator = _accelerator()
    # Only the process that writes the outputs holds the lock; its helpers under accelerate write nothing.
    main_process = accelerator is None or accelerator.is_main_process
    with out_folder_lock(out) if main_process else contextlib.nullcontext():
        results = run_suite(
            suite,
            args.tokenizers,
            limit=args.limit,
            out_dir=out,
            accelerator=accelerator,
            batch_size=args.batch_size,
            progress=not args.no_progress,
            device=getattr(args, "device", "auto"),
            precision=getattr(args, "precision", "fp32"),
        )
    if accelerator is not None and not accelerator.is_main_process:
        return 0
    if args.json:
        print(json.dumps(json_safe(results), ensure_ascii=False))
        return 0
    print(markdown_table(results), end="")
    for label, notes in results.get("notes", {}).items():
        for note in notes:
            print(f"  {label}: {note}")
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'report.html'}")
    return 0
