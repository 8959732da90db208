"""The fine-tuning recipe the fine-tune step runs (in its own process, in each torchrun rank, or in each Ray worker).

Life cycle, one function each: validate the choices (device, precision, the best-epoch metric) -> set up (seed, model
with the task type's head, data, callbacks, optimizer, Trainer) -> train (resuming from the last intact checkpoint of
the same key) -> save the best model, its task and the resolved config. The step (tasks/train.py) keys, caches and
cleans up; this module knows nothing of the cache.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
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

from schemas.config import ModelConfig, TrainConfig, resolve_model_path
from schemas.errors import ConfigError
from schemas.results import TokenizeResult
from task_types import best_epoch_metric, get_task_type
from task_types.base import LOWER_IS_BETTER
from task_types.inference import attention_kernels, cpu_has_fast_bf16
from tasks.runtime.cache import file_sha256
from tasks.runtime.logs import step_logger
from tasks.training.layers import (
    DROPOUT_KEYS,
    dropout_overrides,
    fold_used_rows,
    freeze_bottom,
    freeze_word_embeddings,
    layer_decay_optimizer,
    train_used_rows,
)


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


def loader_workers(setting: int | str, device: str, cpus: int | None = None) -> int:
    """Data-loader processes for train.dataloader_workers, for each of the Trainer's loaders (training and validation):
    a number as given; auto none on a CPU (its cores train, and collating there costs little), and on a GPU 4, at most
    a quarter of this process's CPU share (torch's threads: the runners give each torchrun rank, Ray worker or sweep
    trial its share), so both loaders together hold at most half of it."""
    if setting != "auto":
        return int(setting)
    if device != "cuda":
        return 0
    return min(4, (cpus if cpus is not None else torch.get_num_threads()) // 4)


def validation_batch_size(train: TrainConfig, device: str) -> int:
    """Examples per step of the validation during training: on a CPU the smaller of train.eval_batch_size and the
    training batch (the kernels for the training batch's shapes are built already, and smaller length-sorted batches
    pad less: 0.72 s against 1.4 s for the first validation of 375 MiniLM rows at 32 and at 128 on a 2-core CPU); on a
    GPU train.eval_batch_size."""
    if device == "cpu":
        return min(train.eval_batch_size, train.batch_size)
    return train.eval_batch_size


def _training_args(
    train: TrainConfig, out: Path, device: str, precision: str, seed: int, best_metric: str, epochs: float
) -> TrainingArguments:
    by_steps = train.save_steps is not None
    return TrainingArguments(
        output_dir=str(out),
        num_train_epochs=epochs,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=validation_batch_size(train, device),
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
        dataloader_num_workers=(workers := loader_workers(train.dataloader_workers, device)),
        dataloader_persistent_workers=workers > 0,  # started once, not again each epoch
        # Progress bars on a terminal; in CI, a worker or a file, one readable line per evaluation instead (_ReadableLog).
        disable_tqdm=not interactive(),
        torch_compile=train.compile,
        ddp_backend=("gloo" if device == "cpu" else "nccl") if train.world_size() > 1 else None,
    )


class WeightedLossTrainer(Trainer):
    """The Trainer with per-output loss weights: the task type's weighted_loss (cross-entropy with class weights, or
    binary cross-entropy with per-label pos_weight)."""

    def __init__(self, *args, loss_weights: list[float], task_type, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_weights = torch.tensor(loss_weights, dtype=torch.float32)
        self.task_type = task_type

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = self.task_type.weighted_loss(outputs.logits.float(), labels, self.loss_weights.to(outputs.logits.device))
        return (loss, outputs) if return_outputs else loss


MIN_OPTIMIZER_STEPS = 900  # train.epochs=auto: what 3 epochs of the default job give; a few dozen steps leave the loss falling
MIN_EXAMPLES = MIN_OPTIMIZER_STEPS * 32  # ... counted in examples (at batch 32), so a bigger batch does not mean more epochs
BATCH_LADDER = (32, 64, 128, 256, 512)  # train.batch_size=auto on a GPU: the largest of these whose step fits
CPU_BATCH = 32
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
    """(epochs, why): an explicit number as given; auto enough passes to see MIN_EXAMPLES training examples (what 900
    optimizer steps at batch 32 see), between 1 and MAX_AUTO_EPOCHS, whatever the batch size."""
    if requested != "auto":
        return float(requested), "train.epochs as set"
    per_epoch = max(1, math.ceil(train_rows / (batch_size * world_size)))
    epochs = min(MAX_AUTO_EPOCHS, max(1, math.ceil(MIN_EXAMPLES / max(train_rows, 1))))
    return float(epochs), (
        f"train.epochs=auto: {epochs} epochs x {train_rows} examples ({epochs * per_epoch} optimizer steps at batch {batch_size}"
        f"{f' x {world_size} processes' if world_size > 1 else ''}; aim: at least {MIN_EXAMPLES} examples, what {MIN_OPTIMIZER_STEPS} steps "
        f"at batch 32 see, between 1 and "
        f"{MAX_AUTO_EPOCHS} epochs; early stopping may end sooner)"
    )


def pick_batch_size(fits, ladder: tuple[int, ...] = BATCH_LADDER) -> int:
    """The largest batch of the ladder for which fits(batch) holds, tried from the smallest up (the first to fail ends the
    search: memory only grows with the batch); the smallest when none fits."""
    chosen = ladder[0]
    for size in ladder:
        if not fits(size):
            break
        chosen = size
    return chosen


def gpu_step_fits(model, batch: int, length: int, device: str) -> bool:
    """Whether one forward and backward pass of batch inputs of length tokens fits in the GPU's memory (with 10% to spare)."""
    import torch

    torch.cuda.empty_cache()
    try:
        ids = torch.ones((batch, length), dtype=torch.long, device=device)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
        (out.logits.float().sum() if hasattr(out, "logits") else out.start_logits.float().sum()).backward()
        model.zero_grad(set_to_none=True)
        used, total = torch.cuda.max_memory_allocated(device), torch.cuda.get_device_properties(device).total_memory
        return used < 0.9 * total
    except torch.cuda.OutOfMemoryError:
        model.zero_grad(set_to_none=True)
        return False
    finally:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def choose_batch_size(requested, device: str, model=None, length: int = 128) -> tuple[int, str]:
    """(batch size, why) for train.batch_size: as set; auto: CPU_BATCH on a CPU, on a GPU the largest of BATCH_LADDER whose
    step fits (gpu_step_fits)."""
    if requested != "auto":
        return int(requested), "train.batch_size as set"
    if device != "cuda" or model is None:
        return CPU_BATCH, f"train.batch_size=auto: {CPU_BATCH} on a CPU"
    chosen = pick_batch_size(lambda size: gpu_step_fits(model, size, length, device))
    return chosen, f"train.batch_size=auto: {chosen}, the largest of {list(BATCH_LADDER)} whose step at {length} tokens fits the GPU"


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


class LeanLastCheckpoint:
    """Mixed into every recipe Trainer: the checkpoint of the last step of a run of whole epochs holds the weights and
    the Trainer's state but no optimizer, scheduler or RNG state. Nothing trains after it (a run resumed from it starts
    past its last epoch, reloads the best model and saves it), so those states (twice the trainable parameters) would
    be written and checksummed for nothing at the end of every run: ~0.4 s of a one-epoch MiniLM run on a 2-core CPU.
    With a fraction of an epoch (train.epochs=2.5) a resume re-enters the unfinished epoch, so every checkpoint is whole.
    When the best checkpoint is the last step's, the best model is already in memory and is not read back."""

    def _nothing_trains_after(self) -> bool:
        whole_epochs = float(self.args.num_train_epochs).is_integer() and self.args.max_steps <= 0
        return whole_epochs and 0 < self.state.max_steps <= self.state.global_step

    def _save_optimizer_and_scheduler(self, output_dir):
        if not self._nothing_trains_after():
            super()._save_optimizer_and_scheduler(output_dir)

    def _save_rng_state(self, output_dir):
        if not self._nothing_trains_after():
            super()._save_rng_state(output_dir)

    def _load_best_model(self):
        # The best checkpoint is the one the last step wrote: the weights in memory are the ones it holds.
        if not best_is_in_memory(self.state.best_model_checkpoint, self.state.global_step):
            super()._load_best_model()


def best_is_in_memory(best_checkpoint: str | None, global_step: int) -> bool:
    """Whether the best checkpoint is the one written at global_step, the training's last (nothing to load back)."""
    return best_checkpoint is not None and Path(best_checkpoint).name == f"checkpoint-{global_step}"


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


@dataclass(frozen=True)
class Choices:
    """What validate() fixed before anything is built."""

    device: str
    precision: str
    best_metric: str


def validate(train: TrainConfig, task: str, compare_on: str | None, spec: dict) -> Choices:
    """Device, precision and the best-epoch metric, refused with what to change before any model is loaded."""
    device = choose_device(train.device, torch.cuda.is_available())
    precision = choose_precision(train.precision, device, device == "cuda" and torch.cuda.is_bf16_supported(), cpu_has_fast_bf16())
    return Choices(device, precision, best_epoch_metric(task, compare_on, spec))


def build_model(tokens: TokenizeResult, model_cfg: ModelConfig, train: TrainConfig, task: str, device: str, seed: int):
    """The base model with the task type's head, the dropout asked for, frozen layers, and the task in its config.json."""
    task_type, spec = get_task_type(task), tokens.target
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
        **tokens.encoding,
    }
    return model, frozen


def set_up(
    tokens: TokenizeResult,
    model_cfg: ModelConfig,
    train: TrainConfig,
    task: str,
    choices: Choices,
    seed: int,
    checkpoints: Path,
    extra_callbacks: list | None = None,
) -> tuple[Trainer, dict]:
    """The Trainer over the tokenized train and validation splits, and the facts of the set-up (epochs, weights, frozen)."""
    if train.learning_rate == "auto" or train.batch_size == "auto":
        raise ConfigError(
            "train.learning_rate / train.batch_size = auto are chosen by the fine-tune step (tasks/train.py: resolve_rates) first"
        )
    import pandas as pd
    from datasets import load_from_disk

    task_type, spec = get_task_type(task), tokens.target
    model, frozen = build_model(tokens, model_cfg, train, task, choices.device, seed)
    tokenizer = AutoTokenizer.from_pretrained(
        resolve_model_path(model_cfg.name_or_path), use_fast=True, trust_remote_code=model_cfg.trust_remote_code
    )
    train_set, val_set = (load_from_disk(tokens.paths[name]) for name in ("train", "validation"))
    metrics = task_type.training_metrics_fn(spec, val_set, pd.read_parquet(tokens.sources["validation"]) if tokens.sources else None)
    # Bookkeeping columns (row ids, windows, offsets) stay out of the model's inputs; the metrics above keep what they need.
    train_set = train_set.remove_columns([c for c in task_type.feature_columns if c in train_set.column_names])
    val_set = val_set.remove_columns([c for c in task_type.feature_columns if c in val_set.column_names])
    used_rows = train_used_rows(model, train_set.with_format("arrow")["input_ids"], train.embedding_rows)
    if used_rows is not None:
        step_logger().info(
            "fine_tune: train.embedding_rows=used: %d of %d word-embedding rows are the training data's tokens and train; "
            "the rest stay as loaded",
            used_rows,
            model.get_input_embeddings().num_embeddings,
        )
    callbacks = [EarlyStoppingCallback(train.early_stopping_patience)] if train.early_stopping_patience else []
    callbacks.append(_ChecksumCheckpoints())
    if not interactive():
        callbacks.append(_ReadableLog())
    callbacks.extend(extra_callbacks or [])
    targets = train_set["labels"] if "labels" in train_set.column_names else []
    weights = task_type.loss_weights(targets, spec, train.class_weights)
    set_output_bias(model, task_type.initial_bias(targets, weights))
    epochs, epochs_why = choose_epochs(train.epochs, len(train_set), train.batch_size, train.world_size())
    step_logger().info("fine_tune: %s", epochs_why)
    args = _training_args(train, checkpoints, choices.device, choices.precision, seed, choices.best_metric, epochs)
    # Off (1.0), the Trainer builds its own optimizer exactly as before; auto is the task type's.
    decay = task_type.default_layer_lr_decay if train.layer_lr_decay == "auto" else train.layer_lr_decay
    optimizer = {"optimizers": (layer_decay_optimizer(model, args, decay), None)} if decay != 1.0 else {}
    weighted = {"loss_weights": weights, "task_type": task_type} if weights is not None else {}
    base = WeightedLossTrainer if weights is not None else Trainer
    trainer = type(f"{task_type.name.title().replace('_', '')}Trainer", (*task_type.trainer_mixins(), LeanLastCheckpoint, base), {})(
        **weighted,
        **optimizer,
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        processing_class=tokenizer,
        data_collator=task_type.collator(tokenizer, train.pad_to_multiple_of),  # pads each batch to its own longest input
        compute_metrics=metrics,
        callbacks=callbacks,
    )
    if not interactive():
        trainer.remove_callback(PrinterCallback)  # it prints each log as a raw dict
    facts = {
        "epochs_planned": epochs,
        "epochs_why": epochs_why,
        "loss_weights": dict(zip(spec["labels"], weights)) if weights is not None else None,
        "frozen_parameters": len(frozen),
        "embedding_rows_trained": used_rows,
    }
    return trainer, facts


def run(trainer: Trainer, checkpoints: Path):
    """Train, resuming from the newest intact checkpoint of this key; (the Trainer's result, the checkpoint resumed from)."""
    resume = last_complete_checkpoint(checkpoints)
    with attention_kernels():  # per-batch padding: a new length nearly every batch, which cuDNN's attention re-plans
        result = trainer.train(resume_from_checkpoint=resume)
    return result, resume


def save(
    trainer: Trainer, folder: Path, model_cfg: ModelConfig, train: TrainConfig, seed: int, task: str, spec: dict, best_metric: str
) -> None:
    """The best model (the main process only, under DDP) and the resolved config it was trained with."""
    fold_used_rows(trainer.model)  # a plain word embedding again, as every reader of the model expects
    trainer.save_model(str(folder / "model"))
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


def train_model(
    tokens: TokenizeResult,
    model_cfg: ModelConfig,
    train: TrainConfig,
    seed: int,
    folder: Path,
    checkpoints: Path,
    task: str,
    compare_on: str | None = None,
    extra_callbacks: list | None = None,
) -> dict:
    """Train and save the best model into folder/model; returns what the cache manifest records (device, epochs, history)."""
    choices = validate(train, task, compare_on, tokens.target)
    trainer, facts = set_up(tokens, model_cfg, train, task, choices, seed, checkpoints, extra_callbacks)
    result, resume = run(trainer, checkpoints)
    save(trainer, folder, model_cfg, train, seed, task, tokens.target, choices.best_metric)
    return finish(trainer, choices, result, resume, facts)


def finish(trainer: Trainer, choices: Choices, result, resume: str | None, facts: dict) -> dict:
    """What the cache manifest records of a finished training: device, timings, epochs, the best epoch, the history."""
    return {
        "device": choices.device,
        "precision": choices.precision,
        "resumed_from": Path(resume).name if resume else None,
        "train_seconds": result.metrics.get("train_runtime"),
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        "train_loss": result.training_loss,
        "epochs_run": trainer.state.epoch,
        "best_checkpoint": Path(trainer.state.best_model_checkpoint).name if trainer.state.best_model_checkpoint else None,
        "best_metric_name": choices.best_metric,
        "best_val_metric": trainer.state.best_metric,
        "history": trainer.state.log_history,
        "nproc": trainer.args.world_size,
        **facts,
    }
