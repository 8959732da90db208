"""Stable MLflow metric names: one split's metrics as val_<name> / test_<name>, and the Trainer's learning curves."""

from __future__ import annotations

from mlflow.entities import Metric

from task_types.base import scalar_metrics

SPLIT_PREFIX = {"validation": "val", "test": "test"}


def metric_name(text: str) -> str:
    """A label made safe for an MLflow metric name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))


def metric_values(split: str, metrics: dict) -> dict[str, float]:
    """One split's metrics under their stable names: val_accuracy, val_f1_macro, test_rmse, test_recall_<label>, ..."""
    prefix = SPLIT_PREFIX[split]
    values = {f"{prefix}_{name}": value for name, value in scalar_metrics(metrics).items()}
    for label, report in metrics.get("per_class", {}).items():
        for name, value in report.items():
            values[f"{prefix}_{name}_{metric_name(label)}"] = value
    return values


def history_metrics(history: list[dict]) -> list[Metric]:
    """Learning curves from the Trainer's log history, one point per logged step: train_loss, learning_rate,
    val_loss_curve and val_<metric>_curve for each metric computed during training."""
    fixed = {"loss": "train_loss", "learning_rate": "learning_rate", "eval_loss": "val_loss_curve"}
    points = []
    for entry in history:
        step = int(entry.get("step", 0))
        for key, value in entry.items():
            name = fixed.get(key) or (
                f"val_{key.removeprefix('eval_')}_curve"
                if key.startswith("eval_") and "runtime" not in key and "per_second" not in key and key != "eval_epoch"
                else None
            )
            if name and isinstance(value, (int, float)):
                points.append(Metric(name, float(value), 0, step))
    return points
