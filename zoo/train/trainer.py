"""The training loop: one stage of a recipe, on one CPU or many GPUs, readable top to bottom.

Families plug in through two methods and know nothing about the loop:

- ``training_losses(batch, step)`` returns named losses (a dict, or a ``TokenizerOutput`` whose
  ``losses`` hold them); ``"loss"`` is the total to minimise, the rest is logged.
- a family with a GAN discriminator keeps it in ``self.discriminator`` and implements
  ``discriminator_losses(batch, output, step)``; it returns ``{}`` while the discriminator rests
  (its phases are the family's choice). The discriminator gets its own optimiser and schedule.

Text tokenizers trained without gradients (BPE, Unigram) implement ``fit(texts)`` instead.

Distributed runs (``accelerate launch -m zoo train RECIPE``) use accelerate for the process group,
devices and mixed precision; checkpoints are zoo's own safetensors + JSON folders (``zoo.train.checkpoint``:
accelerate's ``save_state`` pickles). The model is not wrapped in DistributedDataParallel:
losses come from ``training_losses``, not ``forward``, and GAN families run two backward passes
per step, two things DDP's hooks do not expect. Instead every process starts from the same weights
(same seed, then copied from the main process), gradients are averaged across processes once per
optimiser step (one all-reduce), and every process applies the same update, so the weights stay
identical; the run checks it at the end.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import shutil
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device, set_seed
from torch import nn
from tqdm.auto import tqdm

from zoo.errors import ZooError
from zoo.pretrained import FINAL
from zoo.provenance import git_state
from zoo.tokenizer import TokenizerOutput
from zoo.train.checkpoint import load_checkpoint, newest_usable_checkpoint, remove_partial, save_checkpoint
from zoo.train.data import batches, build_dataset, texts_of
from zoo.train.distributed import average_gradients, broadcast_from_main, sync_buffers, weight_stats
from zoo.train.ema import EMA
from zoo.train.logs import MetricWindow, RunLog
from zoo.train.schema import ModelSpec, OptimizerSpec, Recipe, ScheduleSpec, recipe_to_dict


def train_stage(recipe: Recipe, out_dir: Path, resume: bool = False, source: str = "") -> Path:
    """Train one stage and export ``out_dir/final``; returns that folder."""
    out_dir = Path(out_dir)
    accelerator = make_accelerator(recipe.mixed_precision)
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    log = RunLog(out_dir, enabled=main, tensorboard=recipe.log.tensorboard)
    try:
        return _train(recipe, out_dir, resume, source, accelerator, world, rank, main, log)
    finally:
        log.close()


def _train(recipe, out_dir, resume, source, accelerator, world, rank, main, log) -> Path:
    # -- model and data: the same seed on every process, so every process builds the same weights --------
    set_seed(recipe.seed)
    model = build_model(recipe.model)
    dataset = build_dataset(recipe.data.train, "train")
    metadata = {
        "recipe": recipe_to_dict(recipe),
        "recipe_source": source,
        "git": git_revision(),
        "stage": recipe.name,
        "world_size": world,
    }
    if not _has_trainable_parameters(model):
        return fit_and_export(model, dataset, out_dir, accelerator, log, metadata, recipe.fit)

    # prepare_model places the model on the device (and wraps it for mixed precision); evaluation_mode=True
    # keeps it out of DistributedDataParallel (see the module docstring for why).
    model = accelerator.prepare_model(model, evaluation_mode=True)
    model.train()
    # The same seed gave every process the same weights; copying the main process's makes sure of it (as
    # DDP does at construction), whatever a family's initialisation draws on.
    broadcast_from_main(accelerator, [*model.parameters(), *model.buffers()])
    discriminator = getattr(model, "discriminator", None)
    disc_params = _trainable(discriminator) if isinstance(discriminator, nn.Module) else []
    in_discriminator = {id(p) for p in discriminator.parameters()} if isinstance(discriminator, nn.Module) else set()
    main_params = [p for p in model.parameters() if p.requires_grad and id(p) not in in_discriminator]
    if disc_params and not callable(getattr(model, "discriminator_losses", None)):
        raise ZooError(f"{type(model).__name__} has a discriminator but no discriminator_losses(batch, output, step)")
    if disc_params and recipe.mixed_precision == "fp16":
        # One loss scaler cannot serve two optimisers stepping separately; bf16 needs no scaler.
        raise ZooError("mixed_precision: fp16 is not supported with a discriminator; use bf16 or no")
    optimizer = accelerator.prepare_optimizer(make_optimizer(main_params, recipe.optimizer))
    disc_optimizer = None
    if disc_params:
        disc_optimizer = accelerator.prepare_optimizer(make_optimizer(disc_params, recipe.discriminator.optimizer))
    ema = EMA(model, recipe.ema.decay, recipe.ema.start_step) if recipe.ema else None
    suite_runner = _suite_runner(recipe)  # fail now, not after hours of training, if evaluation is unavailable

    # -- where to start: a fresh run, or the latest complete checkpoint -------------------------------------
    # From here on each process draws its own noise (dropout, latent perturbation), reproducibly.
    set_seed(recipe.seed + rank)
    checkpoint_root = out_dir / "checkpoints"
    if main:
        remove_partial(checkpoint_root)
    start_step, samples_seen, changed = 0, 0, []
    optimizers = [optimizer] + ([disc_optimizer] if disc_optimizer is not None else [])
    latest = None
    if resume:
        latest, state, skipped = newest_usable_checkpoint(checkpoint_root, world, len(optimizers), ema is not None)
        if skipped:
            log.write({"event": "skipped_checkpoints", "reasons": skipped, "resuming_from": str(latest)})
        for reason in skipped if main else []:
            print(f"zoo train: warning: skipping a damaged checkpoint ({reason}); resuming from {latest}",
                  file=sys.stderr)
    if latest is not None:
        # weights, optimisers, loss scaler, EMA and every process's RNG states
        load_checkpoint(accelerator, latest, state, model, optimizers, ema)
        start_step, samples_seen = state["step"], state.get("samples", 0)
        changed = changed_settings(state.get("recipe", {}), metadata["recipe"])
        if changed:
            accelerator.print(
                f"zoo train: warning: resuming with changed {', '.join(changed)}; the result will "
                "differ from an uninterrupted run"
            )
    n_params = sum(p.numel() for p in main_params)
    log.write(
        {
            "event": "resume" if latest else "start",
            "step": start_step,
            "world_size": world,
            "process_batch": recipe.batch_size // world,
            "batch_size": recipe.batch_size,
            "grad_accum": recipe.grad_accum,
            "device": str(accelerator.device),
            "parameters": n_params,
            "discriminator_parameters": sum(p.numel() for p in disc_params),
            "mixed_precision": recipe.mixed_precision,
            "checkpoint": str(latest) if latest else None,
            "changed_settings": changed,
        }
    )
    accelerator.print(
        f"zoo train {recipe.name or ''}: {type(model).__name__}, {n_params:,} parameters, world size "
        f"{world}, {accelerator.device}, steps {start_step}->{recipe.steps}"
    )

    # Micro-batch b of the whole run is a pure function of (seed, b): resuming at step s starts at b = s * accum.
    loader = batches(
        dataset, recipe.data, recipe.batch_size, recipe.seed, rank, world, start_batch=start_step * recipe.grad_accum
    )
    stream = iter(loader)
    samples_per_step = recipe.batch_size * recipe.grad_accum
    progress = tqdm(
        total=recipe.steps,
        initial=start_step,
        disable=not (main and recipe.log.progress),
        desc=recipe.name or "train",
        dynamic_ncols=True,
    )
    window, window_start, window_first_step = MetricWindow(), time.perf_counter(), start_step

    for step in range(start_step, recipe.steps):
        lr = set_learning_rate(optimizer, recipe.optimizer, recipe.schedule, step, recipe.steps)
        if disc_optimizer is not None:
            set_learning_rate(
                disc_optimizer, recipe.discriminator.optimizer, recipe.discriminator.schedule, step, recipe.steps
            )
        disc_active = False

        # -- forward and backward over grad_accum micro-batches; gradients add up in .grad ------------------
        for _ in range(recipe.grad_accum):
            batch = send_to_device(next(stream), accelerator.device)
            with accelerator.autocast():
                output = model.training_losses(batch, step)
            losses = named_losses(output, f"{type(model).__name__}.training_losses")
            # With a discriminator, `inputs=` keeps the generator's loss from leaving gradients on the
            # discriminator (its adversarial term flows through it) and vice versa below.
            accelerator.backward(losses["loss"] / recipe.grad_accum, **({"inputs": main_params} if disc_params else {}))
            window.add(losses)
            if disc_optimizer is not None:
                with accelerator.autocast():
                    disc_losses = model.discriminator_losses(batch, output, step)
                if disc_losses:  # {} while the discriminator rests
                    disc_losses = named_losses(disc_losses, f"{type(model).__name__}.discriminator_losses")
                    accelerator.backward(disc_losses["loss"] / recipe.grad_accum, inputs=disc_params)
                    window.add({f"disc_{k}": v for k, v in disc_losses.items()})
                    disc_active = True
            del output, losses

        # -- one update: average gradients over processes, clip, step; the same update on every process -----
        average_gradients(accelerator, main_params)
        if recipe.grad_clip is not None:
            window.add({"grad_norm": accelerator.clip_grad_norm_(main_params, recipe.grad_clip)})
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if disc_active:
            average_gradients(accelerator, disc_params)
            if recipe.grad_clip is not None:
                accelerator.clip_grad_norm_(disc_params, recipe.grad_clip)
            disc_optimizer.step()
        if disc_optimizer is not None:
            disc_optimizer.zero_grad(set_to_none=True)
        sync_buffers(accelerator, model)
        if ema is not None:
            ema.update(model, step)
        done, samples_seen = step + 1, samples_seen + samples_per_step
        progress.update(1)

        # -- logging, evaluation, checkpoints ---------------------------------------------------------------
        if done % recipe.log.every == 0 or done == recipe.steps:
            elapsed = time.perf_counter() - window_start
            record = {
                "step": done,
                "lr": lr,
                **window.mean(accelerator),
                "samples_per_s": (done - window_first_step) * samples_per_step / max(elapsed, 1e-9),
            }
            log.write(record)
            progress.set_postfix(loss=f"{record['loss']:.4g}", samples_s=f"{record['samples_per_s']:.1f}")
            window, window_start, window_first_step = MetricWindow(), time.perf_counter(), done
        if recipe.eval is not None and (done == recipe.steps or (recipe.eval.every and done % recipe.eval.every == 0)):
            log.write({"step": done, **evaluate(recipe, model, ema, accelerator, suite_runner, out_dir, done)})
        if recipe.checkpoint.every and done % recipe.checkpoint.every == 0 and done < recipe.steps:
            save_checkpoint(
                accelerator,
                checkpoint_root,
                done,
                recipe.checkpoint.keep,
                {"samples": samples_seen, "recipe": metadata["recipe"]},
                model,
                optimizers,
                ema,
            )
    progress.close()

    # -- export: the same weights on every process (checked), written once --------------------------------
    stats = weight_stats(accelerator, model)
    in_sync = all(row == stats[0] for row in stats)
    log.write(
        {
            "event": "end",
            "step": recipe.steps,
            "world_size": world,
            "rank_weight_stats": stats,
            "ranks_in_sync": in_sync,
        }
    )
    if not in_sync:
        accelerator.print("zoo train: warning: the processes' weights differ; exporting the main process's")
    metadata.update(steps=recipe.steps, samples=samples_seen, weights="ema" if ema and recipe.ema.export else "raw")
    final = out_dir / FINAL
    if main:
        model.eval()
        with exported_weights(model, ema, recipe):
            export(model, final, metadata)
    accelerator.wait_for_everyone()
    return final


# -- building blocks, in the order the loop uses them -----------------------------------------------------


def make_accelerator(mixed_precision: str) -> Accelerator:
    """An Accelerator for one stage. accelerate keeps one global state per process and refuses a second
    Accelerator with another precision, so a stage (or a second run in the same Python process) resets
    that state first; the process group itself (PartialState) is kept."""
    from accelerate.state import AcceleratorState
    from accelerate.utils import parse_flag_from_env

    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=mixed_precision, cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def build_model(spec: ModelSpec):
    """A registry entry (or ``save_pretrained`` folder) with overrides, or a ``target`` class with its config.

    A constructor that fails on the recipe's values (``channels: -8``: torch cannot make the tensor) is the
    recipe's error, named in one line with the values given."""
    try:
        if spec.target is not None:
            from zoo.pretrained import Pretrained, build_checked
            from zoo.targets import resolve_class

            cls = resolve_class(spec.target, base=Pretrained, where="recipe model")
            return build_checked(cls, {**spec.config, **spec.overrides}, "recipe model")
        from zoo.loading import load_tokenizer

        return load_tokenizer(spec.name, pretrained=spec.pretrained, owner="recipe model", **spec.overrides)
    except ZooError:
        raise
    except (RuntimeError, ValueError, AssertionError) as err:
        given = {**spec.config, **spec.overrides}
        shown = repr(given) if len(repr(given)) <= 120 else repr(given)[:117] + "..."
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise ZooError(f"recipe model {spec.target or spec.name!r} cannot be built with {shown}: {reason}") from None


def _trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def _has_trainable_parameters(model) -> bool:
    if isinstance(model, nn.Module) and _trainable(model):
        return True
    if callable(getattr(model, "fit", None)):
        return False
    raise ZooError(f"{type(model).__name__} has neither trainable parameters nor fit(texts): nothing to train")


def fit_and_export(model, dataset, out_dir: Path, accelerator: Accelerator, log: RunLog, metadata: dict,
                   options: dict | None = None) -> Path:
    """Tokenizers trained without gradients: ``fit`` on the training data (main process), then export.

    Text tokenizers fit on the texts; a model whose ``fit_on`` is ``"dataset"`` (k-means units over audio) gets
    the dataset itself. ``options`` (the recipe's ``fit:``) are passed to ``fit`` as keywords."""
    final = out_dir / FINAL
    if accelerator.is_main_process:
        log.write({"event": "fit", "tokenizer": type(model).__name__})
        started = time.perf_counter()
        data = dataset if getattr(model, "fit_on", "texts") == "dataset" else texts_of(dataset)
        try:
            inspect.signature(model.fit).bind(data, **(options or {}))
        except TypeError as err:
            raise ZooError(f"recipe fit: {type(model).__name__}.fit does not take {sorted(options or {})} "
                           f"({err})") from None
        summary = model.fit(data, **(options or {}))
        seconds = round(time.perf_counter() - started, 3)
        record = {"event": "end", "fit_seconds": seconds, "vocab_size": model.vocab_size}
        if isinstance(summary, dict):
            record["fit"] = summary
            metadata = {**metadata, "fit": summary}
        log.write(record)
        export(model, final, metadata)
    accelerator.wait_for_everyone()
    return final


def make_optimizer(params: list[nn.Parameter], spec: OptimizerSpec) -> torch.optim.Optimizer:
    if spec.name == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    cls = torch.optim.AdamW if spec.name == "adamw" else torch.optim.Adam
    return cls(params, lr=spec.lr, betas=tuple(spec.betas), eps=spec.eps, weight_decay=spec.weight_decay)


def learning_rate(base: float, schedule: ScheduleSpec, step: int, total: int) -> float:
    """Linear warm-up to ``base``, then cosine / linear decay to ``base * min_lr_ratio`` (or constant)."""
    if step < schedule.warmup_steps:
        return base * (step + 1) / schedule.warmup_steps
    if schedule.decay == "constant":
        return base
    progress = min(1.0, (step - schedule.warmup_steps) / max(1, total - schedule.warmup_steps))
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule.decay == "cosine" else 1.0 - progress
    return base * (schedule.min_lr_ratio + (1.0 - schedule.min_lr_ratio) * shape)


def set_learning_rate(optimizer, spec: OptimizerSpec, schedule: ScheduleSpec, step: int, total: int) -> float:
    # A pure function of the step (as in nanoGPT): there is no scheduler state to checkpoint or restore.
    lr = learning_rate(spec.lr, schedule, step, total)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def named_losses(output, owner: str) -> dict[str, torch.Tensor]:
    """The losses of a ``TokenizerOutput`` or a dict, checked to hold a scalar ``"loss"``."""
    losses = output.losses if isinstance(output, TokenizerOutput) else output
    if not isinstance(losses, dict):
        raise ZooError(f"{owner} must return a dict of losses or a TokenizerOutput, got {type(output).__name__}")
    total = losses.get("loss")
    if not isinstance(total, torch.Tensor) or total.numel() != 1:
        raise ZooError(f"{owner} must return a scalar tensor 'loss' (the total to minimise); got keys {sorted(losses)}")
    if torch.is_grad_enabled() and not total.requires_grad:  # validation runs without gradients
        raise ZooError(f"{owner}: 'loss' does not depend on any trainable parameter")
    return losses


@torch.no_grad()
def evaluate(
    recipe: Recipe, model, ema: EMA | None, accelerator: Accelerator, suite_runner, out_dir: Path, step: int
) -> dict:
    """Validation losses on ``data.val`` (all processes) and the eval suite (main process), on the exported weights."""
    record: dict = {}
    model.eval()
    if recipe.data.val is not None:
        dataset = build_dataset(recipe.data.val, "val")
        loader = batches(
            dataset,
            recipe.data,
            recipe.batch_size,
            recipe.seed,
            accelerator.process_index,
            accelerator.num_processes,
            stop_batch=recipe.eval.val_batches,
            shuffle=False,
        )
        window = MetricWindow()
        for batch in loader:
            with accelerator.autocast():
                window.add(
                    named_losses(
                        model.training_losses(send_to_device(batch, accelerator.device), step), "training_losses"
                    )
                )
        record.update({f"val_{k}": v for k, v in window.mean(accelerator).items()})
    if suite_runner is not None:
        # Every process takes part: run_suite shards the items over the accelerator's processes and sums
        # metric state; only the main process writes the report.
        with exported_weights(model, ema, recipe):
            results = suite_runner(
                recipe.eval.suite,
                tokenizers=[model],
                limit=recipe.eval.limit,
                out_dir=out_dir / "eval" / f"step-{step:08d}",
                accelerator=accelerator,
                progress=False,
            )
        per_tokenizer = results.get("results", {}) if isinstance(results, dict) else {}
        record.update(_numbers(next(iter(per_tokenizer.values()), results), "eval"))
    accelerator.wait_for_everyone()
    model.train()
    return record


def _suite_runner(recipe: Recipe):
    if recipe.eval is None or recipe.eval.suite is None:
        return None
    try:
        from zoo.evaluate import load_suite, run_suite
    except ImportError as err:
        raise ZooError(
            f"eval.suite needs the evaluation harness (zoo.evaluate), which cannot be imported: {err}"
        ) from None
    load_suite(recipe.eval.suite)  # a missing or malformed suite fails now, not after hours of training
    return run_suite


def _numbers(results, prefix: str) -> dict:
    """The numeric leaves of an evaluation result, flattened to ``prefix/a/b`` keys for the log."""
    if isinstance(results, (int, float)) and not isinstance(results, bool):
        return {prefix: float(results)}
    if isinstance(results, dict):
        found = {}
        for key, value in results.items():
            found.update(_numbers(value, f"{prefix}/{key}"))
        return found
    return {}


def changed_settings(before: dict, now: dict) -> list[str]:
    """Recipe keys that differ from the checkpoint's and change the numbers (not logging or checkpointing)."""
    cosmetic = {"log", "checkpoint", "eval", "description", "name", "output_dir"}
    return sorted(k for k in set(before) | set(now) if k not in cosmetic and before.get(k) != now.get(k))


def exported_weights(model: nn.Module, ema: EMA | None, recipe: Recipe):
    """The weights that get exported and evaluated: the EMA's when the recipe says so, else the live ones."""
    return ema.applied(model) if ema is not None and recipe.ema.export else contextlib.nullcontext(model)


def export(model, final: Path, metadata: dict) -> None:
    """``save_pretrained`` into a temporary folder, then rename: ``final`` is always complete."""
    temp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(temp, ignore_errors=True)
    model.save_pretrained(temp, metadata=metadata)
    if final.exists():
        shutil.rmtree(final)
    temp.rename(final)


def git_revision() -> str | None:
    """The commit of the zoo checkout that trained the model (``+dirty`` with uncommitted changes)."""
    state = git_state()
    if state["hash"] is None:
        return None
    return f"{state['hash']}+dirty" if state["dirty"] else state["hash"]
