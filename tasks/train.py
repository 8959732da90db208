"""Fine-tune: train the task type's model on the tokenized splits with the recipe (tasks/training/recipe.py), in this
process or in train.nproc processes under torchrun; the output is cached by everything that determines it, and
checkpoints under the same key let a killed run resume.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import task

from schemas.config import CacheConfig, ModelConfig, TrainConfig, resolve_model_path
from schemas.results import TokenizeResult, TrainResult
from task_types import best_epoch_metric, get_task_type
from tasks.runtime.cache import build_step, fingerprint, model_fingerprint
from tasks.runtime.logs import step_logger, timed
from tasks.training.ddp import train_distributed

TRAIN_VERSION = 2
RANGE_VERSION = 4  # bump when the range test or its pick changes: cached picks (and the models trained at them) are made again


def resolve_rates(tokens: TokenizeResult, model: ModelConfig, train: TrainConfig, cache: CacheConfig, seed: int, task: str, folder: Path):
    """(the train section with numbers for batch_size=auto, learning_rate=auto and layer_lr_decay=auto, what was chosen and why).

    The range test is a cache entry of its own (keyed by all that shapes it, not by the options it sets or those of
    the budget), so changing epochs or patience re-uses it; its curve is copied beside the model for the run's log."""
    import json

    from tasks.training.lr_range import plot_range, range_test
    from tasks.training.recipe import build_model, choose_batch_size, validate

    task_type = get_task_type(task)
    decay = train.layer_lr_decay if train.layer_lr_decay != "auto" else task_type.default_layer_lr_decay
    device = validate(train.model_copy(update={"batch_size": 1}), task, None, tokens.target).device
    probe = build_model(tokens, model, train, task, device, seed)[0].to(device) if train.batch_size == "auto" and device == "cuda" else None
    batch, batch_why = choose_batch_size(train.batch_size, device, probe, tokens.max_length)
    del probe
    resolved = train.model_copy(update={"layer_lr_decay": decay, "batch_size": batch})
    chosen = {
        "layer_lr_decay": decay,
        "batch_size": batch,
        "batch_size_why": batch_why,
        "learning_rate": train.learning_rate,
        "learning_rate_why": "train.learning_rate as set",
    }
    if train.learning_rate != "auto":
        return resolved, chosen
    shaping = resolved.model_dump(
        include={"batch_size", "weight_decay", "dropout", "freeze_layers", "freeze_embeddings", "layer_lr_decay", "precision", "device"}
    )
    key = fingerprint(
        "lr_range",
        RANGE_VERSION,
        tokens.key,
        model_fingerprint(resolve_model_path(model.name_or_path)),
        shaping,
        seed,
        task,
        task_type.lr_pick_divisor,
    )

    def make(range_folder: Path) -> dict:
        choices = validate(resolved, task, None, tokens.target)
        curve = range_test(tokens, model, resolved, task, seed, choices.device, choices.precision)
        (range_folder / "lr_range.json").write_text(json.dumps(curve, indent=1))
        plot_range(curve, range_folder / "lr_range.png")
        return {k: curve[k] for k in ("learning_rate", "why", "seconds")}

    entry = build_step(cache, "lr_range", key, make)
    step_logger().info("fine_tune: %s, in %.1f s%s", entry.meta["why"], entry.meta["seconds"], " (cached)" if entry.reused else "")
    for name in ("lr_range.json", "lr_range.png"):
        shutil.copy(entry.path / name, folder / name)
    chosen.update(
        {"learning_rate": entry.meta["learning_rate"], "learning_rate_why": entry.meta["why"], "lr_range_seconds": entry.meta["seconds"]}
    )
    return resolved.model_copy(update={"learning_rate": entry.meta["learning_rate"]}), chosen


@task(name="fine_tune")
@timed
def fine_tune(
    tokens: TokenizeResult,
    model: ModelConfig,
    train: TrainConfig,
    cache: CacheConfig,
    seed: int,
    task: str,
    compare_on: str | None = None,
    pruning: dict | None = None,
    ray_address: str | None = None,
) -> TrainResult:
    """Fine-tune the model on the tokenized train split, selecting the best epoch on validation.

    Args:
        tokens: the tokenize step's result.
        model: base model and loading options.
        train: the training section of the config.
        cache: where step outputs (and resumable checkpoints) live.
        seed: the run's seed.
        task: the task type (head, loss, training metrics).
        compare_on: registry.compare_on, the metric that picks the best epoch (default: the task type's).
        pruning: a sweep trial's study and number (tasks/training/pruning.py): report validation after each epoch, stop if pruned.
        ray_address: the Ray cluster for train.runner=ray (sweep.ray_address; else $RAY_ADDRESS, else a local Ray).
    Returns:
        path of the saved model, the key, device/precision used and the training history.
    """
    logger = step_logger()
    base = resolve_model_path(model.name_or_path)
    # every option that changes the model (not how evaluation batches or who collates); nproc changes the effective batch
    settings = train.model_dump(exclude={"eval_batch_size", "dataloader_workers"})
    best_metric = best_epoch_metric(task, compare_on, tokens.target)
    revision = get_task_type(task).training_revision  # a change in how the type trains: its cached models are not re-used
    # learning_rate=auto: the rule that turns the range test into a rate is part of what the model was trained with
    pick = (RANGE_VERSION, get_task_type(task).lr_pick_divisor) if train.learning_rate == "auto" else None
    key = fingerprint(
        "train",
        TRAIN_VERSION,
        tokens.key,
        model_fingerprint(base),
        settings,
        model.trust_remote_code,
        seed,
        task,
        best_metric,
        revision,
        pick,
    )
    checkpoints = cache.resolved_dir() / "checkpoints" / key
    if cache.refresh:
        shutil.rmtree(checkpoints, ignore_errors=True)

    def make(folder: Path) -> dict:
        resolved, chosen = resolve_rates(tokens, model, train, cache, seed, task, folder)
        if train.runner == "ray":
            from tasks.training.ray_train import train_on_ray

            trained = train_on_ray(tokens, model, resolved, seed, folder, checkpoints, task, compare_on, ray_address)
            return {**trained, **chosen, "runner": "ray"}
        from tasks.training.recipe import train_model  # torch and transformers: only when there is something to train

        run = train_distributed if train.nproc > 1 else train_model
        if pruning is None or train.nproc > 1:
            return {**run(tokens, model, resolved, seed, folder, checkpoints, task, compare_on), **chosen}
        from tasks.training.pruning import PruneOnEpoch

        try:
            return {**run(tokens, model, resolved, seed, folder, checkpoints, task, compare_on, [PruneOnEpoch.build(pruning)]), **chosen}
        except Exception as err:
            if type(err).__name__ == "TrialPruned":  # a pruned trial's checkpoints are never resumed from
                shutil.rmtree(checkpoints, ignore_errors=True)
            raise

    entry = build_step(cache, "train", key, make)
    shutil.rmtree(checkpoints, ignore_errors=True)
    result = TrainResult.from_manifest(
        entry.meta,
        path=str(entry.path / "model"),
        key=key,
        reused=entry.reused,
        labels=tokens.labels,
        task=task,
        max_length=tokens.max_length,
        long_text=tokens.long_text,
        trust_remote_code=model.trust_remote_code,
    )
    logger.info(
        "fine_tune: %s/%s, %.1f epochs, best validation %s %.4f%s%s",
        result.device,
        result.precision,
        result.epochs_run or 0,
        result.best_metric_name,
        result.best_val_metric if result.best_val_metric is not None else float("nan"),
        f", resumed from {result.resumed_from}" if result.resumed_from else "",
        " (cached)" if entry.reused else "",
    )
    return result
