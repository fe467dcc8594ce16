"""The recipe schema: dataclasses for every key, and the validation that turns a mapping into them.

``build(Recipe, mapping, where)`` checks every key against the dataclasses' type hints and the ranges
their fields declare (``_range``): an unknown key (with the closest known one), a wrong type, a bad
choice or a number out of range is one ``ZooError`` naming ``where`` (the file), the dotted key and
what was expected. ``docs/training.md`` lists every key and default.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from zoo.errors import ZooError

# -- the schema -----------------------------------------------------------------------------------------


def _range(low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False) -> dict:
    """Field metadata: the value (each item, for a list) lies between ``low`` and ``high``; null passes."""
    return {"range": (low, high, low_open, high_open)}


AT_LEAST_0, AT_LEAST_1, ABOVE_0 = _range(0), _range(1), _range(0, low_open=True)
# numpy seeds below 2**32; a 31-bit seed leaves room for the per-process seeds (seed + rank)
SEED_RANGE = _range(0, 2**31 - 1)


@dataclass
class ModelSpec:
    """What to train: a registry name (or a ``save_pretrained`` folder), or a ``target`` class."""

    name: str | None = None  # registry name, a save_pretrained folder, or "stage:NAME"
    target: str | None = None  # "package.module:Class", for models outside the registry
    config: dict = field(default_factory=dict)  # constructor arguments, with ``target``
    overrides: dict = field(default_factory=dict)  # constructor arguments replacing the entry's
    pretrained: bool = False  # start from the registry entry's shipped weights


@dataclass
class DataSpec:
    """Dataset specs (see ``zoo.data``) and the per-sample transforms applied while training."""

    train: str | dict | None = None
    val: str | dict | None = None
    num_workers: int = field(default=0, metadata=AT_LEAST_0)
    crop: int | None = field(default=None, metadata=AT_LEAST_1)  # random square crop of images, in pixels
    flip: bool = False  # random horizontal flip of images
    audio_seconds: float | None = field(default=None, metadata=ABOVE_0)  # random crop of audio clips to this length


@dataclass
class OptimizerSpec:
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = field(default=1e-3, metadata=AT_LEAST_0)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999], metadata=_range(0, 1, high_open=True))
    eps: float = field(default=1e-8, metadata=AT_LEAST_0)
    weight_decay: float = field(default=0.0, metadata=AT_LEAST_0)
    momentum: float = field(default=0.9, metadata=AT_LEAST_0)  # sgd only


@dataclass
class ScheduleSpec:
    warmup_steps: int = field(default=0, metadata=AT_LEAST_0)  # linear warm-up from 0 to lr
    decay: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = field(default=0.1, metadata=_range(0, 1))  # the decay ends at lr * min_lr_ratio


@dataclass
class DiscriminatorSpec:
    """Optimisation of ``model.discriminator`` (GAN families); its phases are the family's choice."""

    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)


@dataclass
class EMASpec:
    decay: float = field(default=0.999, metadata=_range(0, 1, high_open=True))
    start_step: int = field(default=0, metadata=AT_LEAST_0)  # before this step the EMA copies the weights
    export: bool = True  # export the EMA weights instead of the raw ones


@dataclass
class CheckpointSpec:
    every: int = field(default=0, metadata=AT_LEAST_0)  # 0: no intermediate checkpoints
    keep: int = field(default=2, metadata=AT_LEAST_1)  # how many recent checkpoints to keep


@dataclass
class LogSpec:
    every: int = field(default=10, metadata=AT_LEAST_1)
    progress: bool = True  # tqdm bar on stderr
    tensorboard: bool = True  # also write TensorBoard events when tensorboard is installed


@dataclass
class EvalSpec:
    every: int = field(default=0, metadata=AT_LEAST_0)  # 0: only at the end of the stage
    suite: str | None = None  # an eval suite YAML, run with zoo.evaluate.run_suite
    limit: int | None = field(default=None, metadata=AT_LEAST_1)  # items per dataset for the suite
    val_batches: int = field(default=8, metadata=AT_LEAST_1)  # batches of data.val for the validation losses


@dataclass
class Recipe:
    """One training run (one stage of a multi-stage recipe)."""

    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    name: str = ""
    description: str = ""
    seed: int = field(default=0, metadata=SEED_RANGE)
    output_dir: str = ""  # default: runs/<name>
    steps: int = field(default=1000, metadata=AT_LEAST_1)
    batch_size: int = field(default=32, metadata=AT_LEAST_1)  # samples per micro-step, over all processes
    grad_accum: int = field(default=1, metadata=AT_LEAST_1)  # micro-steps per optimiser step
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    grad_clip: float | None = field(default=1.0, metadata=ABOVE_0)  # max global gradient norm; null disables
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    discriminator: DiscriminatorSpec = field(default_factory=DiscriminatorSpec)
    ema: EMASpec | None = None
    checkpoint: CheckpointSpec = field(default_factory=CheckpointSpec)
    log: LogSpec = field(default_factory=LogSpec)
    eval: EvalSpec | None = None
    # Options of ``fit`` for tokenizers trained without gradients (e.g. k-means units' n_init / max_iter).
    fit: dict = field(default_factory=dict)


# -- validation: a mapping into dataclasses, errors naming file and key ----------------------------------


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(hint))
    if origin is list:
        return f"a list of {_describe(typing.get_args(hint)[0])}s"
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        dict: "a mapping",
        type(None): "null",
    }.get(hint, str(hint))


def _coerce(value: Any, hint: Any, key: str, where: str, partial: bool) -> Any:
    """Check ``value`` against a type hint and convert it (mappings into dataclasses)."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            if dataclasses.is_dataclass(option) and isinstance(value, dict):
                return _coerce(value, option, key, where, partial)  # errors name the inner key
            try:
                return _coerce(value, option, key, where, partial)
            except ZooError:
                continue
    elif origin is Literal:
        choices = typing.get_args(hint)
        if value is False and "no" in choices:
            return "no"  # YAML 1.1 reads a bare `no` as false: `mixed_precision: no` means the string
        if not isinstance(value, bool) and value in choices:
            return value
    elif origin is list:
        if isinstance(value, list):
            (item,) = typing.get_args(hint)
            return [_coerce(v, item, f"{key}[{i}]", where, partial) for i, v in enumerate(value)]
    elif dataclasses.is_dataclass(hint):
        if isinstance(value, dict):
            return build(hint, value, where, prefix=f"{key}.", partial=partial)
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # PyYAML follows YAML 1.1, which reads "1e-3" (no dot) as a string: accept what is plainly a number.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is dict:
        if isinstance(value, dict):
            return value
    elif hint is Any:
        return value
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise ZooError(f"{where}: key {key!r} must be {_describe(hint)}, got {type(value).__name__} {shown}")


def _check_range(value: Any, rule: tuple, key: str, where: str) -> None:
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_range(item, rule, f"{key}[{index}]", where)
        return
    if value is None:
        return
    low, high, low_open, high_open = rule
    # written so that NaN fails every comparison; infinities are refused as well
    inside = math.isfinite(value) and (low is None or (value > low if low_open else value >= low)) and (
        high is None or (value < high if high_open else value <= high))
    if not inside:
        if high is None:
            expected = f"greater than {low}" if low_open else f"at least {low}"
        else:
            expected = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ZooError(f"{where}: key {key!r} must be {expected}, got {value!r}")


def build(cls: type, raw: Any, where: str, prefix: str = "", partial: bool = False) -> Any:
    """Validate a mapping into dataclass ``cls``; ``partial`` checks keys and types only (for included files)."""
    if not isinstance(raw, dict):
        raise ZooError(f"{where}: key {prefix.rstrip('.') or '(top level)'!r} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = list(fields)
    values = {}
    for key, value in raw.items():
        if key not in hints:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean {prefix + close[0]!r}?" if close else f"known keys: {', '.join(names)}"
            raise ZooError(f"{where}: unknown key {prefix + str(key)!r} ({hint})")
        values[key] = _coerce(value, hints[key], prefix + key, where, partial)
        if "range" in fields[key].metadata:
            _check_range(values[key], fields[key].metadata["range"], prefix + key, where)
    if partial:
        return values
    return cls(**values)


def recipe_to_dict(recipe: Recipe) -> dict:
    """The fully resolved recipe (every default filled in), as recorded in the exported config."""
    return dataclasses.asdict(recipe)
