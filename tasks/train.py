"""Fine-tune: HF Trainer with dynamic padding, length-grouped batches, early stopping and resume.

Life cycle: validate the choices (device, precision) -> set up (seed, model,
data) -> train (resuming from the last checkpoint of the same key) -> save the
best model, its label map and the resolved config -> clean up checkpoints.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch
from datasets import load_from_disk
from prefect import task
from transformers import (
    AutoConfig,
    AutoTokenizer,
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_callback import PrinterCallback

from schemas.config import PROJECT_ROOT, CacheConfig, ModelConfig, TrainConfig, resolve_model_path
from schemas.errors import ConfigError
from schemas.results import TokenizeResult, TrainResult
from task_types import get_task_type
from task_types.base import LOWER_IS_BETTER
from task_types.inference import attention_kernels, cpu_has_fast_bf16
from tasks.runtime.cache import build_step, file_sha256, fingerprint, model_fingerprint
from tasks.runtime.logs import step_logger, timed
from tasks.training.layers import DROPOUT_KEYS, dropout_overrides, freeze_bottom, freeze_word_embeddings, layer_decay_optimizer
from tasks.training.layers import OFF as LAYER_OPTIONS_OFF


def choose_device(requested: str, cuda_available: bool) -> str:
    """'cuda' or 'cpu' for the requested device."""
    if requested == "cuda" and not cuda_available:
        raise ConfigError("train.device=cuda but no GPU is visible: set train.device=auto or cpu")
    if requested == "auto":
        return "cuda" if cuda_available else "cpu"
    return requested


def choose_precision(requested: str, device: str, cuda_bf16: bool, cpu_bf16: bool = False) -> str:
    """The numeric precision to train in; auto prefers bf16 wherever the hardware runs it fast."""
    if requested == "fp16" and device == "cpu":
        raise ConfigError("train.precision=fp16 needs a GPU: use bf16 or fp32 on CPU")
    if requested == "bf16" and device == "cuda" and not cuda_bf16:
        raise ConfigError("this GPU has no bf16: set train.precision=fp16 (or auto)")
    if requested != "auto":
        return requested
    if device == "cuda":
        return "bf16" if cuda_bf16 else "fp16"
    # bf16 autocast trains ~1.5x faster on CPUs with native bf16; emulated it runs at ~1 GFLOP/s.
    return "bf16" if cpu_bf16 else "fp32"


def _training_args(
    train: TrainConfig, out: Path, device: str, precision: str, seed: int, best_metric: str, epochs: float
) -> TrainingArguments:
    by_steps = train.save_steps is not None
    return TrainingArguments(
        output_dir=str(out),
        num_train_epochs=epochs,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.eval_batch_size,
        learning_rate=train.learning_rate,
        weight_decay=train.weight_decay,
        warmup_steps=train.warmup_ratio,  # a float below 1 is a ratio of all steps
        lr_scheduler_type="linear",
        eval_strategy="steps" if by_steps else "epoch",
        save_strategy="steps" if by_steps else "epoch",
        eval_steps=train.save_steps,
        save_steps=train.save_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model=best_metric,
        greater_is_better=best_metric not in LOWER_IS_BETTER,
        train_sampling_strategy="group_by_length",
        logging_strategy="steps",
        logging_steps=0.02,  # a ratio of all steps: about 50 points on every learning curve
        seed=seed,
        data_seed=seed,
        use_cpu=device == "cpu",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        tf32=device == "cuda" and torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8,
        report_to="none",
        dataloader_num_workers=0,
        # Progress bars on a terminal; in CI, a worker or a file, one readable line per evaluation instead (_ReadableLog).
        disable_tqdm=not interactive(),
        torch_compile=train.compile,
        ddp_backend=("gloo" if device == "cpu" else "nccl") if train.nproc > 1 else None,
    )


class WeightedLossTrainer(Trainer):
    """The Trainer with per-class weights (cross-entropy) or per-label pos_weight (binary cross-entropy) in the loss."""

    def __init__(self, *args, loss_weights: list[float], problem_type: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_weights = torch.tensor(loss_weights, dtype=torch.float32)
        self.problem_type = problem_type

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs.logits.float()
        weights = self.loss_weights.to(logits.device)
        if self.problem_type == "multi_label_classification":
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weights)
        else:
            loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), weight=weights)
        return (loss, outputs) if return_outputs else loss


MIN_OPTIMIZER_STEPS = 900  # train.epochs=auto: what 3 epochs of the default job give; a few dozen steps leave the loss falling
MAX_AUTO_EPOCHS = 20


def set_output_bias(model: torch.nn.Module, bias: list[float] | None) -> bool:
    """Set the bias of the head's output layer (the last Linear of model.classifier with one output per value)."""
    if bias is None:
        return False
    head = getattr(model, "classifier", None)
    layers = [m for m in head.modules() if isinstance(m, torch.nn.Linear)] if isinstance(head, torch.nn.Module) else []
    if not layers or layers[-1].bias is None or layers[-1].out_features != len(bias):
        return False  # a head of another shape keeps its library init
    with torch.no_grad():
        layers[-1].bias.copy_(torch.tensor(bias, dtype=layers[-1].bias.dtype))
    return True


def choose_epochs(requested, train_rows: int, batch_size: int, world_size: int = 1) -> tuple[float, str]:
    """(epochs, why): an explicit number as given; auto enough for MIN_OPTIMIZER_STEPS, between 1 and MAX_AUTO_EPOCHS."""
    if requested != "auto":
        return float(requested), "train.epochs as set"
    per_epoch = max(1, math.ceil(train_rows / (batch_size * world_size)))
    epochs = min(MAX_AUTO_EPOCHS, max(1, math.ceil(MIN_OPTIMIZER_STEPS / per_epoch)))
    return float(epochs), (
        f"train.epochs=auto: {epochs} epochs x {per_epoch} steps = {epochs * per_epoch} optimizer steps "
        f"(aim: at least {MIN_OPTIMIZER_STEPS}, between 1 and {MAX_AUTO_EPOCHS} epochs; early stopping may end sooner)"
    )


def best_epoch_metric(task: str, compare_on: str | None, spec: dict | None = None) -> str:
    """The metric that picks the best epoch: registry.compare_on when training evaluation computes it, else the type's default."""
    task_type = get_task_type(task).for_target(spec or {})
    return compare_on if compare_on in task_type.training_metric_names else task_type.compare_on


CHECKPOINT_MANIFEST = "checksums.json"


def write_checkpoint_manifest(folder: Path) -> None:
    """Record a sha256 per file of a finished checkpoint (written last, atomically), as the cache does for its entries."""
    files = {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file() and p.name != CHECKPOINT_MANIFEST}
    tmp = folder / f".{CHECKPOINT_MANIFEST}.tmp"
    tmp.write_text(json.dumps(files, indent=1))
    tmp.replace(folder / CHECKPOINT_MANIFEST)


def checkpoint_problem(folder: Path) -> str | None:
    """Why a checkpoint cannot be resumed from (unfinished, or a file truncated or changed since it was saved), else None."""
    try:
        json.loads((folder / "trainer_state.json").read_text())
        recorded = json.loads((folder / CHECKPOINT_MANIFEST).read_text())
    except (OSError, ValueError):
        return "it was not finished (killed while saving?)"
    for name, digest in recorded.items():
        path = folder / name
        if not path.is_file() or file_sha256(path) != digest:
            return f"{name} is missing or does not match its checksum"
    return None


def interactive() -> bool:
    """Whether a person watches a terminal (progress bars) rather than a log file or a CI console."""
    import sys

    return sys.stderr.isatty()


class _ReadableLog(TrainerCallback):
    """One line per evaluation (and every fifth training log: ~10 a run) through the step logger, not raw dicts or escape codes."""

    def __init__(self):
        self.train_logs = 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if not state.is_world_process_zero:
            return
        if any(k.startswith("eval_") for k in logs):
            figures = ", ".join(
                f"{k.removeprefix('eval_')} {v:.4f}"
                for k, v in logs.items()
                if k.startswith("eval_") and isinstance(v, float) and "runtime" not in k and "per_second" not in k
            )
            step_logger().info(
                "fine_tune: epoch %.1f/%.0f, step %d/%d, validation %s",
                state.epoch or 0,
                args.num_train_epochs,
                state.global_step,
                state.max_steps,
                figures,
            )
        elif "loss" in logs:
            self.train_logs += 1
            if self.train_logs % 5 == 0:
                step_logger().info(
                    "fine_tune: step %d/%d, training loss %.4f, learning rate %.2e",
                    state.global_step,
                    state.max_steps,
                    logs["loss"],
                    logs.get("learning_rate", 0.0),
                )


class _ChecksumCheckpoints(TrainerCallback):
    """Writes the checksum manifest of each checkpoint once the Trainer has saved it (the main process only)."""

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            write_checkpoint_manifest(folder)


def last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest checkpoint whose files all match the checksums recorded when it was saved; newer
    partial or damaged ones are removed (one log line each) so training can write them again."""
    if not checkpoints.is_dir():
        return None
    found = sorted(
        (p for p in checkpoints.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
        reverse=True,
    )
    for i, candidate in enumerate(found):
        problem = checkpoint_problem(candidate)
        if problem is None:
            return str(candidate)
        fallback = next((p.name for p in found[i + 1 :] if checkpoint_problem(p) is None), None)
        step_logger().warning(
            "checkpoint %s cannot be resumed from: %s; removed it, %s",
            candidate.name,
            problem,
            f"resuming from {fallback}" if fallback else "starting from the beginning",
        )
        shutil.rmtree(candidate, ignore_errors=True)
    return None


def train_model(
    tokens: TokenizeResult,
    model_cfg: ModelConfig,
    train: TrainConfig,
    seed: int,
    folder: Path,
    checkpoints: Path,
    task: str = "classification",
    compare_on: str | None = None,
    extra_callbacks: list | None = None,
) -> dict:
    """Train and save the best model into folder/model; returns what the cache manifest records (device, epochs, history)."""
    device = choose_device(train.device, torch.cuda.is_available())
    precision = choose_precision(train.precision, device, device == "cuda" and torch.cuda.is_bf16_supported(), cpu_has_fast_bf16())
    task_type, spec = get_task_type(task), tokens.target
    best_metric = best_epoch_metric(task, compare_on, spec)
    path = resolve_model_path(model_cfg.name_or_path)
    set_seed(seed)  # before the model is built: the head's init depends on it
    dropout = {}
    if train.dropout is not None:
        dropout = dropout_overrides(
            AutoConfig.from_pretrained(path, trust_remote_code=model_cfg.trust_remote_code).to_dict(), train.dropout
        )
        if not dropout:
            step_logger().warning(
                "fine_tune: train.dropout=%s, but this model's config names no dropout this knows (%s): it trains with its own; "
                "set train.dropout=null to say so",
                train.dropout,
                ", ".join(DROPOUT_KEYS),
            )
    model = task_type.model_class().from_pretrained(
        path,
        **task_type.head_config(spec),
        **dropout,
        # On CPUs, SDPA's fused backward is slower than plain matmuls at these lengths (100 of 250 ms a MiniLM step
        # with dropout 0; with dropout it falls back to the plain path anyway): train with the eager attention there.
        **({"attn_implementation": "eager"} if device == "cpu" and not model_cfg.trust_remote_code else {}),
        trust_remote_code=model_cfg.trust_remote_code,
    )
    frozen = freeze_bottom(model, train.freeze_layers)
    frozen += [name for name in freeze_word_embeddings(model, train.freeze_embeddings) if name not in frozen]
    # What predict and the registry need to use the model travels in its config.json.
    model.config.finetune_flow = {
        "task": task,
        "target": spec,
        "decision": {},
        "text_pair": tokens.text_pair,
        "max_length": tokens.max_length,
        "long_text": tokens.long_text,
    }
    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, trust_remote_code=model_cfg.trust_remote_code)
    # Windows of a chunked text train as rows of their own; evaluation during training scores windows too.
    bookkeeping = ["row_id", "document"]
    train_set, val_set = (load_from_disk(tokens.paths[name]) for name in ("train", "validation"))
    train_set = train_set.remove_columns([c for c in bookkeeping if c in train_set.column_names])
    val_set = val_set.remove_columns([c for c in bookkeeping if c in val_set.column_names])
    callbacks = [EarlyStoppingCallback(train.early_stopping_patience)] if train.early_stopping_patience else []
    callbacks.append(_ChecksumCheckpoints())
    if not interactive():
        callbacks.append(_ReadableLog())
    weights = task_type.loss_weights(train_set["labels"], spec, train.class_weights)
    set_output_bias(model, task_type.initial_bias(train_set["labels"], weights))
    epochs, epochs_why = choose_epochs(train.epochs, len(train_set), train.batch_size, train.nproc)
    step_logger().info("fine_tune: %s", epochs_why)
    weighted = {"loss_weights": weights, "problem_type": task_type.problem_type} if weights is not None else {}
    args = _training_args(train, checkpoints, device, precision, seed, best_metric, epochs)
    # Off (1.0), the Trainer builds its own optimizer exactly as before.
    optimizer = {"optimizers": (layer_decay_optimizer(model, args, train.layer_lr_decay), None)} if train.layer_lr_decay != 1.0 else {}
    callbacks.extend(extra_callbacks or [])
    trainer = (WeightedLossTrainer if weights is not None else Trainer)(
        **weighted,
        **optimizer,
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        processing_class=tokenizer,
        data_collator=task_type.collator(tokenizer),  # pads each batch to its own longest text
        compute_metrics=lambda p: task_type.training_metrics(p.predictions, p.label_ids, spec),
        callbacks=callbacks,
    )
    if not interactive():
        trainer.remove_callback(PrinterCallback)  # it prints each log as a raw dict
    resume = last_complete_checkpoint(checkpoints)
    with attention_kernels():  # per-batch padding: a new length nearly every batch, which cuDNN's attention re-plans
        result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(folder / "model"))  # the main process only, under DDP
    if trainer.is_world_process_zero():
        (folder / "training_config.json").write_text(
            json.dumps(
                {
                    "train": train.model_dump(),
                    "model": model_cfg.model_dump(),
                    "seed": seed,
                    "task": task,
                    "target": spec,
                    "best_metric": best_metric,
                },
                indent=1,
            )
        )
    return {
        "device": device,
        "precision": precision,
        "resumed_from": Path(resume).name if resume else None,
        "train_seconds": result.metrics.get("train_runtime"),
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        "train_loss": result.training_loss,
        "epochs_run": trainer.state.epoch,
        "best_checkpoint": Path(trainer.state.best_model_checkpoint).name if trainer.state.best_model_checkpoint else None,
        "loss_weights": dict(zip(spec["labels"], weights)) if weights is not None else None,
        "epochs_planned": epochs,
        "epochs_why": epochs_why,
        "best_metric_name": best_metric,
        "best_val_metric": trainer.state.best_metric,
        "history": trainer.state.log_history,
        "nproc": trainer.args.world_size,
        "frozen_parameters": len(frozen),
    }


def train_distributed(
    tokens: TokenizeResult,
    model_cfg: ModelConfig,
    train: TrainConfig,
    seed: int,
    folder: Path,
    checkpoints: Path,
    task: str = "classification",
    compare_on: str | None = None,
) -> dict:
    """train_model in train.nproc processes under torchrun (HF Trainer's DDP); rank 0 saves and reports.

    Runs `python -m torch.distributed.run` from this venv; each rank gets an equal share of the CPU threads.
    """
    import dataclasses
    import os
    import socket
    import subprocess
    import sys

    job = folder / ".ddp-job.json"
    result = folder / ".ddp-result.json"
    job.write_text(
        json.dumps(
            {
                "tokens": dataclasses.asdict(tokens),
                "model": model_cfg.model_dump(),
                "train": train.model_dump(),
                "seed": seed,
                "folder": str(folder),
                "checkpoints": str(checkpoints),
                "result": str(result),
                "task": task,
                "compare_on": compare_on,
            }
        )
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    threads = max(1, (os.cpu_count() or 1) // train.nproc)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(PROJECT_ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(train.nproc),
        "--nnodes",
        "1",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        "-m",
        "tasks.training.ddp",
        str(job),
    ]
    done = subprocess.run(cmd, env=env)
    if done.returncode != 0 or not result.is_file():
        raise RuntimeError(
            f"distributed training (torchrun, {train.nproc} processes) failed with exit code {done.returncode}; see its log above"
        )
    meta = json.loads(result.read_text())
    job.unlink()
    result.unlink()
    return meta


@task(name="fine_tune")
@timed
def fine_tune(
    tokens: TokenizeResult,
    model: ModelConfig,
    train: TrainConfig,
    cache: CacheConfig,
    seed: int,
    task: str = "classification",
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
        pruning: a sweep trial's study and number (tasks/pruning.py): report validation after each epoch, stop if pruned.
    Returns:
        path of the saved model, the key, device/precision used and the training history.
    """
    logger = step_logger()
    base = resolve_model_path(model.name_or_path)
    # nproc changes the effective batch, so it is part of the key; left out at 1 so older entries stay valid
    settings = train.model_dump(exclude={"eval_batch_size"} | ({"nproc"} if train.nproc == 1 else set()))
    # likewise the layer-wise options while they are off
    settings = {k: v for k, v in settings.items() if k not in LAYER_OPTIONS_OFF or v != LAYER_OPTIONS_OFF[k]}
    best_metric = best_epoch_metric(task, compare_on, tokens.target)
    selection = {"task": task, "best_metric": best_metric} if (task, best_metric) != ("classification", "f1_macro") else None
    revision = get_task_type(task).training_revision  # a change in how the type trains: its cached models are not re-used
    if revision != 1:
        selection = {**(selection or {}), "training_revision": revision}
    key = fingerprint(
        "train", tokens.key, model_fingerprint(base), settings, model.trust_remote_code, seed, *([selection] if selection else [])
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
