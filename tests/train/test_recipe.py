"""Recipe files: includes, overrides, stages, and one-line errors naming the file and the key."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from zoo.errors import ZooError
from zoo.train.recipe import apply_override, load_recipe, parse_override
from zoo.train.schema import Recipe

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = """
model: {target: "tests._toy_family:ToyVQ"}
data: {train: synthetic-images}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(source, overrides=()) -> str:
    with pytest.raises(ZooError) as info:
        load_recipe(source, overrides)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    return message


def test_minimal_recipe_gets_every_default(tmp_path):
    plan = load_recipe(write(tmp_path, "tiny.yaml", MINIMAL))
    (recipe,) = plan.stages
    assert recipe == Recipe(
        model=recipe.model, data=recipe.data, name="tiny", output_dir="runs/tiny"
    )  # everything else is the dataclass default
    assert recipe.steps == 1000 and recipe.batch_size == 32 and recipe.optimizer.lr == 1e-3
    assert recipe.schedule.decay == "cosine" and recipe.ema is None and recipe.eval is None
    assert plan.output_dir == Path("runs/tiny") and plan.stage_dir(recipe) == Path("runs/tiny")


def test_includes_merge_mappings_and_replace_lists(tmp_path):
    (tmp_path / "base").mkdir()
    write(tmp_path / "base", "optim.yaml", "optimizer: {lr: 0.5, betas: [0.1, 0.2], weight_decay: 0.01}\nsteps: 7\n")
    write(tmp_path / "base", "model.yaml", MINIMAL)
    path = write(
        tmp_path,
        "run.yaml",
        """
        include: [base/model.yaml, base/optim.yaml]
        optimizer: {lr: 2.0e-4, betas: [0.5, 0.9]}
        """,
    )
    (recipe,) = load_recipe(path).stages
    assert recipe.optimizer.lr == 2e-4  # the including file wins
    assert recipe.optimizer.betas == [0.5, 0.9]  # lists are replaced, not merged
    assert recipe.optimizer.weight_decay == 0.01 and recipe.steps == 7  # the rest comes from the includes
    assert recipe.model.target == "tests._toy_family:ToyVQ"


def test_numbers_written_without_a_dot_are_numbers(tmp_path):
    # PyYAML reads `1e-3` as a string (YAML 1.1); a float key accepts it.
    (recipe,) = load_recipe(write(tmp_path, "r.yaml", MINIMAL + "optimizer: {lr: 1e-3}\n")).stages
    assert recipe.optimizer.lr == 0.001


def test_include_cycle_is_named(tmp_path):
    write(tmp_path, "a.yaml", "include: b.yaml\nsteps: 1\n")
    write(tmp_path, "b.yaml", "include: a.yaml\n")
    message = error_of(tmp_path / "a.yaml")
    assert "include cycle" in message and "a.yaml -> " in message and "b.yaml -> " in message


def test_missing_include_names_file_and_include(tmp_path):
    path = write(tmp_path, "r.yaml", "include: nowhere.yaml\n" + MINIMAL)
    message = error_of(path)
    assert str(path) in message and "'include'" in message and "nowhere.yaml" in message


def test_unknown_key_suggests_the_close_one_in_the_file_that_holds_it(tmp_path):
    write(tmp_path, "base.yaml", "optimizer: {lrr: 0.1}\n")
    path = write(tmp_path, "r.yaml", "include: base.yaml\n" + MINIMAL)
    message = error_of(path)
    assert str(tmp_path / "base.yaml") in message
    assert "unknown key 'optimizer.lrr'" in message and "did you mean 'optimizer.lr'" in message
    message = error_of(write(tmp_path, "s.yaml", MINIMAL + "stepz: 3\n"))
    assert "unknown key 'stepz'" in message and "did you mean 'steps'" in message


@pytest.mark.parametrize(
    "line, key, expected",
    [
        ("steps: ten", "steps", "an integer"),
        ("grad_clip: [1]", "grad_clip", "a number or null"),
        ("mixed_precision: fp8", "mixed_precision", "one of 'no', 'fp16', 'bf16'"),
        ("ema: {decay: high}", "ema.decay", "a number"),
        ("optimizer: {betas: [0.9, x]}", "optimizer.betas[1]", "a number"),
        ("log: 5", "log", "a mapping"),
        ("data: {train: 3}", "data.train", "a string or a mapping or null"),
    ],
)
def test_wrong_types_name_key_and_expectation(tmp_path, line, key, expected):
    base = MINIMAL.replace("data: {train: synthetic-images}\n", "") if line.startswith("data:") else MINIMAL
    path = write(tmp_path, "r.yaml", base + line + "\n")
    message = error_of(path)
    assert str(path) in message and f"key {key!r} must be {expected}" in message


def test_a_repeated_key_is_an_error_naming_both_lines(tmp_path):
    path = write(tmp_path, "twice.yaml", MINIMAL + "steps: 5\noptimizer: {lr: 0.1}\nsteps: 6\n")
    message = error_of(path)
    assert str(path) in message and "key 'steps' repeats the key of line" in message


def test_missing_and_inconsistent_fields(tmp_path):
    assert "missing key 'data.train'" in error_of(write(tmp_path, "a.yaml", "model: {name: byte}\n"))
    both = write(tmp_path, "b.yaml", "model: {name: byte, target: 'a.b:C'}\ndata: {train: synthetic-text}\n")
    assert "exactly one of 'name'" in error_of(both)
    assert "'steps' must be at least 1" in error_of(write(tmp_path, "c.yaml", MINIMAL + "steps: 0\n"))
    assert "ema.decay" in error_of(write(tmp_path, "d.yaml", MINIMAL + "ema: {decay: 1.5}\n"))
    assert "does not exist" in error_of(tmp_path / "absent.yaml")
    assert "not valid YAML" in error_of(write(tmp_path, "e.yaml", "model: [\n"))


# Recipe values a careless colleague could write: each one line naming the key and what was expected, before
# any training (the model-building ones when the model is built, the first thing a run does).
NAMED = 'model: {name: vq-f8, overrides: OVERRIDES}\ndata: {train: "synthetic-images:size=16"}\n'
REFUSED = [
    (MINIMAL + "optimizer: {lr: -0.001}\n", "key 'optimizer.lr' must be at least 0, got -0.001"),
    (MINIMAL + "optimizer: {lr: .nan}\n", "key 'optimizer.lr' must be at least 0, got nan"),
    (MINIMAL + "discriminator: {optimizer: {lr: -1}}\n", "key 'discriminator.optimizer.lr' must be at least 0"),
    (MINIMAL + "optimizer: {betas: [0.9, 1.5]}\n", "key 'optimizer.betas[1]' must be in [0, 1), got 1.5"),
    (MINIMAL + "optimizer: {weight_decay: -0.1}\n", "key 'optimizer.weight_decay' must be at least 0"),
    (MINIMAL + "seed: -1\n", "key 'seed' must be in [0, 2147483647], got -1"),
    (MINIMAL + "seed: 99999999999\n", "key 'seed' must be in [0, 2147483647]"),
    (MINIMAL + "steps: 0\n", "key 'steps' must be at least 1, got 0"),
    (MINIMAL + "batch_size: -4\n", "key 'batch_size' must be at least 1, got -4"),
    (MINIMAL + "grad_clip: -1\n", "key 'grad_clip' must be greater than 0, got -1.0"),
    (MINIMAL + "schedule: {warmup_steps: -1}\n", "key 'schedule.warmup_steps' must be at least 0"),
    (MINIMAL + "schedule: {min_lr_ratio: 2}\n", "key 'schedule.min_lr_ratio' must be in [0, 1], got 2.0"),
    (MINIMAL + "ema: {decay: 1.5}\n", "key 'ema.decay' must be in [0, 1), got 1.5"),
    (MINIMAL + "ema: {start_step: -1}\n", "key 'ema.start_step' must be at least 0"),
    (MINIMAL + "checkpoint: {every: -1}\n", "key 'checkpoint.every' must be at least 0"),
    (MINIMAL + "checkpoint: {keep: 0}\n", "key 'checkpoint.keep' must be at least 1"),
    (MINIMAL + "log: {every: 0}\n", "key 'log.every' must be at least 1"),
    (MINIMAL + "eval: {val_batches: 0}\n", "key 'eval.val_batches' must be at least 1"),
    (MINIMAL.replace("synthetic-images}", "synthetic-images, crop: 0}"), "key 'data.crop' must be at least 1"),
    (MINIMAL.replace("synthetic-images}", "synthetic-images, num_workers: -1}"), "'data.num_workers' must be at"),
    (MINIMAL.replace("synthetic-images}", "synthetic-images, audio_seconds: -1}"), "'data.audio_seconds' must be"),
    (MINIMAL.replace('ToyVQ"}', 'ToyVQ", config: {channels: -8}}'),
     "recipe model 'tests._toy_family:ToyVQ' cannot be built with {'channels': -8}: Trying to create tensor with "
     "negative dimension -8"),
    (MINIMAL.replace('ToyVQ"}', 'ToyVQ", overrides: {bogus: 1}}'),
     "ToyVQ takes no argument(s) ['bogus']; it takes ['adversarial_weight', 'channels', "),
    (NAMED.replace("OVERRIDES", "{bogus: 1}"), "VQTokenizer takes no argument(s) ['bogus']; it takes ['attention',"),
    (NAMED.replace("OVERRIDES", "{channels: -8}"), "recipe model 'vq-f8' cannot be built with {'channels': -8}"),
]


@pytest.mark.parametrize("text, expected", REFUSED, ids=[expected[:48] for _, expected in REFUSED])
def test_bad_values_are_one_line_errors_before_training(tmp_path, text, expected):
    from zoo.train import train

    path = write(tmp_path, "r.yaml", text)
    with pytest.raises(ZooError) as info:
        train(path, [f"output_dir={tmp_path / 'out'}"])
    message = str(info.value)
    assert "\n" not in message and expected in message
    log = tmp_path / "out" / "log.jsonl"
    assert not log.exists() or '"start"' not in log.read_text()  # refused before the run started


def test_an_unknown_override_on_the_command_line_is_one_line_naming_it(tmp_path):
    path = write(tmp_path, "r.yaml", MINIMAL)
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "train", str(path), f"output_dir={tmp_path / 'out'}", "model.overrides.bogus=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "ToyVQ takes no argument(s) ['bogus']" in line


def test_overrides_are_read_as_yaml(tmp_path):
    path = write(tmp_path, "r.yaml", MINIMAL)
    overrides = ["steps=5", "optimizer.lr=3e-4", "ema={decay: 0.5}", "model.config.noise=0", "grad_clip=null"]
    (recipe,) = load_recipe(path, overrides).stages
    assert recipe.steps == 5 and recipe.optimizer.lr == 3e-4 and recipe.ema.decay == 0.5
    assert recipe.model.config == {"noise": 0} and recipe.grad_clip is None
    assert parse_override("data.train=synthetic-images:size=16") == (["data", "train"], "synthetic-images:size=16")


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("steps", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
        ("optimizer..lr=1", "expected KEY=VALUE"),
        ("steps.inner=1", "'steps' is 1000, not a mapping"),
        ("optimizer.lrr=0.1", "unknown key 'optimizer.lrr' (did you mean 'optimizer.lr'?)"),
        ("steps=[1", "not valid YAML"),
        ("steps=many", "key 'steps' must be an integer"),
    ],
)
def test_bad_overrides(tmp_path, override, fragment):
    path = write(tmp_path, "r.yaml", MINIMAL + "steps: 1000\n")
    message = error_of(path, [override])
    assert fragment in message and override.split("=")[0] in message


STAGED = """
output_dir: {out}
seed: 3
steps: 4
data: {{train: synthetic-images}}
model: {{target: "tests._toy_family:ToyVQ"}}
stages:
  - name: teacher
  - name: student
    steps: 2
    model: {{target: "tests._toy_family:ToyVQ", config: {{teacher: "stage:teacher", rest: ["stage:teacher", 1]}}}}
"""


def test_stages_inherit_defaults_and_resolve_references(tmp_path):
    plan = load_recipe(write(tmp_path, "s.yaml", STAGED.format(out=tmp_path / "out")), ["stages.student.seed=9"])
    teacher, student = plan.stages
    assert (teacher.name, teacher.steps, teacher.seed) == ("teacher", 4, 3)
    assert (student.name, student.steps, student.seed) == ("student", 2, 9)
    final = str((tmp_path / "out" / "teacher" / "final").resolve())
    assert student.model.config == {"teacher": final, "rest": [final, 1]}
    assert plan.stage_dir(student) == tmp_path / "out" / "student"
    (changed,) = load_recipe(plan.resolved, ["stages.1.steps=6"]).stages[1:]
    assert changed.steps == 6


def test_stage_errors(tmp_path):
    forward = STAGED.replace('"stage:teacher", rest', '"stage:student", rest')
    message = error_of(write(tmp_path, "a.yaml", forward.format(out=tmp_path)))
    assert "'stage:student' does not name an earlier stage" in message and "stages[1].model.config.teacher" in message
    twice = STAGED.replace("name: student", "name: teacher")
    assert "defined twice" in error_of(write(tmp_path, "b.yaml", twice.format(out=tmp_path)))
    local_out = STAGED.replace("    steps: 2\n", "    output_dir: elsewhere\n")
    assert "'stages[1].output_dir' is not allowed inside a stage" in error_of(
        write(tmp_path, "c.yaml", local_out.format(out=tmp_path))
    )
    single = MINIMAL.replace("ToyVQ\"}", "ToyVQ\", config: {teacher: 'stage:teacher'}}")
    assert "does not name an earlier stage (it is the first stage)" in error_of(write(tmp_path, "e.yaml", single))
    assert "stages.nobody" in error_of(
        write(tmp_path, "d.yaml", STAGED.format(out=tmp_path)), ["stages.nobody.steps=1"]
    )


def test_apply_override_addresses_list_items_by_name_or_index():
    document = {"stages": [{"name": "a", "steps": 1}, {"name": "b"}]}
    apply_override(document, "stages.b.steps=3")
    apply_override(document, "stages.0.optimizer.lr=0.5")
    assert document == {"stages": [{"name": "a", "steps": 1, "optimizer": {"lr": 0.5}}, {"name": "b", "steps": 3}]}


def test_cli_prints_one_line_error_and_exits_2(tmp_path):
    path = write(tmp_path, "bad.yaml", MINIMAL + "optimizer: {nmae: sgd}\n")
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "train", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown key 'optimizer.nmae' (did you mean 'optimizer.name'?)" in lines[0]
    assert str(path) in lines[0]


def test_cli_prints_the_resolved_recipe_with_overrides_anywhere(tmp_path):
    path = write(tmp_path, "r.yaml", MINIMAL)
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "train", str(path), "seed=4", "--print-recipe", "steps=3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    # Overrides may come before or after the flags.
    assert "steps: 3" in result.stdout and "seed: 4" in result.stdout and "synthetic-images" in result.stdout
