"""task=classification: one label per text (softmax over the classes, cross-entropy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from schemas.errors import DataError
from task_types.base import IMBALANCE_RATIO, Gate, Runner, fit_temperature, label_head, pyplot, scalar_metrics, weights_by_label
from task_types.sequence import SequenceTask

NUMERIC = r"[-+]?\d+(?:\.\d+)?"
# The evaluation's confusion matrices hold classes**2 cells (in metrics.json, the run and the step results).
MAX_CLASSES = 1000
# Plots stay the same size whatever the class count (a 500-class confusion matrix drawn at 0.5 inch a class
# with a number in every cell took 22 GB): above these counts cells lose their numbers, axes their
# label names, and ROC/PR plots show the classes with the most support.
PLOT_MAX_INCHES = 14
CELL_TEXT_MAX_CLASSES = 30
TICK_LABELS_MAX_CLASSES = 60
CURVES_MAX_CLASSES = 10


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = scaled - np.max(scaled, axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def mixed_label_types(labels: pd.Series) -> pd.Series:
    """Rows whose label is of the minority kind when numbers and words are mixed (1, 2, 'pos'): a sign of a
    shifted column or a stray value. Ties mark the numeric ones. Null labels are never marked."""
    present = labels.notna()
    numeric = labels.astype("string").str.fullmatch(NUMERIC).fillna(False).astype(bool) & present
    words = present & ~numeric
    if not numeric.any() or not words.any():
        return pd.Series(False, index=labels.index)
    return numeric if numeric.sum() <= words.sum() else words


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
    from sklearn.metrics import average_precision_score, roc_auc_score

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
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

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


def score_by_name(true_names: list[str], pred_names: list[str], labels: list[str]) -> dict:
    """Accuracy and F1 of predicted label names against true ones over `labels`; names outside it count as wrong."""
    from sklearn.metrics import f1_score

    index = {name: i for i, name in enumerate(labels)}
    y_true = np.array([index[n] for n in true_names])
    y_pred = np.array([index.get(n, -1) for n in pred_names])
    ids = list(range(len(labels)))
    return {
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "f1_macro": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(y_true, y_pred, labels=ids, average="weighted", zero_division=0)),
    }


def plot_confusion(matrix: list[list[int]], labels: list[str], title: str, path: Path, normalize: bool = False) -> None:
    """Write a confusion matrix as a PNG: raw counts, or each true-class row normalised to 1.

    Ours, not sklearn's ConfusionMatrixDisplay: that one sizes nothing and writes every tick and cell text, so a
    1,000-class matrix would be unreadable; this one keeps its size and drops ticks and cell text past set counts."""
    plt = pyplot()
    counts = np.asarray(matrix)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(2.5 + 0.5 * len(labels), PLOT_MAX_INCHES)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(
        share if normalize else counts, cmap="Blues", vmin=0, vmax=1 if normalize else max(int(counts.max()), 1), interpolation="nearest"
    )
    if len(labels) <= TICK_LABELS_MAX_CLASSES:
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel(
        "predicted" if len(labels) <= TICK_LABELS_MAX_CLASSES else f"predicted (class index, {len(labels)} classes in label order)"
    )
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
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    plt = pyplot()
    y_true, proba = np.asarray(y_true), np.asarray(proba)
    classes = [1] if len(labels) == 2 else range(len(labels))
    many = len(labels) > CURVES_MAX_CLASSES
    if many:  # one line a class is unreadable (and its legend unbounded) for many classes: the best-supported ones
        classes = sorted(np.argsort(-np.bincount(y_true, minlength=len(labels)), kind="stable")[:CURVES_MAX_CLASSES])
    written = []
    display = {"roc": RocCurveDisplay, "pr": PrecisionRecallDisplay}
    for kind in ("roc", "pr"):
        fig, ax = plt.subplots(figsize=(5, 4.5))
        drawn = [c for c in classes if (y_true == c).any() and not (y_true == c).all()]
        for n, c in enumerate(drawn):
            chance = {"plot_chance_level": n == len(drawn) - 1} if kind == "roc" else {}
            display[kind].from_predictions(y_true == c, proba[:, c], name=str(labels[c]), ax=ax, **chance)
        ax.set_xlabel("false positive rate" if kind == "roc" else "recall")
        ax.set_ylabel("true positive rate" if kind == "roc" else "precision")
        ax.set_title(
            f"{split} {'ROC' if kind == 'roc' else 'precision-recall'}{'' if len(labels) == 2 else ' (one-vs-rest)'}"
            f"{f', {CURVES_MAX_CLASSES} of {len(labels)} classes with most rows' if many else ''}",
            fontsize=9 if many else None,
        )
        ax.legend(loc="lower right" if kind == "roc" else "lower left", fontsize=8)
        fig.tight_layout()
        written.append(folder / f"{kind}_{split}.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def plot_reliability(y_true, before, after, temperature: float, split: str, path: Path, bins: int = 15) -> None:
    """Reliability diagram (top-label confidence vs accuracy per bin) before and after temperature scaling."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    for proba, name in ((before, "uncalibrated"), (after, f"temperature {temperature:.2f}")):
        proba = np.asarray(proba)
        confidence, correct = proba.max(axis=1), proba.argmax(axis=1) == np.asarray(y_true)
        which = np.minimum((confidence * bins).astype(int), bins - 1)
        points = [(confidence[which == b].mean(), correct[which == b].mean()) for b in range(bins) if (which == b).any()]
        ece = expected_calibration_error(y_true, proba, bins)
        ax.plot(*zip(*points), marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.set_xlabel("confidence (top label)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{split}: reliability")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_split_report(y_true, proba, labels: list[str], split: str, folder: Path) -> dict:
    """Every metric of one split, plus its confusion (raw and normalised), ROC and PR plots in folder."""
    metrics = classification_metrics(y_true, np.asarray(proba).argmax(axis=1), labels, proba)
    for normalize in (False, True):
        name = f"confusion_{split}{'_normalized' if normalize else ''}.png"
        plot_confusion(metrics["confusion_matrix"], labels, f"{split} confusion matrix", folder / name, normalize)
    plot_curves(y_true, proba, labels, split, folder)
    return metrics


class Classification(SequenceTask):
    name = "classification"
    title = "single-label text classification"
    help = "one label per text"
    summary_f1 = "f1_macro"
    problem_type = "single_label_classification"
    compare_on = "f1_macro"
    headline = ("accuracy", "f1_macro", "f1_weighted", "roc_auc", "ece")
    metric_names = ("accuracy", "f1_macro", "f1_weighted", "roc_auc", "pr_auc", "ece")
    training_metric_names = ("accuracy", "f1_macro", "f1_weighted")
    reasons = ("mixed_label_type", "label_not_in_labels")
    strict_strata = True

    def default_gates(self, registry) -> list[Gate]:
        return [Gate("accuracy", registry.min_accuracy, "registry.min_accuracy"), Gate("f1_macro", registry.min_f1, "registry.min_f1")]

    def validate_targets(self, labels: pd.Series, data) -> tuple[pd.Series, pd.Series]:
        reason = pd.Series([None] * len(labels), index=labels.index, dtype=object)
        if data.labels is not None:
            reason[~labels.isin(data.labels)] = "label_not_in_labels"
        else:
            reason[mixed_label_types(labels)] = "mixed_label_type"
        return labels.astype(object).where(reason.isna(), None), reason

    def check_usable(self, labels: pd.Series, data) -> None:
        found = sorted(labels.unique())
        if data.labels is not None:
            missing = [label for label in data.labels if label not in found]
            if missing:
                raise DataError(f"data.labels names {missing} but no clean row has them; labels found: {found}")
        if len(found) < 2:
            raise DataError(f"only one class ({found[0]!r}) in the data: a classifier needs at least two labels")
        if len(found) > MAX_CLASSES:
            raise DataError(
                f"{len(found)} classes in the data; at most {MAX_CLASSES} are supported: check data.label_column "
                "(is it an id or free text?) or group rare labels"
            )

    def strata(self, labels: pd.Series) -> pd.Series:
        return labels

    def target_spec(self, labels: pd.Series, train_labels: pd.Series, data) -> dict:
        return {"labels": list(data.labels) if data.labels else sorted(labels.unique())}

    def target_summary(self, labels: pd.Series, spec: dict) -> dict:
        return {"per_class": {k: int(v) for k, v in labels.value_counts().sort_index().items()}}

    def encode(self, labels: pd.Series, spec: dict) -> list:
        index = {label: i for i, label in enumerate(spec["labels"])}
        return [index[label] for label in labels]

    def head_config(self, spec: dict) -> dict:
        return label_head(spec, self.problem_type)

    def outputs(self, logits: np.ndarray, spec: dict, decision: dict | None = None) -> np.ndarray:
        return softmax(logits, (decision or {}).get("temperature", 1.0))

    def calibrate(self, truth: np.ndarray, logits: np.ndarray, spec: dict) -> dict:
        """One temperature for all classes, minimising the validation negative log-likelihood (argmax unchanged)."""
        truth, logits = np.asarray(truth, dtype=int), np.asarray(logits, dtype=np.float64)
        if len(truth) == 0:
            return {}

        def nll(t: float) -> float:
            proba = softmax(logits, t).astype(np.float64)
            return float(-np.log(np.clip(proba[np.arange(len(truth)), truth], 1e-12, 1)).mean())

        temperature = fit_temperature(nll)
        return {
            "temperature": temperature,
            "ece_uncalibrated": expected_calibration_error(truth, softmax(logits)),
            "ece_calibrated": expected_calibration_error(truth, softmax(logits, temperature)),
        }

    def loss_weights(self, encoded: list, spec: dict, setting) -> list[float] | None:
        """auto: inverse-frequency ("balanced") weights when the largest class is more than IMBALANCE_RATIO times the smallest."""
        if isinstance(setting, dict):
            return weights_by_label(setting, spec["labels"])
        counts = np.bincount(np.asarray(encoded, dtype=int), minlength=len(spec["labels"])).astype(np.float64)
        if setting == "none" or (setting == "auto" and counts.max() <= IMBALANCE_RATIO * max(counts.min(), 1)):
            return None
        return (counts.sum() / (len(counts) * np.maximum(counts, 1))).round(4).tolist()

    def training_metrics(self, logits: np.ndarray, label_ids: np.ndarray, spec: dict) -> dict:
        return classification_metrics(label_ids, np.argmax(logits, axis=-1))

    def score(self, truth: np.ndarray, outputs: np.ndarray, spec: dict, decision: dict) -> dict:
        return classification_metrics(truth, np.asarray(outputs).argmax(axis=1), spec["labels"], outputs)

    def evaluate(self, truth: np.ndarray, outputs: np.ndarray, spec: dict, decision: dict, split: str, folder: Path) -> dict:
        metrics = write_split_report(truth, outputs, spec["labels"], split, folder)
        if "temperature" in decision:
            raw = softmax(np.log(np.clip(outputs, 1e-12, 1)) * decision["temperature"])  # back to the uncalibrated probabilities
            metrics["ece_uncalibrated"] = expected_calibration_error(truth, raw)
            plot_reliability(truth, raw, outputs, decision["temperature"], split, folder / f"reliability_{split}.png")
        return metrics

    def predict_columns(self, outputs: np.ndarray, spec: dict, decision: dict, options: dict | None = None) -> dict[str, list]:
        labels = spec["labels"]
        columns = {"predicted_label": [labels[i] for i in outputs.argmax(axis=1)], "confidence": outputs.max(axis=1).tolist()}
        columns.update({f"proba_{label}": outputs[:, i].tolist() for i, label in enumerate(labels)})
        return columns

    def output_schema(self, spec: dict, options: dict | None = None) -> list[tuple[str, str]]:
        return [("predicted_label", "string"), ("confidence", "double"), *[(f"proba_{label}", "double") for label in spec["labels"]]]

    def explain_targets(self, output, spec: dict, decision: dict) -> list[tuple[str, int]]:
        return [("", int(np.argmax(output)))]

    def pick_explained(self, truth, outputs, spec: dict, decision: dict, n: int) -> tuple[list[int], list[int]]:
        predicted, confidence = np.asarray(outputs).argmax(axis=1), np.asarray(outputs).max(axis=1)
        wrong = np.asarray(truth) != predicted
        order = np.argsort(-confidence, kind="stable")
        return [int(i) for i in order if wrong[i]][:n], [int(i) for i in order if not wrong[i]][:n]

    def describe(self, output, spec: dict, decision: dict) -> str:
        return f"{spec['labels'][int(np.argmax(output))]} ({float(np.max(output)):.2f})"

    def rescore(self, model, tokenizer, frame: pd.DataFrame, info: dict, spec: dict, runner: Runner) -> dict:
        """Matched by label name: the champion's label ids may differ from the candidate's."""
        outputs = self.run_rows(model, tokenizer, self.rows_for_rescoring(frame), info, runner)
        names = [info["target"]["labels"][i] for i in np.asarray(outputs).argmax(axis=1)]
        return scalar_metrics(score_by_name(frame["label"].astype(str).tolist(), names, spec["labels"]))

    def card_section(self, spec: dict, decision: dict) -> str:
        labels = spec["labels"]
        calibration = (
            f"- Calibration: temperature scaling fitted on validation, T = {decision['temperature']:.3f} "
            f"(validation ECE {decision['ece_uncalibrated']:.4f} -> {decision['ece_calibrated']:.4f}); predict applies it\n"
            if "temperature" in decision
            else ""
        )
        return (
            f"- Task: single-label text classification over {len(labels)} classes: {', '.join(f'`{label}`' for label in labels)}\n"
            f"{calibration}- Output: the most probable class (softmax), its probability and one probability per class"
        )

    def card_limits(self) -> list[str]:
        return ['It always answers with one of the labels above; it cannot say "none of these".']

    def linear_baseline(self, features: dict, parts: dict[str, pd.DataFrame], spec: dict) -> dict[str, np.ndarray]:
        """Logistic regression on TF-IDF; classes absent from training get probability 0."""
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(self.encode(parts["train"]["label"], spec))
        model = LogisticRegression(max_iter=1000, C=4.0).fit(features["train"], y)
        out = {}
        for name, x in features.items():
            proba = np.zeros((x.shape[0], len(spec["labels"])), dtype=np.float32)
            proba[:, model.classes_] = model.predict_proba(x)
            out[name] = proba
        return out
