"""save_pretrained / from_pretrained: recorded configs, strict weights, atomic files, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import zoo
from zoo.errors import ZooError
from zoo.pretrained import PretrainedModule, atomic_write_text
from zoo.targets import import_target
from zoo.tokenizer import check_audio, check_ids, check_images


class TinyNet(PretrainedModule):
    modality = "image"

    def __init__(self, width: int = 4, name: str = "tiny", **extra):
        super().__init__()
        self.proj = torch.nn.Linear(width, width)


class WiderNet(TinyNet):
    def __init__(self, depth: int = 2):
        super().__init__(width=8)


def test_config_records_outermost_constructor_arguments():
    assert TinyNet(6, flavour="x").config == {"width": 6, "name": "tiny", "flavour": "x"}
    assert WiderNet().config == {"depth": 2}


def test_round_trip_restores_weights_exactly(tmp_path):
    net = TinyNet(width=5)
    net.save_pretrained(tmp_path, metadata={"recipe": "r.yaml"})
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["target"] == f"{__name__}:TinyNet" and record["config"]["width"] == 5
    assert record["zoo_version"] == zoo.__version__ and record["metadata"] == {"recipe": "r.yaml"}
    loaded = zoo.load(tmp_path)
    assert torch.equal(loaded.proj.weight, net.proj.weight)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_strict_loading_rejects_missing_unexpected_and_misshapen(tmp_path):
    net = TinyNet()
    save_file({"proj.weight": torch.zeros(4, 4)}, str(tmp_path / "missing.safetensors"))
    with pytest.raises(ZooError, match=r"missing keys \['proj.bias'\]"):
        net.load_weights(tmp_path / "missing.safetensors")
    state = {k: v.clone() for k, v in net.state_dict().items()} | {"extra": torch.zeros(1)}
    save_file(state, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ZooError, match=r"unexpected keys \['extra'\]"):
        net.load_weights(tmp_path / "extra.safetensors")
    save_file({"proj.weight": torch.zeros(3, 3), "proj.bias": torch.zeros(3)}, str(tmp_path / "shape.safetensors"))
    with pytest.raises(ZooError, match="do not fit TinyNet"):
        net.load_weights(tmp_path / "shape.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ZooError, match="not a valid safetensors"):
        net.load_weights(tmp_path / "junk.safetensors")


def test_folder_errors(tmp_path):
    with pytest.raises(ZooError, match="config.json is missing"):
        TinyNet.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(ZooError, match="not valid JSON"):
        zoo.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"target": "x:Y", "modality": "image"}))
    with pytest.raises(ZooError, match="key 'config' must be a dict"):
        zoo.load(tmp_path)
    TinyNet().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ZooError, match="missing model.safetensors"):
        zoo.load(tmp_path)
    with pytest.raises(ZooError, match="no such checkpoint folder"):
        zoo.load(tmp_path / "nowhere")


def test_unserialisable_config_is_refused(tmp_path):
    with pytest.raises(ZooError, match="JSON-serialisable"):
        TinyNet(name=object()).save_pretrained(tmp_path)
    assert not (tmp_path / "config.json").exists()


def test_import_target_errors():
    with pytest.raises(ZooError, match="not of the form"):
        import_target("zoo.text.byte.ByteTokenizer")
    with pytest.raises(ZooError, match="cannot import module"):
        import_target("zoo.nowhere:X")
    with pytest.raises(ZooError, match="has no attribute 'Nope'"):
        import_target("zoo.text.byte:Nope")


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")

    def explode(*args):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", explode)
    with pytest.raises(OSError):
        atomic_write_text(path, "new")
    assert path.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_input_checks_name_the_problem():
    with pytest.raises(ZooError, match=r"expected shape \[B, 3, H, W\], got \[3, 8, 8\]"):
        check_images(torch.rand(3, 8, 8))
    with pytest.raises(ZooError, match="values must lie in"):
        check_images(torch.rand(1, 3, 4, 4) * 255)
    with pytest.raises(ZooError, match="dtype torch.uint8"):
        check_images(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ZooError, match=r"expected shape \[B, T\]"):
        check_audio(torch.zeros(16000))
    with pytest.raises(ZooError, match="lengths must be"):
        check_audio(torch.zeros(2, 10), lengths=[10, 11])
    with pytest.raises(ZooError, match=r"ids must lie in \[0, 8\)"):
        check_ids(torch.tensor([1, 8]), 8)


def test_saved_folders_record_and_verify_a_sha256_per_file(tmp_path):
    folder = TinyNet().save_pretrained(tmp_path / "net")
    record = json.loads((folder / "config.json").read_text())
    from zoo.hub import sha256_of

    assert record["files"] == {"model.safetensors": sha256_of(folder / "model.safetensors")}
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 1  # one flipped bit in the last tensor's bytes
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ZooError, match=r"model.safetensors: sha256 is [0-9a-f]{64}, config.json records"):
        zoo.load(folder)
    zoo.load(folder, verify=False)  # the caller's explicit choice


def test_weights_of_another_dtype_or_with_nan_are_refused(tmp_path):
    from safetensors.torch import save_file

    net = TinyNet()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    name = next(iter(state))
    save_file({**state, name: state[name].double()}, str(tmp_path / "f64.safetensors"))
    with pytest.raises(ZooError, match=rf"tensor '{name}' is torch.float64, TinyNet holds torch.float32"):
        net.load_weights(tmp_path / "f64.safetensors")
    bad = state[name].clone()
    bad.view(-1)[0] = float("nan")
    save_file({**state, name: bad}, str(tmp_path / "nan.safetensors"))
    with pytest.raises(ZooError, match=rf"tensor '{name}' holds 1 NaN/Inf value"):
        net.load_weights(tmp_path / "nan.safetensors")


def test_an_unknown_config_key_names_the_accepted_ones(tmp_path):
    folder = zoo.load("byte").save_pretrained(tmp_path / "byte")
    record = json.loads((folder / "config.json").read_text())
    record["config"]["bogus"] = 1
    (folder / "config.json").write_text(json.dumps(record))
    with pytest.raises(ZooError, match=r"ByteTokenizer takes no argument\(s\) \['bogus'\]; it takes \["):
        zoo.load(folder)
    with pytest.raises(ZooError, match=r"entry 'vq-f8': VQTokenizer takes no argument\(s\) \['bogus'\]"):
        zoo.load("vq-f8", bogus=1)
