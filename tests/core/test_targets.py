"""Data files name classes, never code: a target outside zoo (or a zoo function) is refused before it is imported.

Each attack writes a marker file if its code runs; every test checks the marker is absent.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

import zoo
from zoo.cli import main
from zoo.errors import ZooError
from zoo.pretrained import Pretrained
from zoo.targets import TRUSTED_MODULES_ENV, allow_modules, disallow_modules, resolve_class


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """A module ``plantedmod`` on sys.path that writes MARKER when imported and defines a working tokenizer."""
    marker = tmp_path / "MARKER"
    (tmp_path / "plantedmod.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        Path({str(marker)!r}).write_text("imported")
        from zoo.text.byte import ByteTokenizer

        class Planted(ByteTokenizer):
            pass
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "plantedmod", raising=False)
    yield marker
    sys.modules.pop("plantedmod", None)


def _folder(tmp_path: Path, target: str, config: dict | None = None, modality: str = "text") -> Path:
    folder = tmp_path / "downloaded"
    folder.mkdir(exist_ok=True)
    record = {"target": target, "modality": modality, "config": config or {}, "zoo_version": "0.1.0"}
    (folder / "config.json").write_text(json.dumps(record))
    return folder


@pytest.mark.parametrize("target", ["os:system", "plantedmod:Planted", "subprocess:Popen", "builtins:eval"])
def test_a_checkpoint_naming_code_outside_zoo_is_refused_before_import(tmp_path, planted, target):
    folder = _folder(tmp_path, target, {"command": f"touch {planted}"})
    with pytest.raises(ZooError, match=r"config.json: target .* is outside the zoo package.*trust_remote_code"):
        zoo.load(folder)
    assert not planted.exists() and "plantedmod" not in sys.modules


def test_a_zoo_function_is_not_a_family(tmp_path):
    victim = tmp_path / "victim.txt"
    folder = _folder(tmp_path, "zoo.pretrained:atomic_write_text", {"path": str(victim), "text": "owned"})
    with pytest.raises(ZooError, match="is not a Pretrained class; a data file may name only zoo families"):
        zoo.load(folder)
    assert not victim.exists()


def test_a_nested_module_spec_is_checked_too(tmp_path, planted):
    encoder = {"kind": "module", "target": "os:system", "config": {"command": f"touch {planted}"}, "dim": 8}
    config = {"semantic_encoder": encoder, "teacher": None}
    folder = _folder(tmp_path, "zoo.image.tokenflow.model:TokenFlowTokenizer", config, "image")
    with pytest.raises(ZooError, match="outside the zoo package"):
        zoo.load(folder)
    assert not planted.exists()


def test_the_cli_refuses_in_one_line(tmp_path, planted, capsys):
    folder = _folder(tmp_path, "plantedmod:Planted")
    assert main(["encode", str(folder), "hello"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "outside the zoo package" in err and "Traceback" not in err
    assert not planted.exists()


def test_trusted_code_loads_when_the_caller_says_so(tmp_path, planted, monkeypatch):
    folder = _folder(tmp_path, "plantedmod:Planted")
    assert zoo.load(folder, trust_remote_code=True).decode([104, 105]) == "hi"
    assert planted.exists()
    monkeypatch.setenv(TRUSTED_MODULES_ENV, "othermod,plantedmod")
    assert type(zoo.load(folder)).__name__ == "Planted"


def test_allow_modules_is_explicit_and_reversible(planted):
    with pytest.raises(ZooError, match="outside the zoo package"):
        resolve_class("plantedmod:Planted", base=Pretrained)
    allow_modules("plantedmod")
    try:
        assert resolve_class("plantedmod:Planted", base=Pretrained).__name__ == "Planted"
    finally:
        disallow_modules("plantedmod")
    with pytest.raises(ZooError, match="expected package names"):
        allow_modules("")


def test_a_catalog_target_needs_trust(tmp_path, planted):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("tokenizers:\n  planted-bytes:\n    target: plantedmod:Planted\n    modality: text\n"
                       "    summary: a user family\n    needs_training: false\n")
    registry = zoo.registry.Registry()
    registry.add(catalog)
    from zoo.loading import build_entry

    with pytest.raises(ZooError, match="catalog.yaml: entry 'planted-bytes': target 'plantedmod:Planted' is outside"):
        build_entry(registry.get("planted-bytes"))
    assert not planted.exists()
    trusted = zoo.registry.Registry()
    trusted.add(catalog, trust_remote_code=True)
    assert type(build_entry(trusted.get("planted-bytes"))).__name__ == "Planted"


@pytest.mark.parametrize("target", ["os:system", "zoo.pretrained:atomic_write_text"])
def test_a_recipe_target_is_checked(tmp_path, target):
    from zoo.train.schema import ModelSpec
    from zoo.train.trainer import build_model

    with pytest.raises(ZooError, match="recipe model: target"):
        build_model(ModelSpec(target=target, config={"command": "true"}))


@pytest.mark.parametrize("bad", ["nocolon", ":X", "os:", "..evil:X", 3])
def test_malformed_targets_name_themselves(bad):
    with pytest.raises(ZooError, match="target"):
        resolve_class(bad, base=Pretrained)
