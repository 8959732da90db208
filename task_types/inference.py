"""Batched forward passes every task type runs its model with: evaluation, champion re-scoring and predict.

Inputs are fed in length-sorted batches (each batch pads little) without gradients, with bf16 autocast
where asked; outputs come back in the caller's order. What a saved model was trained for (type, target encoding,
output rule) travels in its config as `finetune_flow` (model_task).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

INPUT_FEATURES = ("input_ids", "attention_mask", "token_type_ids")


def cpu_has_fast_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX); without it bf16 is ~100x slower."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set(cpuinfo.split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def attention_kernels():
    """A context in which scaled-dot-product attention never picks cuDNN's kernel (training and inference).

    Per-batch padding gives nearly every batch a new length, and cuDNN plans each new shape again on the host: on an
    H200 that took 140 ms of a 190 ms MiniLM training step (bench/README.md, GPU). Flash and memory-efficient attention
    take any length at no host cost; CPUs have no cuDNN kernel to leave out."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def length_order(lengths: list[int]) -> np.ndarray:
    """Indices that sort rows by length, so each batch pads little."""
    return np.argsort(np.asarray(lengths), kind="stable")


def forward_batches(model, tokenizer, columns: dict, runner, read) -> list:
    """read(model output, batch indices, padded length) for each length-sorted batch of the tokenized inputs in columns
    (input_ids, attention_mask, ...); the model runs without gradients and, where the runner asks, under bf16 autocast."""
    import torch
    from transformers import DataCollatorWithPadding

    model.to(runner.device).eval()
    collate = DataCollatorWithPadding(tokenizer)
    features = [k for k in INPUT_FEATURES if k in columns]
    order = length_order([len(ids) for ids in columns["input_ids"]])
    found = []
    # One autocast around all batches, under no_grad rather than inference_mode: autocast then casts each weight to bf16
    # once a call, not once a batch (it keeps no casts under inference_mode). The numbers are the same either way;
    # on a 2-core AMX Xeon the MiniLM forward ran 1.12x faster (bench/README.md, prediction).
    autocast = torch.autocast(device_type=runner.device, dtype=torch.bfloat16) if runner.bf16 else contextlib.nullcontext()
    with torch.no_grad(), attention_kernels(), autocast:
        for start in range(0, len(order), runner.batch_size):
            idx = order[start : start + runner.batch_size]
            batch = collate([{k: columns[k][i] for k in features} for i in idx])
            batch = {k: v.to(runner.device) for k, v in batch.items()}
            found.append(read(model(**batch), idx))
    return found


def predict_logits(model, tokenizer, columns: dict, runner) -> np.ndarray:
    """Raw logits (inputs x outputs) for tokenized inputs given as columns, in their order."""
    out = np.zeros((len(columns["input_ids"]), model.config.num_labels), dtype=np.float32)

    def read(output, idx):
        out[idx] = output.logits.float().cpu().numpy()

    forward_batches(model, tokenizer, columns, runner, read)
    return out


def per_document(logits: np.ndarray, documents, how: str = "mean") -> np.ndarray:
    """Window logits joined into one row per document (documents[i] is window i's document, 0..n-1): mean or max."""
    documents = np.asarray(documents)
    count = int(documents.max()) + 1 if len(documents) else 0
    out = np.full((count, logits.shape[1]), -np.inf if how == "max" else 0.0, dtype=np.float64)
    if how == "max":
        np.maximum.at(out, documents, logits)
        return out.astype(np.float32)
    np.add.at(out, documents, logits)
    return (out / np.bincount(documents, minlength=count)[:, None]).astype(np.float32)


LEGACY_TASK = "classification"  # models registered before task types existed carry no task: they are single-label classifiers


def task_of(settings: dict) -> str:
    """The task named in a saved model's config.json settings (LEGACY_TASK where it names none)."""
    return (settings.get("finetune_flow") or {}).get("task") or LEGACY_TASK


def model_task(config) -> dict:
    """The task a saved model was trained for: {"task", "target", "decision", "text_pair", ...}."""
    info = dict(getattr(config, "finetune_flow", None) or {})
    info.setdefault("task", LEGACY_TASK)
    info.setdefault("target", {"labels": [config.id2label[i] for i in range(config.num_labels)]})
    info.setdefault("decision", {})
    info.setdefault("text_pair", False)
    return info
