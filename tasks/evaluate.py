"""Evaluate: accuracy, macro-F1, per-class report and confusion matrices on validation and test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from datasets import load_from_disk
from prefect import task
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from schemas.config import CacheConfig, EvalConfig, TrainConfig
from tasks.logs import step_logger, timed
from tasks.cache import StepCache, fingerprint


def classification_metrics(y_true, y_pred, labels: list[str] | None = None) -> dict:
    """Accuracy, macro/weighted F1 and, given label names, a per-class report."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    metrics = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
    }
    if labels is not None:
        ids = list(range(len(labels)))
        precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
        metrics["per_class"] = {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        }
        metrics["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=ids).tolist()
    return metrics


def length_order(lengths: list[int]) -> np.ndarray:
    """Indices that sort rows by length, so each batch pads little."""
    return np.argsort(np.asarray(lengths), kind="stable")


@torch.inference_mode()
def predict_proba(model, tokenizer, dataset, batch_size: int, device: str, bf16: bool) -> np.ndarray:
    """Class probabilities for every row of a tokenized dataset, in the dataset's order."""
    model.to(device).eval()
    collate = DataCollatorWithPadding(tokenizer)
    features = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in dataset.column_names]
    columns = {k: dataset[k] for k in features}
    order = length_order([len(ids) for ids in columns["input_ids"]])
    out = np.zeros((len(order), model.config.num_labels), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collate([{k: columns[k][i] for k in features} for i in idx])
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            logits = model(**batch).logits
        out[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return out


def plot_confusion(matrix: list[list[int]], labels: list[str], title: str, path: Path) -> None:
    """Write a confusion matrix (raw counts, row-normalised colour) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 2.5 + 0.5 * len(labels)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, f"{n}\n{share[i, j]:.0%}", ha="center", va="center", color="white" if share[i, j] > 0.5 else "black", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@task(name="evaluate")
@timed
def evaluate_model(model: dict, tokens: dict, eval_cfg: EvalConfig, train: TrainConfig, cache: CacheConfig) -> dict:
    """Score the fine-tuned model on the configured splits; write metrics JSON and confusion PNGs.

    Args:
        model: the fine-tune step's result (saved model path, device, precision).
        tokens: the tokenize step's result.
        eval_cfg: which splits to evaluate.
        train: batch size for inference.
        cache: where step outputs live.
    Returns:
        metrics per split and the folder holding the artifacts.
    """
    logger = step_logger()
    key = fingerprint("evaluate", model["key"], tokens["key"], eval_cfg.splits)

    def make(folder: Path) -> dict:
        net = AutoModelForSequenceClassification.from_pretrained(model["path"])
        tokenizer = AutoTokenizer.from_pretrained(model["path"])
        labels = tokens["labels"]
        results = {}
        for split in eval_cfg.splits:
            dataset = load_from_disk(tokens["paths"][split])
            proba = predict_proba(net, tokenizer, dataset, train.eval_batch_size, model["device"], model["precision"] == "bf16")
            results[split] = classification_metrics(dataset["labels"], proba.argmax(axis=1), labels)
            plot_confusion(results[split]["confusion_matrix"], labels, f"{split} confusion matrix", folder / f"confusion_{split}.png")
        (folder / "metrics.json").write_text(json.dumps(results, indent=1))
        return results

    entry = StepCache(cache.resolved_dir(), "evaluate", key).build(make, refresh=cache.refresh)
    for split, metrics in entry.meta.items():
        logger.info("evaluate %s: accuracy %.4f, macro-F1 %.4f", split, metrics["accuracy"], metrics["f1_macro"])
    return {"metrics": entry.meta, "artifacts": str(entry.path), "key": key, "reused": entry.reused}
