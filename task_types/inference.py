"""Batch inference shared by evaluation, champion re-scoring and batch prediction.

Rows are fed in length-sorted batches (each batch pads little) under torch.inference_mode,
with bf16 autocast where the hardware runs it fast; outputs come back in the caller's order.
The model's task (type, target encoding, output rule) travels in its config as `finetune_flow`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import DataCollatorWithPadding

from schemas.config import EVAL_BATCH_SIZE

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


# Every attention kernel but cuDNN's. Per-batch padding gives nearly every batch a new length, and cuDNN plans each
# new shape again on the host: on an H200 that took 140 ms of a 190 ms MiniLM training step (bench/README.md, GPU).
# Flash and memory-efficient attention take any length at no host cost; CPUs have no cuDNN kernel to leave out.
_ATTENTION_KERNELS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def attention_kernels():
    """A context in which scaled-dot-product attention never picks cuDNN's kernel (training and inference)."""
    return sdpa_kernel(_ATTENTION_KERNELS)


def length_order(lengths: list[int]) -> np.ndarray:
    """Indices that sort rows by length, so each batch pads little."""
    return np.argsort(np.asarray(lengths), kind="stable")


@torch.inference_mode()
def predict_logits(model, tokenizer, columns: dict, batch_size: int, device: str = "cpu", bf16: bool = False) -> np.ndarray:
    """Raw logits (rows x outputs) for tokenized rows given as columns (input_ids, attention_mask, ...), in their order."""
    model.to(device).eval()
    collate = DataCollatorWithPadding(tokenizer)
    features = [k for k in INPUT_FEATURES if k in columns]
    order = length_order([len(ids) for ids in columns["input_ids"]])
    out = np.zeros((len(order), model.config.num_labels), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collate([{k: columns[k][i] for k in features} for i in idx])
        batch = {k: v.to(device) for k, v in batch.items()}
        with attention_kernels(), torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            logits = model(**batch).logits
        out[idx] = logits.float().cpu().numpy()
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


def logits_for_texts(
    model,
    tokenizer,
    texts: list[str],
    max_length: int,
    batch_size: int = EVAL_BATCH_SIZE,
    device: str = "cpu",
    pairs: list[str] | None = None,
    chunk: bool = False,
    how: str = "mean",
    bf16: bool = False,
) -> np.ndarray:
    """Raw logits for raw texts (or text pairs), truncated like training, in the order given; with chunk, each
    text is read in overlapping windows (as in training) and the windows' logits are joined per text."""
    if chunk and pairs is None:
        encoded = tokenizer(
            list(texts), truncation=True, max_length=max_length, stride=max(1, max_length // 4), return_overflowing_tokens=True
        )
        documents = encoded.pop("overflow_to_sample_mapping")
        return per_document(predict_logits(model, tokenizer, dict(encoded), batch_size, device, bf16), documents, how)
    encoded = tokenizer(
        list(texts),
        None if pairs is None else list(pairs),
        truncation="longest_first" if pairs is not None else True,
        max_length=max_length,
    )
    return predict_logits(model, tokenizer, dict(encoded), batch_size, device, bf16)


def model_task(config) -> dict:
    """The task a saved model was trained for: {"task", "target", "decision", "text_pair", ...}.

    Models registered before task types existed carry none: they are single-label classifiers.
    """
    info = dict(getattr(config, "finetune_flow", None) or {})
    info.setdefault("task", "classification")
    info.setdefault("target", {"labels": [config.id2label[i] for i in range(config.num_labels)]})
    info.setdefault("decision", {})
    info.setdefault("text_pair", False)
    return info
