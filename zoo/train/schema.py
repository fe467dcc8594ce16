"""The recipe schema: dataclasses for every key, and the validation that turns a mapping into them.

``build(Recipe, mapping, where)`` checks every key against the dataclasses' type hints: an unknown
key (with the closest known one), a wrong type or a bad choice is one ``ZooError`` naming ``where``
(the file), the dotted key and what was expected. ``docs/training.md`` lists every key and default.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from zoo.errors import ZooError

# -- the schema -----------------------------------------------------------------------------------------


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
    num_workers: int = 0
    crop: int | None = None  # random square crop of images, in pixels
    flip: bool = False  # random horizontal flip of images
    audio_seconds: float | None = None  # random crop of audio clips to this length


@dataclass
class OptimizerSpec:
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only


@dataclass
class ScheduleSpec:
    warmup_steps: int = 0  # linear warm-up from 0 to lr
    decay: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = 0.1  # the decay ends at lr * min_lr_ratio


@dataclass
class DiscriminatorSpec:
    """Optimisation of ``model.discriminator`` (GAN families); its phases are the family's choice."""

    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)


@dataclass
class EMASpec:
    decay: float = 0.999
    start_step: int = 0  # before this step the EMA copies the weights
    export: bool = True  # export the EMA weights instead of the raw ones


@dataclass
class CheckpointSpec:
    every: int = 0  # 0: no intermediate checkpoints
    keep: int = 2  # how many recent checkpoints to keep


@dataclass
class LogSpec:
    every: int = 10
    progress: bool = True  # tqdm bar on stderr
    tensorboard: bool = True  # also write TensorBoard events when tensorboard is installed


@dataclass
class EvalSpec:
    every: int = 0  # 0: only at the end of the stage
    suite: str | None = None  # an eval suite YAML, run with zoo.evaluate.run_suite
    limit: int | None = None  # items per dataset for the suite
    val_batches: int = 8  # batches of data.val for the validation losses


@dataclass
class Recipe:
    """One training run (one stage of a multi-stage recipe)."""

    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    name: str = ""
    description: str = ""
    seed: int = 0
    output_dir: str = ""  # default: runs/<name>
    steps: int = 1000
    batch_size: int = 32  # samples per micro-step, over all processes
    grad_accum: int = 1  # micro-steps per optimiser step
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    grad_clip: float | None = 1.0  # max global gradient norm; null disables
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    discriminator: DiscriminatorSpec = field(default_factory=DiscriminatorSpec)
    ema: EMASpec | None = None
    checkpoint: CheckpointSpec = field(default_factory=CheckpointSpec)
    log: LogSpec = field(default_factory=LogSpec)
    eval: EvalSpec | None = None


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


def build(cls: type, raw: Any, where: str, prefix: str = "", partial: bool = False) -> Any:
    """Validate a mapping into dataclass ``cls``; ``partial`` checks keys and types only (for included files)."""
    if not isinstance(raw, dict):
        raise ZooError(f"{where}: key {prefix.rstrip('.') or '(top level)'!r} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        if key not in hints:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean {prefix + close[0]!r}?" if close else f"known keys: {', '.join(names)}"
            raise ZooError(f"{where}: unknown key {prefix + str(key)!r} ({hint})")
        values[key] = _coerce(value, hints[key], prefix + key, where, partial)
    if partial:
        return values
    return cls(**values)


def recipe_to_dict(recipe: Recipe) -> dict:
    """The fully resolved recipe (every default filled in), as recorded in the exported config."""
    return dataclasses.asdict(recipe)
