"""The layout's rules hold: layers only import downward, nothing below the face imports it, old class paths load."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import zoo
from zoo.pretrained import Pretrained
from zoo.targets import ALIASES, canonical_target, resolve_class

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "zoo"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "old_layout"
FACE = {PACKAGE / "__init__.py", PACKAGE / "cli.py", PACKAGE / "__main__.py"}


def test_import_layers_hold():
    """pyproject.toml's import-linter contract: face -> verbs -> ... -> ground floor, lazy imports included."""
    command = shutil.which("lint-imports")
    if command is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]' installs it)")
    done = subprocess.run([command], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def _imports_of_the_face(path: Path) -> list[str]:
    """``import zoo`` and ``from zoo import NAME`` where NAME is not a submodule: reaching up to the face."""
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    submodules = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if p.is_dir()}
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import) and any(alias.name == "zoo" for alias in node.names):
            found.append(f"{where}:{node.lineno}: import zoo")
        elif isinstance(node, ast.ImportFrom) and node.module == "zoo" and node.level == 0:
            found += [f"{where}:{node.lineno}: from zoo import {alias.name}"
                      for alias in node.names if alias.name not in submodules]
    return found


def test_nothing_below_the_face_imports_it():
    modules = [path for path in sorted(PACKAGE.rglob("*.py")) if path not in FACE]
    offenders = [hit for path in modules for hit in _imports_of_the_face(path)]
    assert offenders == []


def test_the_face_check_sees_an_upward_import(tmp_path):
    planted = tmp_path / "module.py"
    planted.write_text("def f():\n    import zoo\n    from zoo import load, registry\n")
    hits = [hit.split(": ", 1)[1] for hit in _imports_of_the_face(planted)]
    assert hits == ["import zoo", "from zoo import load"]  # 'registry' is a submodule, 'load' is the face's


@pytest.mark.parametrize("old", sorted(ALIASES))
def test_every_old_class_path_resolves_to_its_new_home(old):
    new = canonical_target(old)
    blocks = (Pretrained, torch.nn.Module)  # families and the building blocks nested specs name
    assert new != old and resolve_class(old, base=blocks) is resolve_class(new, base=blocks)


def test_shipped_files_name_current_class_paths():
    """The catalog and recipes are written with today's paths; the alias table serves only old saved folders."""
    texts = [p.read_text() for folder in ("registry", "recipes") for p in (ROOT / folder).rglob("*.yaml")]
    assert not [old for old in ALIASES if any(old in text for text in texts)]


@pytest.mark.parametrize("name", ["vq", "gpt", "beats-ssl", "beats-random"])
def test_a_folder_saved_under_the_old_layout_loads(name):
    """Folders in tests/fixtures/old_layout were written by zoo before the move (commit d8b3624)."""
    folder = FIXTURES / name
    record = json.loads((folder / "config.json").read_text())
    assert record["target"] in ALIASES  # it really names an old path
    model = zoo.load(folder)
    assert f"{type(model).__module__}:{type(model).__qualname__}" == ALIASES[record["target"]]
    weights = folder / "model.safetensors"
    if weights.is_file():
        from safetensors.torch import load_file

        saved = load_file(str(weights))
        state = model.state_dict()
        # (tied tensors are saved once, so the file may hold fewer names than the state)
        assert saved and all(torch.equal(saved[k], state[k]) for k in saved)


def test_old_folders_give_the_ids_the_old_code_gave():
    reference = json.loads((FIXTURES / "reference.json").read_text())
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    audio = torch.rand(1, 16000, generator=torch.Generator().manual_seed(0)) * 0.2 - 0.1
    with torch.no_grad():
        assert zoo.load(FIXTURES / "vq").encode(images).tolist() == reference["vq"]
        assert zoo.load(FIXTURES / "beats-random").encode(audio).ids.tolist() == reference["beats-random"]
