"""task=multi_label: any number of labels per text (one sigmoid per label, binary cross-entropy).

Targets arrive as a JSON/Parquet list, a delimited string (data.label_separator) or one 0/1
indicator column per label (data.label_columns); the canonical form is a sorted JSON list of
label names, so `[]` (none of the labels applies) is a valid target. Each label gets its own
decision threshold, tuned on validation to maximise that label's F1; labels with too few
validation positives share one global threshold tuned for micro-F1.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from schemas.errors import DataError
from task_types.base import Fields, Gate, Options, as_text, fit_temperature, is_nested, label_head, pyplot, weights_by_label
from task_types.sequence import SequenceTask

MIN_POSITIVES_FOR_OWN_THRESHOLD = 5


class MultiLabelData(Options):
    """task=multi_label's keys in the data section."""

    label_columns: list[str | int] | None = Field(
        None, description="multi_label: one 0/1 indicator column per label, e.g. [food,water] (instead of data.label_column)"
    )
    label_separator: str | None = Field(
        None, description="multi_label: the labels in data.label_column are one string split on this, e.g. ';' (else a JSON/Parquet list)"
    )
    indicator_values: Literal["strict", "positive"] = Field(
        "strict", description="multi_label indicator columns: strict quarantines values other than 0/1; positive reads any number > 0 as 1"
    )

    @model_validator(mode="after")
    def _one_shape(self):
        if self.label_columns is not None and len(self.label_columns) < 1:
            raise ValueError("data.label_columns needs at least one indicator column")
        if self.label_columns is not None and self.label_separator is not None:
            raise ValueError("set data.label_columns (indicator columns) or data.label_separator (one delimited column), not both")
        return self


THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.025), 3)
INDICATOR_TRUE, INDICATOR_FALSE = {"1", "1.0", "true", "True"}, {"0", "0.0", "false", "False"}


def sigmoid(logits: np.ndarray, temperature=1.0) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64) / np.asarray(temperature, dtype=np.float64)))).astype(np.float32)


def label_calibration_error(truth: np.ndarray, proba: np.ndarray, bins: int = 15) -> float:
    """ECE over every (row, label) probability: the gap between predicted probability and positive rate per bin."""
    truth, proba = np.asarray(truth, dtype=np.float64).ravel(), np.asarray(proba, dtype=np.float64).ravel()
    if truth.size == 0:
        return 0.0
    which = np.minimum((proba * bins).astype(int), bins - 1)
    return float(
        sum((which == b).mean() * abs(truth[which == b].mean() - proba[which == b].mean()) for b in range(bins) if (which == b).any())
    )


def parse_label_set(value: str, separator: str | None) -> list[str] | None:
    """Label names in one target cell: a JSON list of names, or with a separator the names it delimits; None if malformed
    (a cell that is no list without a separator, a list holding lists, objects, nulls or booleans, broken JSON)."""
    text = value.strip()
    if separator is not None and not text.startswith("["):
        return [p.strip() for p in text.split(separator) if p.strip()]
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    if not isinstance(parsed, list) or any(isinstance(v, (list, dict, bool)) or v is None for v in parsed):
        return None
    return [str(v).strip() for v in parsed if str(v).strip()]


def indicator_set(value: str, positive_any: bool) -> tuple[list[str] | None, str | None]:
    """Labels whose indicator is on, from the JSON object of {column: raw value}; (None, why) for a bad value."""
    cells = json.loads(value)
    on = []
    for column, raw in cells.items():
        raw = None if raw is None else str(raw).strip()
        if raw in INDICATOR_TRUE:
            on.append(column)
        elif raw in INDICATOR_FALSE:
            continue
        elif positive_any and raw is not None:
            try:
                number = float(raw)
            except ValueError:
                return None, column
            if not np.isfinite(number) or number < 0:
                return None, column
            if number > 0:
                on.append(column)
        else:
            return None, column
    return on, None


def tune_thresholds(truth: np.ndarray, proba: np.ndarray, min_positives: int = MIN_POSITIVES_FOR_OWN_THRESHOLD) -> dict:
    """Per-label thresholds maximising each label's F1 on validation; labels with fewer than min_positives
    validation positives fall back to one global threshold maximising micro-F1 over all labels."""
    truth, proba = np.asarray(truth).astype(bool), np.asarray(proba)

    def f1_at(t, columns=slice(None)):
        on, real = proba[:, columns] >= t, truth[:, columns]
        return float(_f1((on & real).sum(), (on & ~real).sum(), (~on & real).sum()))

    micro = [f1_at(t) for t in THRESHOLD_GRID]
    global_t = float(THRESHOLD_GRID[int(np.argmax(micro))]) if truth.size else 0.5
    thresholds, own = [], []
    for j in range(truth.shape[1]):
        if truth[:, j].sum() >= min_positives:
            scores = [f1_at(t, j) for t in THRESHOLD_GRID]
            thresholds.append(float(THRESHOLD_GRID[int(np.argmax(scores))]))
            own.append(True)
        else:
            thresholds.append(global_t)
            own.append(False)
    rule = (
        f"per-label threshold maximising that label's F1 on validation (grid {THRESHOLD_GRID[0]}..{THRESHOLD_GRID[-1]}); "
        f"labels with fewer than {min_positives} validation positives use the global threshold {global_t} (best micro-F1)"
    )
    return {"thresholds": thresholds, "own_threshold": own, "global_threshold": global_t, "rule": rule}


def _f1(tp, fp, fn):
    """F1 from counts (0 where undefined), elementwise."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(denominator), where=denominator > 0)


def multi_label_metrics(truth: np.ndarray, proba: np.ndarray, thresholds, labels: list[str]) -> dict:
    """Micro/macro F1, subset accuracy, Hamming loss, micro PR-AUC and a per-label report, from per-label counts
    (so one label is still a multi-label problem, not sklearn's binary one)."""
    from sklearn.metrics import average_precision_score

    truth = np.asarray(truth).astype(bool).reshape(len(truth), -1)
    proba = np.asarray(proba).reshape(len(truth), -1)
    predicted = proba >= np.asarray(thresholds)[None, :]
    tp, fp, fn = (truth & predicted).sum(0), (~truth & predicted).sum(0), (truth & ~predicted).sum(0)
    precision = np.divide(tp, tp + fp, out=np.zeros(len(tp)), where=(tp + fp) > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros(len(tp)), where=(tp + fn) > 0)
    per_label_f1 = _f1(tp, fp, fn)
    metrics = {
        "f1_micro": float(_f1(tp.sum(), fp.sum(), fn.sum())),
        "f1_macro": float(per_label_f1.mean()) if len(tp) else 0.0,
        "subset_accuracy": float((truth == predicted).all(axis=1).mean()) if len(truth) else 0.0,
        "hamming_loss": float((truth != predicted).mean()) if truth.size else 0.0,
        "pr_auc_micro": float(average_precision_score(truth.ravel(), proba.ravel())) if truth.any() else float("nan"),
    }
    metrics["per_label"] = {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(t + n), "threshold": float(th)}
        for label, p, r, f, t, n, th in zip(labels, precision, recall, per_label_f1, tp, fn, thresholds)
    }
    return metrics


class MultiLabel(SequenceTask):
    name = "multi_label"
    title = "multi-label text classification"
    help = "any number of labels per text (a label list, delimited labels or indicator columns)"
    problem_type = "multi_label_classification"
    training_revision = 3  # 2: the head starts at each label's base rate (initial_bias); 3: auto trains unweighted
    compare_on = "f1_micro"
    headline = ("f1_micro", "f1_macro", "subset_accuracy", "hamming_loss", "pr_auc_micro")
    metric_names = (*headline, "ece")
    training_metric_names = ("f1_micro", "f1_macro", "subset_accuracy", "hamming_loss")
    reasons = ("malformed_label_list", "bad_indicator_value", "label_not_in_labels")
    window_aggregate = "max"  # a label found in any window of a long text applies to the text
    # A fresh head of many outputs learns at the full rate, the pretrained layers below at less: on 8,000 disaster
    # messages 0.731 test f1_micro vs 0.689 at one flat rate (bench/README.md)
    default_layer_lr_decay = 0.7
    # A fifth of the range test's lowest point: the loss of many sigmoid outputs keeps falling far into large rates, and
    # the full example scored 0.7396 test f1_micro at a tenth (2.7e-4) against 0.7487 at 8.3e-4 (bench/README.md)
    lr_pick_divisor = 5.0
    options = {"data": MultiLabelData}

    def check_config(self, cfg) -> None:
        super().check_config(cfg)
        data = cfg.data
        named = [str(c) for c in data.text_columns()] + ([str(data.text_pair_column)] if data.text_pair_column is not None else [])
        clash = sorted({str(c) for c in data.label_columns or []} & set(named))
        if clash:
            raise ValueError(f"data.label_columns names {clash}, also the text column: an input cannot be a label indicator")

    # ---- ingest -----------------------------------------------------------------------------------
    def fields(self, data) -> Fields:
        base = super().fields(data)
        if data.label_columns is None:
            return base
        return Fields(base.text, base.text_option, [str(c) for c in data.label_columns], "data.label_columns", base.text_pair)

    def nested_fields(self) -> frozenset[str]:
        return frozenset({"label"})

    def raw_label(self, frame: pd.DataFrame, columns: list[str], data, source_name: str) -> pd.Series:
        """Indicator columns as one JSON object {column: raw value} per row; a list cell (JSON/Parquet) as its JSON, every
        item kept as it is so that clean can judge it; text cells as they are."""
        if data.label_columns is not None:
            cells = [as_text(frame[c]) for c in columns]
            return pd.Series([json.dumps(dict(zip(columns, row))) for row in zip(*cells)], index=frame.index, dtype=object)
        column = frame[columns[0]]
        if column.dtype != object:
            return as_text(column)

        def one(v):
            if is_nested(v):
                return json.dumps(list(v.tolist() if isinstance(v, np.ndarray) else v), default=repr)
            if isinstance(v, dict):
                return json.dumps(v, default=repr)
            return None if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)

        return column.map(one).astype(object)

    def default_gates(self, registry) -> list[Gate]:
        return [Gate("f1_micro", 0.5, "registry.gates")]

    def validate_targets(self, labels: pd.Series, data) -> tuple[pd.Series, pd.Series]:
        canonical = pd.Series([None] * len(labels), index=labels.index, dtype=object)
        reason = pd.Series([None] * len(labels), index=labels.index, dtype=object)
        allowed = set(data.labels) if data.labels is not None else None
        for index, value in labels.items():
            if data.label_columns is not None:
                names, _ = indicator_set(value, data.indicator_values == "positive")
                why = "bad_indicator_value"
            else:
                names, why = parse_label_set(value, data.label_separator), "malformed_label_list"
            if names is None:
                reason[index] = why
            elif allowed is not None and not set(names) <= allowed:
                reason[index] = "label_not_in_labels"
            else:
                canonical[index] = json.dumps(sorted(set(names)))
        return canonical, reason

    def label_order(self, labels: pd.Series, data) -> list[str]:
        if data.labels is not None:
            return list(data.labels)
        if data.label_columns is not None:
            return [str(c) for c in data.label_columns]
        return sorted({name for value in labels for name in json.loads(value)})

    def check_usable(self, labels: pd.Series, data) -> None:
        if not any(json.loads(value) for value in labels):
            raise DataError(
                "no clean row has any label: a multi-label model needs positive examples "
                "(check data.label_column / data.label_columns and data.label_separator)"
            )

    def strata(self, labels: pd.Series) -> pd.Series:
        # A documented approximation of iterative stratification: each row is keyed by its rarest label
        # (empty sets together), so rare labels reach every split in proportion.
        sets = [json.loads(v) for v in labels]
        counts: dict[str, int] = {}
        for names in sets:
            for name in names:
                counts[name] = counts.get(name, 0) + 1
        keys = [min(names, key=lambda n: (counts[n], n)) if names else "" for names in sets]
        return pd.Series(keys, index=labels.index)

    def target_spec(self, labels: pd.Series, train_labels: pd.Series, data) -> dict:
        order = self.label_order(labels, data)
        seen = {name for value in train_labels for name in json.loads(value)}
        return {"labels": order, "no_train_positives": [name for name in order if name not in seen]}

    def target_summary(self, labels: pd.Series, spec: dict) -> dict:
        counts = {name: 0 for name in spec["labels"]}
        empty = 0
        for value in labels:
            names = json.loads(value)
            empty += not names
            for name in names:
                counts[name] = counts.get(name, 0) + 1
        return {"per_class": counts, "empty_label_sets": empty}

    def encode(self, labels: pd.Series, spec: dict) -> list:
        index = {name: i for i, name in enumerate(spec["labels"])}
        rows = []
        for value in labels:
            hot = [0.0] * len(index)
            for name in json.loads(value):
                hot[index[name]] = 1.0
            rows.append(hot)
        return rows

    def head_config(self, spec: dict) -> dict:
        return label_head(spec, self.problem_type)

    def outputs(self, logits: np.ndarray, spec: dict, decision: dict | None = None) -> np.ndarray:
        return sigmoid(logits, (decision or {}).get("temperature", 1.0))

    def calibrate(self, truth: np.ndarray, logits: np.ndarray, spec: dict) -> dict:
        """A temperature per label minimising its validation log-loss (labels without both outcomes keep 1.0)."""
        truth, logits = np.asarray(truth, dtype=np.float64), np.asarray(logits, dtype=np.float64)
        if len(truth) == 0:
            return {}
        temperatures = []
        for j in range(truth.shape[1]):
            y, z = truth[:, j], logits[:, j]
            if 0 < y.sum() < len(y):

                def nll(t, y=y, z=z):
                    p = np.clip(1 / (1 + np.exp(-z / t)), 1e-12, 1 - 1e-12)
                    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())

                temperatures.append(round(fit_temperature(nll), 4))
            else:
                temperatures.append(1.0)
        return {
            "temperature": temperatures,
            "ece_uncalibrated": label_calibration_error(truth, sigmoid(logits)),
            "ece_calibrated": label_calibration_error(truth, sigmoid(logits, temperatures)),
        }

    def loss_weights(self, encoded: list, spec: dict, setting) -> list[float] | None:
        """pos_weight per label, negatives / positives in training (at most 10), for balanced; auto and none: unweighted.

        With the head starting at each label's base rate (initial_bias) the unweighted loss learns, and learns the
        frequent labels that f1_micro counts most better: on 8,000 disaster messages test f1_micro was 0.667
        unweighted vs 0.654 with pos_weight (bench/README.md). Before initial_bias an unweighted model settled at
        the base rates (validation f1_micro 0.29), which is why pos_weight was auto's choice then."""
        if isinstance(setting, dict):
            return weights_by_label(setting, spec["labels"])
        if setting in ("none", "auto"):
            return None
        y = np.asarray(encoded, dtype=np.float64)
        positives = y.sum(axis=0)
        ratio = np.where(positives > 0, (len(y) - positives) / np.maximum(positives, 1), 1.0)  # no positives: nothing to weigh
        return np.clip(ratio, 1.0, 10.0).round(4).tolist()

    def initial_bias(self, encoded: list, weights: list[float] | None) -> list[float] | None:
        """Each label's output starts at its training base rate (as the weighted loss sees it), not at 0.5.

        From 0.5 for every label, the first steps' largest gradient only pushes the many negatives down, through
        the pretrained encoder as well; starting at the prior, training spends its steps on telling texts apart."""
        y = np.asarray(encoded, dtype=np.float64)
        rate = np.clip(y.mean(axis=0), 1e-4, 1 - 1e-4)
        odds = rate / (1 - rate) * (np.asarray(weights) if weights is not None else 1.0)
        return np.log(odds).round(6).tolist()

    def training_metrics(self, logits: np.ndarray, label_ids: np.ndarray, spec: dict) -> dict:
        # At 0.5 (logit 0): thresholds are tuned once, on the chosen model.
        metrics = multi_label_metrics(
            label_ids, sigmoid(logits), [0.5] * np.asarray(logits).shape[1], list(range(np.asarray(logits).shape[1]))
        )
        return {name: metrics[name] for name in self.training_metric_names}

    def fit_decision(self, truth: np.ndarray, outputs: np.ndarray, spec: dict) -> dict:
        return tune_thresholds(truth, outputs)

    def weighted_loss(self, logits, labels, weights):
        import torch

        return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weights)

    def explain_targets(self, output, spec: dict, decision: dict) -> list[tuple[str, int]]:
        on = np.flatnonzero(np.asarray(output) >= np.asarray(self.thresholds(spec, decision)))
        return [(spec["labels"][j], int(j)) for j in on]

    def pick_explained(self, truth, outputs, spec: dict, decision: dict, n: int) -> tuple[list[int], list[int]]:
        outputs, thresholds = np.asarray(outputs), np.asarray(self.thresholds(spec, decision))
        predicted = outputs >= thresholds[None, :]
        wrong = (predicted != np.asarray(truth).astype(bool)).any(axis=1)
        confidence = np.abs(outputs - thresholds[None, :]).mean(axis=1)
        order = np.argsort(-confidence, kind="stable")
        with_labels = predicted.any(axis=1)  # a row with no predicted label has nothing to explain
        return [int(i) for i in order if wrong[i] and with_labels[i]][:n], [int(i) for i in order if not wrong[i] and with_labels[i]][:n]

    def describe(self, output, spec: dict, decision: dict) -> str:
        return ", ".join(name for name, _ in self.explain_targets(output, spec, decision)) or "(none)"

    def thresholds(self, spec: dict, decision: dict) -> list[float]:
        return decision.get("thresholds") or [0.5] * len(spec["labels"])

    def truth_from_labels(self, labels: pd.Series, spec: dict) -> np.ndarray:
        index = {name: i for i, name in enumerate(spec["labels"])}
        hot = np.zeros((len(labels), len(index)), dtype=int)
        for row, value in enumerate(labels):
            for name in json.loads(value):
                if name in index:
                    hot[row, index[name]] = 1
        return hot

    def score(self, truth: np.ndarray, outputs: np.ndarray, spec: dict, decision: dict) -> dict:
        return multi_label_metrics(truth, outputs, self.thresholds(spec, decision), spec["labels"])

    def evaluate(self, truth: np.ndarray, outputs: np.ndarray, spec: dict, decision: dict, split: str, folder: Path) -> dict:
        labels = spec["labels"]
        metrics = self.score(truth, outputs, spec, decision)
        metrics["ece"] = label_calibration_error(truth, outputs)
        with open(folder / f"per_label_{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["label", "threshold", "own_threshold", "precision", "recall", "f1", "support"])
            own = decision.get("own_threshold") or [False] * len(labels)
            for (label, row), mine in zip(metrics["per_label"].items(), own):
                writer.writerow(
                    [label, row["threshold"], mine, f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", row["support"]]
                )
        plot_label_f1(metrics["per_label"], split, folder / f"per_label_f1_{split}.png")
        return metrics

    def predict_columns(self, outputs: np.ndarray, spec: dict, decision: dict, options: dict | None = None) -> dict[str, list]:
        labels, thresholds = spec["labels"], np.asarray(self.thresholds(spec, decision))
        on = outputs >= thresholds[None, :]
        columns = {"predicted_labels": [json.dumps([labels[j] for j in np.flatnonzero(row)]) for row in on]}
        columns.update({f"proba_{label}": outputs[:, i].tolist() for i, label in enumerate(labels)})
        return columns

    def output_schema(self, spec: dict, options: dict | None = None) -> list[tuple[str, str]]:
        return [("predicted_labels", "string"), *[(f"proba_{label}", "double") for label in spec["labels"]]]

    def card_section(self, spec: dict, decision: dict) -> str:
        labels, thresholds = spec["labels"], self.thresholds(spec, decision)
        rows = "\n".join(f"| `{label}` | {t:.3f} |" for label, t in zip(labels, thresholds))
        missing = spec.get("no_train_positives") or []
        return (
            f"- Task: multi-label text classification over {len(labels)} labels (any number per text, none included)\n"
            f"- Output: one sigmoid probability per label; a label is predicted when its probability reaches its threshold\n"
            f"- Threshold rule: {decision.get('rule', 'fixed at 0.5 (no validation split was evaluated)')}\n"
            + (
                f"- Calibration: a temperature per label fitted on validation (ECE over labels {decision['ece_uncalibrated']:.4f} -> "
                f"{decision['ece_calibrated']:.4f}); thresholds are tuned on the calibrated probabilities\n"
                if "temperature" in decision
                else ""
            )
            + (f"- Labels with no positive training example (never learned): {', '.join(f'`{m}`' for m in missing)}\n" if missing else "")
            + f"\n| label | threshold |\n|---|---|\n{rows}"
        )

    def card_limits(self) -> list[str]:
        return ["Labels rare in training get thresholds tuned on few validation examples: their precision and recall are uncertain."]

    def linear_baseline(self, features: dict, parts: dict[str, pd.DataFrame], spec: dict) -> dict[str, np.ndarray]:
        """One-vs-rest logistic regression on TF-IDF; a label never positive in training gets probability 0."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier

        y = np.asarray(self.encode(parts["train"]["label"], spec), dtype=int)
        learnable = (y.sum(axis=0) > 0) & (y.sum(axis=0) < len(y))
        model = (
            OneVsRestClassifier(LogisticRegression(max_iter=1000, C=4.0)).fit(features["train"], y[:, learnable])
            if learnable.any()
            else None
        )
        out = {}
        for name, x in features.items():
            proba = np.tile(y.mean(axis=0), (x.shape[0], 1)).astype(np.float32)  # constant labels: their training rate
            if model is not None:
                proba[:, learnable] = model.predict_proba(x).reshape(x.shape[0], -1)
            out[name] = proba
        return out


def plot_label_f1(per_label: dict, split: str, path: Path) -> None:
    """Horizontal bars of F1 per label, with each bar's support."""
    plt = pyplot()
    names = list(per_label)
    fig, ax = plt.subplots(figsize=(7, 1.5 + 0.28 * len(names)))
    ax.barh(range(len(names)), [per_label[n]["f1"] for n in names], color="tab:blue")
    ax.set_yticks(range(len(names)), [f"{n} (n={per_label[n]['support']})" for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 at the label's threshold")
    ax.set_title(f"{split}: F1 per label")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
