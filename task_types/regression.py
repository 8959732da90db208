"""task=regression: a number per text (one linear output, mean squared error on the standardised target).

The target is standardised with the train split's mean and standard deviation for training and the
scaling is undone on every output, so metrics and predictions are in the data's own units. No
sigmoid squashes the output (the trap of transformers #10417).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from schemas.errors import DataError
from task_types.base import Gate, merge_small_strata, pyplot
from task_types.sequence import SequenceTask

QUANTILE_BINS = 10
# Larger magnitudes overflow the standardisation (their square is infinite in float64): quarantined, not trained on.
MAX_ABS_TARGET = 1e150


def regression_metrics(truth, predicted) -> dict:
    """RMSE, MAE, R², Spearman and Pearson correlation (NaN where undefined, e.g. a constant column)."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    truth, predicted = np.asarray(truth, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    if len(truth) < 2:
        return {"rmse": float("nan"), "mae": float("nan"), "r2": float("nan"), "spearman": float("nan"), "pearson": float("nan")}
    constant = np.ptp(truth) == 0 or np.ptp(predicted) == 0
    return {
        "rmse": float(np.sqrt(mean_squared_error(truth, predicted))),
        "mae": float(mean_absolute_error(truth, predicted)),
        "r2": float(r2_score(truth, predicted)),
        "spearman": float("nan") if constant else float(spearmanr(truth, predicted).statistic),
        "pearson": float("nan") if constant else float(pearsonr(truth, predicted).statistic),
    }


class Regression(SequenceTask):
    name = "regression"
    title = "text regression"
    help = "a number per text"
    problem_type = "regression"
    compare_on = "spearman"
    headline = ("rmse", "mae", "r2", "spearman", "pearson")
    metric_names = headline
    training_metric_names = headline  # on the standardised scale: the ordering of epochs is the same
    reasons = ("non_numeric_target", "non_finite_target", "target_out_of_range")
    # A fifth of the range test's lowest point: spearman rose with the rate up to ~1e-4 on the movie snippets (0.8311
    # at a tenth, 4.9e-5; 0.8344 at 6.0e-5; 0.8364 at 1e-4: bench/README.md)
    lr_pick_divisor = 5.0

    def default_gates(self, registry) -> list[Gate]:
        return [Gate("spearman", 0.3, "registry.gates"), Gate("r2", 0.0, "registry.gates")]

    def check_config(self, cfg) -> None:
        super().check_config(cfg)
        if cfg.data.labels is not None:
            raise ValueError("data.labels is a label set: task=regression has a numeric target")

    def validate_targets(self, labels: pd.Series, data) -> tuple[pd.Series, pd.Series]:
        numbers = pd.to_numeric(labels, errors="coerce")
        reason = pd.Series([None] * len(labels), index=labels.index, dtype=object)
        not_number = numbers.isna() & ~labels.str.strip().str.lower().isin(["nan", "-nan", "+nan"])
        reason[not_number] = "non_numeric_target"
        finite = np.isfinite(numbers.fillna(np.inf))
        reason[~not_number & ~finite] = "non_finite_target"
        reason[finite & (numbers.abs() >= MAX_ABS_TARGET)] = "target_out_of_range"
        canonical = numbers.map(repr).astype(object).where(reason.isna(), None)
        return canonical, reason

    def check_usable(self, labels: pd.Series, data) -> None:
        values = labels.astype(float)
        if values.nunique() < 2:
            raise DataError(f"the target is constant ({values.iloc[0]}) in every clean row: regression needs values that vary")

    def strata(self, labels: pd.Series) -> pd.Series:
        values = labels.astype(float)
        bins = max(1, min(QUANTILE_BINS, len(values) // 10))
        ranks = values.rank(method="first")
        keys = pd.Series(np.ceil(ranks / len(values) * bins).astype(int).astype(str), index=labels.index)
        return merge_small_strata(keys, 3)

    def target_spec(self, labels: pd.Series, train_labels: pd.Series, data) -> dict:
        values = train_labels.astype(float)
        std = float(values.std(ddof=0))
        return {"mean": float(values.mean()), "std": std if std > 0 else 1.0}

    def target_summary(self, labels: pd.Series, spec: dict) -> dict:
        values = labels.astype(float)
        if values.empty:
            return {"target": {}}
        return {
            "target": {
                "mean": float(values.mean()),
                "std": float(values.std(ddof=0)),
                "min": float(values.min()),
                "p50": float(values.median()),
                "max": float(values.max()),
            }
        }

    def encode(self, labels: pd.Series, spec: dict) -> list:
        return ((labels.astype(float) - spec["mean"]) / spec["std"]).tolist()

    def decode_truth(self, encoded, spec: dict) -> np.ndarray:
        return np.asarray(encoded, dtype=np.float64) * spec["std"] + spec["mean"]

    def head_config(self, spec: dict) -> dict:
        return {"num_labels": 1, "problem_type": self.problem_type, "id2label": {0: "value"}, "label2id": {"value": 0}}

    def outputs(self, logits: np.ndarray, spec: dict, decision: dict | None = None) -> np.ndarray:
        return np.asarray(logits, dtype=np.float64).reshape(len(logits), -1)[:, 0] * spec["std"] + spec["mean"]

    def training_metrics(self, logits: np.ndarray, label_ids: np.ndarray, spec: dict) -> dict:
        metrics = regression_metrics(np.asarray(label_ids).reshape(-1), np.asarray(logits).reshape(len(logits), -1)[:, 0])
        # A constant output has no correlation: count it as the worst, so it never becomes the best epoch.
        return {k: (v if np.isfinite(v) else -1.0) for k, v in metrics.items()}

    def truth_from_labels(self, labels: pd.Series, spec: dict) -> np.ndarray:
        return labels.astype(float).to_numpy()

    def score(self, truth: np.ndarray, outputs: np.ndarray, spec: dict, decision: dict) -> dict:
        return regression_metrics(truth, outputs)

    def evaluate(self, truth: np.ndarray, outputs: np.ndarray, spec: dict, decision: dict, split: str, folder: Path) -> dict:
        metrics = self.score(truth, outputs, spec, decision)
        plot_regression(truth, outputs, split, folder)
        return metrics

    def predict_columns(self, outputs: np.ndarray, spec: dict, decision: dict, options: dict | None = None) -> dict[str, list]:
        return {"predicted_value": np.asarray(outputs, dtype=np.float64).tolist()}

    def output_schema(self, spec: dict, options: dict | None = None) -> list[tuple[str, str]]:
        return [("predicted_value", "double")]

    def explain_targets(self, output, spec: dict, decision: dict) -> list[tuple[str, int]]:
        return [("", 0)]

    def target_value(self, output, index: int, info: dict) -> float:
        return float(output) / info["target"]["std"]

    def pick_explained(self, truth, outputs, spec: dict, decision: dict, n: int) -> tuple[list[int], list[int]]:
        error = np.abs(np.asarray(outputs, dtype=float) - np.asarray(truth, dtype=float))
        order = np.argsort(error, kind="stable")
        return [int(i) for i in order[::-1][:n]], [int(i) for i in order[: min(n, max(len(order) - n, 0))]]

    def describe(self, output, spec: dict, decision: dict) -> str:
        return f"{float(output):.3f}"

    def card_section(self, spec: dict, decision: dict) -> str:
        return (
            f"- Task: text regression (one number per text)\n"
            f"- Target scaling: standardised for training with the train split's mean {spec['mean']:.4f} and standard "
            f"deviation {spec['std']:.4f}; outputs are in the data's own units (the scaling is undone)\n"
            "- Output: `predicted_value`, unbounded (no squashing)"
        )

    def card_limits(self) -> list[str]:
        return ["Predictions outside the range seen in training are extrapolations and rarely reliable."]

    def linear_baseline(self, features: dict, parts: dict[str, pd.DataFrame], spec: dict) -> dict[str, np.ndarray]:
        """Ridge regression on TF-IDF."""
        from sklearn.linear_model import Ridge

        model = Ridge(alpha=1.0).fit(features["train"], parts["train"]["label"].astype(float).to_numpy())
        return {name: model.predict(x) for name, x in features.items()}


def plot_regression(truth, predicted, split: str, folder: Path) -> None:
    """Predicted against true values (with the identity line) and the histogram of residuals."""
    plt = pyplot()
    truth, predicted = np.asarray(truth, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(truth, predicted, s=6, alpha=0.4)
    if len(truth):
        low, high = float(min(truth.min(), predicted.min())), float(max(truth.max(), predicted.max()))
        ax.plot([low, high], [low, high], linestyle=":", color="grey")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(f"{split}: predicted vs true")
    fig.tight_layout()
    fig.savefig(folder / f"scatter_{split}.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(predicted - truth, bins=40, color="tab:orange")
    ax.set_xlabel("residual (predicted - true)")
    ax.set_ylabel("rows")
    ax.set_title(f"{split}: residuals")
    fig.tight_layout()
    fig.savefig(folder / f"residuals_{split}.png", dpi=110)
    plt.close(fig)
