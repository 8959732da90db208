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
from task_types import get_task_type
from tasks.runtime.cache import build_step, fingerprint, model_fingerprint
from tasks.runtime.logs import step_logger, timed
from tasks.training.ddp import train_distributed
from tasks.training.recipe import best_epoch_metric, train_model

TRAIN_VERSION = 2  # bump when training changes for every type: cached models are retrained


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
    Returns:
        path of the saved model, the key, device/precision used and the training history.
    """
    logger = step_logger()
    base = resolve_model_path(model.name_or_path)
    settings = train.model_dump(exclude={"eval_batch_size"})  # every option that changes the model; nproc changes the effective batch
    best_metric = best_epoch_metric(task, compare_on, tokens.target)
    revision = get_task_type(task).training_revision  # a change in how the type trains: its cached models are not re-used
    key = fingerprint(
        "train", TRAIN_VERSION, tokens.key, model_fingerprint(base), settings, model.trust_remote_code, seed, task, best_metric, revision
    )
    checkpoints = cache.resolved_dir() / "checkpoints" / key
    if cache.refresh:
        shutil.rmtree(checkpoints, ignore_errors=True)

    def make(folder: Path) -> dict:
        run = train_distributed if train.nproc > 1 else train_model
        if pruning is None or train.nproc > 1:
            return run(tokens, model, train, seed, folder, checkpoints, task, compare_on)
        from tasks.training.pruning import PruneOnEpoch

        try:
            return run(tokens, model, train, seed, folder, checkpoints, task, compare_on, [PruneOnEpoch.build(pruning)])
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
