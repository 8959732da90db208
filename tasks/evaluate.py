"""Evaluate: accuracy, macro/weighted F1, per-class report, ROC/PR, calibration and confusion matrices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from datasets import load_from_disk
from prefect import task
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from schemas.config import CacheConfig, EvalConfig, TrainConfig
from tasks.logs import step_logger, timed
from tasks.cache import StepCache, fingerprint

REPORT_VERSION = 3  # bump when the metrics or plots change, so cached evaluations are recomputed
# Plots stay the same size whatever the class count (a 500-class confusion matrix drawn at 0.5 inch a class
# with a number in every cell took 22 GB): above these counts cells lose their numbers, axes their
# label names, and ROC/PR plots show the classes with the most support.
PLOT_MAX_INCHES = 14
CELL_TEXT_MAX_CLASSES = 30
TICK_LABELS_MAX_CLASSES = 60
CURVES_MAX_CLASSES = 10


def expected_calibration_error(y_true, proba, bins: int = 15) -> float:
    """Top-label ECE: the confidence-weighted gap between confidence and accuracy over equal-width bins."""
    y_true, proba = np.asarray(y_true), np.asarray(proba)
    if len(y_true) == 0:
        return 0.0
    confidence, correct = proba.max(axis=1), (proba.argmax(axis=1) == y_true)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gap = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(gap)


def ranking_metrics(y_true, proba) -> dict:
    """ROC-AUC and average precision: binary on the positive class, one-vs-rest macro for more classes.

    A class absent from y_true has no curve; it is left out of the average (NaN when none is left).
    """
    y_true, proba = np.asarray(y_true), np.asarray(proba)
    if proba.shape[1] == 2:
        if len(np.unique(y_true)) < 2:
            return {"roc_auc": float("nan"), "pr_auc": float("nan")}
        return {"roc_auc": float(roc_auc_score(y_true, proba[:, 1])), "pr_auc": float(average_precision_score(y_true, proba[:, 1]))}
    present = [c for c in range(proba.shape[1]) if 0 < (y_true == c).sum() < len(y_true)]
    if not present:
        return {"roc_auc": float("nan"), "pr_auc": float("nan")}
    roc = [roc_auc_score(y_true == c, proba[:, c]) for c in present]
    pr = [average_precision_score(y_true == c, proba[:, c]) for c in present]
    return {"roc_auc": float(np.mean(roc)), "pr_auc": float(np.mean(pr))}


def classification_metrics(y_true, y_pred, labels: list[str] | None = None, proba=None) -> dict:
    """Accuracy, macro/weighted F1; given label names a per-class report; given probabilities ROC/PR and ECE."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    metrics = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
    }
    if proba is not None:
        metrics.update(ranking_metrics(y_true, proba))
        metrics["ece"] = expected_calibration_error(y_true, proba)
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


def predict_texts(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 128, device: str = "cpu") -> np.ndarray:
    """Class probabilities for raw texts (length-sorted batches), in the order given."""
    from datasets import Dataset

    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    return predict_proba(model, tokenizer, Dataset.from_dict(dict(encoded)), batch_size, device, bf16=False)


def score_by_name(true_names: list[str], pred_names: list[str], labels: list[str]) -> dict:
    """Accuracy and F1 of predicted label names against true ones over `labels`; names outside it count as wrong."""
    index = {name: i for i, name in enumerate(labels)}
    y_true = np.array([index[n] for n in true_names])
    y_pred = np.array([index.get(n, -1) for n in pred_names])
    ids = list(range(len(labels)))
    return {
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "f1_macro": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(y_true, y_pred, labels=ids, average="weighted", zero_division=0)),
    }


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(matrix: list[list[int]], labels: list[str], title: str, path: Path, normalize: bool = False) -> None:
    """Write a confusion matrix as a PNG: raw counts, or each true-class row normalised to 1."""
    plt = _pyplot()
    counts = np.asarray(matrix)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(2.5 + 0.5 * len(labels), PLOT_MAX_INCHES)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(share if normalize else counts, cmap="Blues", vmin=0, vmax=1 if normalize else max(int(counts.max()), 1), interpolation="nearest")
    if len(labels) <= TICK_LABELS_MAX_CLASSES:
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted" if len(labels) <= TICK_LABELS_MAX_CLASSES else f"predicted (class index, {len(labels)} classes in label order)")
    ax.set_ylabel("true")
    ax.set_title(f"{title} ({'normalised by true class' if normalize else 'counts'})")
    if len(labels) <= CELL_TEXT_MAX_CLASSES:
        for (i, j), n in np.ndenumerate(counts):
            text = f"{share[i, j]:.0%}" if normalize else str(n)
            ax.text(j, i, text, ha="center", va="center", color="white" if share[i, j] > 0.5 else "black", fontsize=8)
    else:
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(y_true, proba, labels: list[str], split: str, folder: Path) -> list[Path]:
    """ROC and precision-recall curves (the positive class when binary, one-vs-rest otherwise) as PNGs."""
    plt = _pyplot()
    y_true, proba = np.asarray(y_true), np.asarray(proba)
    classes = [1] if len(labels) == 2 else range(len(labels))
    many = len(labels) > CURVES_MAX_CLASSES
    if many:  # one line a class is unreadable (and its legend unbounded) for many classes: the best-supported ones
        classes = sorted(np.argsort(-np.bincount(y_true, minlength=len(labels)), kind="stable")[:CURVES_MAX_CLASSES])
    written = []
    for kind in ("roc", "pr"):
        fig, ax = plt.subplots(figsize=(5, 4.5))
        for c in classes:
            truth = y_true == c
            if truth.all() or not truth.any():
                continue
            if kind == "roc":
                x, y, _ = roc_curve(truth, proba[:, c])
                score = roc_auc_score(truth, proba[:, c])
            else:
                y, x, _ = precision_recall_curve(truth, proba[:, c])
                score = average_precision_score(truth, proba[:, c])
            ax.plot(x, y, label=f"{labels[c]} ({'AUC' if kind == 'roc' else 'AP'} {score:.3f})")
        if kind == "roc":
            ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
        ax.set_xlabel("false positive rate" if kind == "roc" else "recall")
        ax.set_ylabel("true positive rate" if kind == "roc" else "precision")
        ax.set_title(f"{split} {'ROC' if kind == 'roc' else 'precision-recall'}{'' if len(labels) == 2 else ' (one-vs-rest)'}"
                     f"{f', {CURVES_MAX_CLASSES} of {len(labels)} classes with most rows' if many else ''}", fontsize=9 if many else None)
        ax.legend(loc="lower right" if kind == "roc" else "lower left", fontsize=8)
        fig.tight_layout()
        written.append(folder / f"{kind}_{split}.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def write_split_report(y_true, proba, labels: list[str], split: str, folder: Path) -> dict:
    """Every metric of one split, plus its confusion (raw and normalised), ROC and PR plots in folder."""
    metrics = classification_metrics(y_true, np.asarray(proba).argmax(axis=1), labels, proba)
    for normalize in (False, True):
        name = f"confusion_{split}{'_normalized' if normalize else ''}.png"
        plot_confusion(metrics["confusion_matrix"], labels, f"{split} confusion matrix", folder / name, normalize)
    plot_curves(y_true, proba, labels, split, folder)
    return metrics


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
    key = fingerprint("evaluate", REPORT_VERSION, model["key"], tokens["key"], eval_cfg.splits)

    def make(folder: Path) -> dict:
        net = AutoModelForSequenceClassification.from_pretrained(model["path"])
        tokenizer = AutoTokenizer.from_pretrained(model["path"])
        labels = tokens["labels"]
        results = {}
        for split in eval_cfg.splits:
            dataset = load_from_disk(tokens["paths"][split])
            proba = predict_proba(net, tokenizer, dataset, train.eval_batch_size, model["device"], model["precision"] == "bf16")
            results[split] = write_split_report(dataset["labels"], proba, labels, split, folder)
        (folder / "metrics.json").write_text(json.dumps(results, indent=1))
        return results

    entry = StepCache(cache.resolved_dir(), "evaluate", key).build(make, refresh=cache.refresh)
    for split, metrics in entry.meta.items():
        logger.info(
            "evaluate %s: accuracy %.4f, macro-F1 %.4f, weighted-F1 %.4f, ROC-AUC %.4f, ECE %.4f", split,
            metrics["accuracy"], metrics["f1_macro"], metrics["f1_weighted"], metrics["roc_auc"], metrics["ece"],
        )
    return {"metrics": entry.meta, "artifacts": str(entry.path), "key": key, "reused": entry.reused}
