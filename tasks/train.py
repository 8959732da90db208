"""Fine-tune: HF Trainer with dynamic padding, length-grouped batches, early stopping and resume.

Life cycle: validate the choices (device, precision) -> set up (seed, model,
data) -> train (resuming from the last checkpoint of the same key) -> save the
best model, its label map and the resolved config -> clean up checkpoints.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from datasets import load_from_disk
from prefect import task
from transformers import (
    AutoTokenizer,
    EarlyStoppingCallback,
    Trainer,
    TrainingArguments,
    set_seed,
)

from schemas.config import CacheConfig, ModelConfig, TrainConfig, resolve_model_path
from schemas.errors import ConfigError
from tasks.logs import step_logger, timed
from tasks.cache import StepCache, fingerprint, model_fingerprint
from task_types import get_task_type
from task_types.base import LOWER_IS_BETTER


def choose_device(requested: str, cuda_available: bool) -> str:
    """'cuda' or 'cpu' for the requested device."""
    if requested == "cuda" and not cuda_available:
        raise ConfigError("train.device=cuda but no GPU is visible: set train.device=auto or cpu")
    if requested == "auto":
        return "cuda" if cuda_available else "cpu"
    return requested


def cpu_has_fast_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX); without it bf16 is ~100x slower."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set(cpuinfo.split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


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


def _training_args(train: TrainConfig, out: Path, device: str, precision: str, seed: int, best_metric: str) -> TrainingArguments:
    by_steps = train.save_steps is not None
    return TrainingArguments(
        output_dir=str(out),
        num_train_epochs=train.epochs,
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
        disable_tqdm=False,
        torch_compile=train.compile,
        ddp_backend=("gloo" if device == "cpu" else "nccl") if train.nproc > 1 else None,
    )


def best_epoch_metric(task: str, compare_on: str | None, spec: dict | None = None) -> str:
    """The metric that picks the best epoch: registry.compare_on when training evaluation computes it, else the type's default."""
    task_type = get_task_type(task).for_target(spec or {})
    return compare_on if compare_on in task_type.training_metric_names else task_type.compare_on


def last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest checkpoint a killed run finished writing (trainer_state.json is saved last);
    newer partial ones are removed so training can write them again."""
    if not checkpoints.is_dir():
        return None
    found = sorted((p for p in checkpoints.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for candidate in found:
        try:
            json.loads((candidate / "trainer_state.json").read_text())
            return str(candidate)
        except (OSError, ValueError):  # missing or cut short: the run was killed while saving it
            shutil.rmtree(candidate, ignore_errors=True)
    return None


def train_model(tokens: dict, model_cfg: ModelConfig, train: TrainConfig, seed: int, folder: Path, checkpoints: Path,
                task: str = "classification", compare_on: str | None = None) -> dict:
    """Train and save the best model into folder/model; returns the training history."""
    device = choose_device(train.device, torch.cuda.is_available())
    precision = choose_precision(train.precision, device, device == "cuda" and torch.cuda.is_bf16_supported(), cpu_has_fast_bf16())
    task_type, spec = get_task_type(task), tokens["target"]
    best_metric = best_epoch_metric(task, compare_on, spec)
    path = resolve_model_path(model_cfg.name_or_path)
    set_seed(seed)  # before the model is built: the head's init depends on it
    model = task_type.model_class().from_pretrained(
        path, **task_type.head_config(spec), trust_remote_code=model_cfg.trust_remote_code,
    )
    # What predict and the registry need to use the model travels in its config.json.
    model.config.finetune_flow = {"task": task, "target": spec, "decision": {}, "text_pair": bool(tokens.get("text_pair"))}
    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, trust_remote_code=model_cfg.trust_remote_code)
    train_set = load_from_disk(tokens["paths"]["train"]).remove_columns(["row_id"])
    val_set = load_from_disk(tokens["paths"]["validation"]).remove_columns(["row_id"])
    callbacks = [EarlyStoppingCallback(train.early_stopping_patience)] if train.early_stopping_patience else []
    trainer = Trainer(
        model=model,
        args=_training_args(train, checkpoints, device, precision, seed, best_metric),
        train_dataset=train_set,
        eval_dataset=val_set,
        processing_class=tokenizer,
        data_collator=task_type.collator(tokenizer),  # pads each batch to its own longest text
        compute_metrics=lambda p: task_type.training_metrics(p.predictions, p.label_ids, spec),
        callbacks=callbacks,
    )
    resume = last_complete_checkpoint(checkpoints)
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(folder / "model"))  # the main process only, under DDP
    if trainer.is_world_process_zero():
        (folder / "training_config.json").write_text(
            json.dumps({"train": train.model_dump(), "model": model_cfg.model_dump(), "seed": seed, "task": task, "target": spec,
                        "best_metric": best_metric}, indent=1)
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
        "best_metric_name": best_metric,
        "best_val_metric": trainer.state.best_metric,
        "history": trainer.state.log_history,
        "nproc": trainer.args.world_size,
    }


def train_distributed(tokens: dict, model_cfg: ModelConfig, train: TrainConfig, seed: int, folder: Path, checkpoints: Path,
                      task: str = "classification", compare_on: str | None = None) -> dict:
    """train_model in train.nproc processes under torchrun (HF Trainer's DDP); rank 0 saves and reports.

    Runs `python -m torch.distributed.run` from this venv; each rank gets an equal share of the CPU threads.
    """
    import os
    import socket
    import subprocess
    import sys

    job = folder / ".ddp-job.json"
    result = folder / ".ddp-result.json"
    job.write_text(json.dumps({"tokens": tokens, "model": model_cfg.model_dump(), "train": train.model_dump(), "seed": seed,
                               "folder": str(folder), "checkpoints": str(checkpoints), "result": str(result),
                               "task": task, "compare_on": compare_on}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    threads = max(1, (os.cpu_count() or 1) // train.nproc)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(train.nproc), "--nnodes", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "tasks.train_ddp", str(job)]
    done = subprocess.run(cmd, env=env)
    if done.returncode != 0 or not result.is_file():
        raise RuntimeError(f"distributed training (torchrun, {train.nproc} processes) failed with exit code {done.returncode}; see its log above")
    meta = json.loads(result.read_text())
    job.unlink()
    result.unlink()
    return meta


@task(name="fine_tune")
@timed
def fine_tune(tokens: dict, model: ModelConfig, train: TrainConfig, cache: CacheConfig, seed: int,
              task: str = "classification", compare_on: str | None = None) -> dict:
    """Fine-tune the model on the tokenized train split, selecting the best epoch on validation.

    Args:
        tokens: the tokenize step's result.
        model: base model and loading options.
        train: the training section of the config.
        cache: where step outputs (and resumable checkpoints) live.
        seed: the run's seed.
        task: the task type (head, loss, training metrics).
        compare_on: registry.compare_on, the metric that picks the best epoch (default: the task type's).
    Returns:
        path of the saved model, the key, device/precision used and the training history.
    """
    logger = step_logger()
    base = resolve_model_path(model.name_or_path)
    # nproc changes the effective batch, so it is part of the key; left out at 1 so older entries stay valid
    settings = train.model_dump(exclude={"eval_batch_size"} | ({"nproc"} if train.nproc == 1 else set()))
    best_metric = best_epoch_metric(task, compare_on, tokens["target"])
    selection = {"task": task, "best_metric": best_metric} if (task, best_metric) != ("classification", "f1_macro") else None
    key = fingerprint("train", tokens["key"], model_fingerprint(base), settings, model.trust_remote_code, seed, *([selection] if selection else []))
    checkpoints = cache.resolved_dir() / "checkpoints" / key
    if cache.refresh:
        shutil.rmtree(checkpoints, ignore_errors=True)

    def make(folder: Path) -> dict:
        run = train_distributed if train.nproc > 1 else train_model
        return run(tokens, model, train, seed, folder, checkpoints, task, compare_on)

    entry = StepCache(cache.resolved_dir(), "train", key).build(make, refresh=cache.refresh)
    shutil.rmtree(checkpoints, ignore_errors=True)
    meta = entry.meta
    logger.info(
        "fine_tune: %s/%s, %.1f epochs, best validation %s %.4f%s%s", meta["device"], meta["precision"],
        meta["epochs_run"] or 0, meta["best_metric_name"], meta["best_val_metric"] if meta["best_val_metric"] is not None else float("nan"),
        f", resumed from {meta['resumed_from']}" if meta["resumed_from"] else "", " (cached)" if entry.reused else "",
    )
    return {"path": str(entry.path / "model"), "key": key, "reused": entry.reused, "labels": tokens["labels"], "task": task, **meta}
