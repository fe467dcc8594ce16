"""A non-editable install carries the catalog, recipes, suites and weights, and works from any directory."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import zoo

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("hatchling", reason="building the wheel offline needs hatchling (the dev extra)")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT), "-w", str(out)],
        check=True,
        capture_output=True,
    )
    return next(out.glob("zoo-*.whl"))


def test_wheel_carries_registry_recipes_suites_and_weights(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"zoo/_data/registry/{p.name}" for p in (ROOT / "registry").glob("*.yaml")} <= names
    for name in zoo.list_tokenizers():
        entry = zoo.registry.get(name)
        if entry.weights and "://" not in entry.weights["path"]:
            assert f"zoo/_data/{entry.weights['path']}" in names
        if entry.recipe:
            assert f"zoo/_data/{entry.recipe}" in names


def test_installed_wheel_works_from_another_directory(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = "import zoo; print(zoo.__file__); print(zoo.load('byte').decode(zoo.load('byte').encode('ok')))"
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    location, text = out.stdout.split()
    assert location.startswith(str(target)) and text == "ok"
