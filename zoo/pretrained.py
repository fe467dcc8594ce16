"""Saving and loading anything zoo builds: a recorded config plus one weights file.

A folder written by ``save_pretrained`` holds ``config.json``::

    {"target": "zoo.text.byte:ByteTokenizer", "modality": "text", "config": {...},
     "zoo_version": "0.1.0", "metadata": {...}}

and the object's weights file (``model.safetensors`` for networks, ``tokenizer.json`` for text).
Constructor arguments are recorded automatically (as Hugging Face's hub mixin does), so every
class rebuilds with ``cls(**config)``. Loading is strict and never unpickles.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import json
import os
import pickle
import tempfile
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.targets import resolve_class

CONFIG_NAME = "config.json"
# A training run's layout: OUTPUT/final is the exported folder, OUTPUT/checkpoints/stepNNNNNNNN the resumable states.
FINAL = "final"
CHECKPOINTS = "checkpoints"
STEP_PREFIX = "step"
# Whether the weights being loaded may be cast to the network's dtypes: off unless a caller asks, and read by
# ``check_tensors`` however deep a family's ``_load_weights`` calls it (so no override changes signature).
_DTYPE_CAST: ContextVar[bool] = ContextVar("zoo_dtype_cast", default=False)


def target_of(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` is either the old file or the complete new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files private; outputs are meant to be shared like any written file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _check_json_serialisable(config: dict, owner: str) -> None:
    try:
        json.dumps(config)
    except TypeError as err:
        raise ZooError(f"{owner}: constructor arguments must be JSON-serialisable to save; {err}") from None


def _as_json_values(config: dict) -> dict:
    """The config as it will read back from config.json (tuples become lists), so a saved and reloaded
    object compares equal; values JSON cannot hold are kept and refused when saving."""
    try:
        return json.loads(json.dumps(config))
    except (TypeError, ValueError):
        return config


class Pretrained:
    """Mixin: records constructor arguments as ``config`` and saves / loads ``config.json`` + weights.

    Subclasses set ``modality`` and ``weights_name`` and implement ``_save_weights`` /
    ``_load_weights``. Set ``requires_weights = False`` for objects fully defined by their config
    (bytes, a seeded random projection).
    """

    modality: ClassVar[str] = ""
    weights_name: ClassVar[str] = "model.safetensors"
    requires_weights: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args, **kw):
            # Only the outermost constructor records: a subclass calling super().__init__ keeps its own arguments.
            outermost = "_zoo_config" not in self.__dict__
            if outermost:
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                config = {}
                for name, value in list(bound.arguments.items())[1:]:
                    kind = signature.parameters[name].kind
                    if kind is inspect.Parameter.VAR_KEYWORD:
                        config.update(value)
                    elif kind is inspect.Parameter.VAR_POSITIONAL:
                        if value:
                            raise ZooError(f"{cls.__name__}: positional *args cannot be recorded in a config")
                    else:
                        config[name] = value
                object.__setattr__(self, "_zoo_config", _as_json_values(config))
            init(self, *args, **kw)

        cls.__init__ = recording_init

    @property
    def config(self) -> dict:
        """The constructor arguments (JSON-serialisable) that rebuild this object."""
        return copy.deepcopy(self.__dict__.get("_zoo_config", {}))

    # -- weights, per kind ------------------------------------------------------------------------
    def _save_weights(self, path: Path) -> None:
        raise ZooError(f"{type(self).__name__} has no weights to save")

    def _load_weights(self, path: Path) -> None:
        raise ZooError(f"{type(self).__name__} has no weights to load")

    def load_weights(self, path: str | Path, dtype_cast: bool = False) -> None:
        """Load this object's weights file (strict: every expected tensor, nothing extra).

        ``dtype_cast``: cast tensors stored in another dtype (float16, float64) to the network's instead of
        refusing them."""
        path = Path(path)
        if not path.is_file():
            raise ZooError(f"weights file {path} does not exist")
        with _dtype_cast(dtype_cast):
            self._load_weights(path)

    # -- folders ----------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, metadata: dict | None = None) -> Path:
        """Write ``config.json`` and the weights file; ``config.json`` is written last, so its presence
        marks a complete folder."""
        from zoo._version import __version__

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.config
        _check_json_serialisable(config, type(self).__name__)
        if self.requires_weights or self._has_weights():
            fd, tmp = tempfile.mkstemp(prefix=f".{self.weights_name}.", suffix=".tmp", dir=directory)
            os.close(fd)
            try:
                self._save_weights(Path(tmp))
                os.chmod(tmp, 0o644)
                os.replace(tmp, directory / self.weights_name)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        from zoo.hub import sha256_of

        weights = directory / self.weights_name
        record = {
            "target": target_of(type(self)),
            "modality": self.modality,
            "config": config,
            "zoo_version": __version__,
            "metadata": metadata or {},
            # what zoo.load verifies: a changed byte in a downloaded folder is refused, not used
            "files": {self.weights_name: sha256_of(weights)} if weights.is_file() else {},
        }
        atomic_write_text(directory / CONFIG_NAME, json.dumps(record, indent=2, sort_keys=True) + "\n")
        return directory

    def _has_weights(self) -> bool:
        return False

    @classmethod
    def from_pretrained(cls, directory: str | Path, trust_remote_code: bool = False, verify: bool = True,
                        dtype_cast: bool = False, **overrides):
        """Rebuild from a ``save_pretrained`` folder; ``overrides`` replace recorded config values.

        ``verify``: check every file against the sha256 that ``config.json`` records (folders written before
        zoo recorded them have none to check). ``dtype_cast``: cast weights of another dtype instead of refusing."""
        record = read_config(directory)
        where = f"{directory}/{CONFIG_NAME}"
        target_cls = resolve_class(record["target"], base=Pretrained, where=where, trust_remote_code=trust_remote_code)
        if not issubclass(target_cls, cls):
            raise ZooError(f"{directory}: config.json names {record['target']}, which is not a {cls.__name__}")
        if verify:
            verify_files(directory, record)
        obj = build_checked(target_cls, {**record["config"], **overrides}, where)
        weights = Path(directory) / target_cls.weights_name
        if weights.is_file():
            obj.load_weights(weights, dtype_cast=dtype_cast)
        elif obj.requires_weights:
            raise ZooError(f"{directory}: missing {target_cls.weights_name} next to config.json")
        obj._zoo_metadata = record.get("metadata", {})
        return obj


# Files torch.save writes (pickles); zoo reads them with weights_only=True only, never on a load path by default.
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
# Where training checkpoints nest their state dict, tried in this order.
NESTED_STATE_KEYS = ("ema", "model", "state_dict")


def _refusal_reason(err: Exception) -> str:
    """What torch refused, for the message: its ``Unsupported global: GLOBAL module.Name`` line names the object the
    pickle would build, which says more than the generic first line."""
    lines = str(err).splitlines()
    named = [line.strip() for line in lines if "Unsupported global" in line]
    return (named or lines or [type(err).__name__])[0].split(" Please use")[0][:300]


def read_weights_only(path: str | Path, allowed_classes: tuple[type, ...] = ()) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file or of a pickle read with ``torch.load(weights_only=True)`` (tensors and
    plain containers, never code; ``allowed_classes`` admits plain attribute bags such as ``argparse.Namespace``),
    un-nested from ``ema`` / ``model`` / ``state_dict``. A pickle that needs a full unpickle is refused."""
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix not in PICKLE_SUFFIXES:
        raise ZooError(f"{path}: expected a .safetensors or a pickled {'/'.join(PICKLE_SUFFIXES)} checkpoint")
    try:
        with torch.serialization.safe_globals(list(allowed_classes)):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError) as err:
        reason = _refusal_reason(err)
        raise ZooError(f"{path}: refused: reading it needs a full unpickle (it stores Python objects besides tensors), "
                       f"which can run code; zoo reads pickles with weights_only=True only ({reason})") from None
    for key in NESTED_STATE_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ZooError(f"{path}: expected a state dict of tensors (or one under {list(NESTED_STATE_KEYS)})")
    return state


def load_state_file(network: nn.Module, path: str | Path, owner: str) -> None:
    """Load a foreign weights file strictly into ``network``: safetensors, or a ``.pth`` state dict read with
    ``weights_only`` (never unpickling code); a mismatch is a ZooError naming ``owner`` and the file."""
    state = read_weights_only(path)
    expected = network.state_dict()
    for name, tensor in state.items():
        _check_tensor(f"{owner}: {path}", name, tensor, expected.get(name), type(network).__name__)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ZooError(f"{owner}: {path} does not fit the network: {err}") from None


def read_config(directory: str | Path) -> dict:
    """Read and check a ``config.json``; errors name the folder and the missing or bad key."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise ZooError(f"{directory} is not a zoo checkpoint folder: {CONFIG_NAME} is missing")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ZooError(f"{path}: not valid JSON ({err})") from None
    except UnicodeDecodeError as err:
        raise ZooError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); expected a JSON object") from None
    except RecursionError:
        raise ZooError(f"{path}: JSON nested too deeply to be a zoo config") from None
    if not isinstance(record, dict):
        raise ZooError(f"{path}: expected a JSON object")
    for key, kind in (("target", str), ("config", dict), ("modality", str)):
        if not isinstance(record.get(key), kind):
            raise ZooError(f"{path}: key {key!r} must be a {kind.__name__}")
    return record


class PretrainedModule(nn.Module, Pretrained):
    """An ``nn.Module`` whose weights are a ``model.safetensors`` state dict, loaded strictly.

    Anything a recipe trains (tokenizers, SSL models, generators, teachers) derives from it and
    implements ``training_losses(batch, step)``, returning a dict of named losses with ``loss``
    the total, or a ``TokenizerOutput`` whose ``losses`` hold them.
    """

    weights_name: ClassVar[str] = "model.safetensors"

    def _has_weights(self) -> bool:
        return True

    def _save_weights(self, path: Path) -> None:
        from safetensors.torch import save_model

        save_model(self, str(path))

    def _load_weights(self, path: Path) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import load_model

        check_tensors(self, path)
        try:
            missing, unexpected = load_model(self, str(path), strict=False, device="cpu")
        except SafetensorError as err:
            raise ZooError(f"{path}: not a valid safetensors file ({err})") from None
        except RuntimeError as err:  # shape mismatches
            raise ZooError(f"{path}: weights do not fit {type(self).__name__}: {err}") from None
        if missing or unexpected:
            raise ZooError(
                f"{path}: weights do not match {type(self).__name__}: "
                f"missing keys {sorted(missing)[:8]}, unexpected keys {sorted(unexpected)[:8]}"
            )

    def training_losses(self, batch: dict, step: int):
        raise ZooError(f"{type(self).__name__} does not define training_losses(batch, step), so it cannot be trained")

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")


def from_folder(directory: str | Path, trust_remote_code: bool = False, verify: bool = True, dtype_cast: bool = False,
                **overrides):
    """Whatever a ``save_pretrained`` folder holds, rebuilt by the class its ``config.json`` names."""
    record = read_config(directory)
    cls = resolve_class(record["target"], base=Pretrained, where=f"{directory}/{CONFIG_NAME}",
                        trust_remote_code=trust_remote_code)
    return cls.from_pretrained(directory, trust_remote_code=trust_remote_code, verify=verify, dtype_cast=dtype_cast,
                               **overrides)


def verify_files(directory: str | Path, record: dict) -> None:
    """Every file ``config.json`` lists under ``files`` has the recorded sha256."""
    from zoo.hub import sha256_of

    files = record.get("files") or {}
    if not isinstance(files, dict):
        raise ZooError(f"{directory}/{CONFIG_NAME}: key 'files' must map file names to sha256 strings")
    for name, expected in files.items():
        path = Path(directory) / str(name)
        if Path(str(name)).name != str(name) or not isinstance(expected, str):
            raise ZooError(f"{directory}/{CONFIG_NAME}: 'files' entry {name!r} must be a file name with a sha256")
        if not path.is_file():
            raise ZooError(f"{directory}: missing {name} next to config.json (which records its sha256)")
        actual = sha256_of(path)
        if actual != expected.lower():
            raise ZooError(f"{path}: sha256 is {actual}, config.json records {expected}; the file changed after it "
                           "was saved (load with verify=False to use it anyway)")


def build_checked(cls: type, config: dict, where: str):
    """``cls(**config)``, with a config key the constructor does not take named in one error."""
    signature = inspect.signature(cls.__init__)
    parameters = list(signature.parameters.values())[1:]
    if not any(p.kind is p.VAR_KEYWORD for p in parameters):
        known = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise ZooError(f"{where}: {cls.__name__} takes no argument(s) {unknown}; it takes {sorted(known)}")
    try:
        return cls(**config)
    except TypeError as err:
        raise ZooError(f"{where}: {cls.__name__}({', '.join(sorted(config))}): {err}") from None


@contextmanager
def _dtype_cast(allowed: bool):
    token = _DTYPE_CAST.set(allowed)
    try:
        yield
    finally:
        _DTYPE_CAST.reset(token)


def _check_tensor(where: str, name: str, tensor: torch.Tensor, expected: torch.Tensor | None, owner: str) -> None:
    """One stored tensor: the dtype the network holds (unless a cast was asked for) and finite values."""
    if expected is not None and tensor.dtype != expected.dtype and not _DTYPE_CAST.get():
        raise ZooError(f"{where}: tensor {name!r} is {tensor.dtype}, {owner} holds {expected.dtype}; convert the "
                       "file or load with dtype_cast=True (zoo never casts weights silently)")
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        raise ZooError(f"{where}: tensor {name!r} holds {int((~torch.isfinite(tensor)).sum())} NaN/Inf "
                       "value(s); refusing weights that cannot compute")


def check_tensors(module: nn.Module, path: Path) -> None:
    """Refuse a weights file whose tensors have other dtypes than the module's, or hold NaN / Inf values."""
    from safetensors import SafetensorError, safe_open

    expected = module.state_dict()
    try:
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                _check_tensor(str(path), name, handle.get_tensor(name), expected.get(name), type(module).__name__)
    except SafetensorError as err:
        raise ZooError(f"{path}: not a valid safetensors file ({err})") from None


def is_run_folder_name(name: str) -> bool:
    """``final`` and ``stepNNN``: names that say nothing without their run's folder."""
    return name == FINAL or name.startswith(STEP_PREFIX)


def weights_sha256(obj, folder: str | Path | None = None) -> str | None:
    """What an object's tokens depend on, as a hash: the sha256 of a folder's weights file, or for an
    in-memory network the sha256 of its state (names, dtypes, shapes, bytes); None without weights."""
    if folder is not None:
        from zoo.hub import sha256_of

        weights = Path(folder) / type(obj).weights_name
        return sha256_of(weights) if weights.is_file() else None
    if not isinstance(obj, nn.Module):
        return None
    state = obj.state_dict()
    if not state:
        return None
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
