"""One ``zoo eval`` per ``--out`` folder: a live run's lock refuses a second run, a dead run's lock is taken over,
and the lock goes when the run ends (also when it fails)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from zoo.errors import ZooError
from zoo.evaluate.command import LOCK_NAME, out_folder_lock


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid  # reaped: no process has this pid now (pids are not reused this fast)


def test_the_lock_is_held_during_the_run_and_removed_after(tmp_path):
    out = tmp_path / "out"
    with out_folder_lock(out) as lock:
        assert lock == out / LOCK_NAME
        assert json.loads(lock.read_text()) == {"pid": os.getpid(), "host": socket.gethostname()}
        with pytest.raises(ZooError, match=rf"another zoo eval \(pid {os.getpid()} on .*\) is writing this folder"):
            with out_folder_lock(out):
                pass
    assert not (out / LOCK_NAME).exists()


def test_the_lock_goes_when_the_run_fails(tmp_path):
    with pytest.raises(RuntimeError), out_folder_lock(tmp_path / "out"):
        raise RuntimeError("the suite failed")
    assert not (tmp_path / "out" / LOCK_NAME).exists()


def test_a_dead_runs_lock_is_taken_over(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    with out_folder_lock(out) as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_a_lock_from_another_host_or_unreadable_is_never_taken(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": "elsewhere"}))
    with pytest.raises(ZooError, match="on elsewhere"):
        with out_folder_lock(out):
            pass
    (out / LOCK_NAME).write_text("{not json")
    with pytest.raises(ZooError, match="a run whose lock cannot be read"):
        with out_folder_lock(out):
            pass
    assert (out / LOCK_NAME).read_text() == "{not json"  # another's lock is left as it was


def test_a_run_that_lost_its_lock_does_not_delete_the_new_owners(tmp_path):
    out = tmp_path / "out"
    with out_folder_lock(out) as lock:
        lock.write_text(json.dumps({"pid": 1, "host": socket.gethostname()}))  # someone else's now
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == 1
