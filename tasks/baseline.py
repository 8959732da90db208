"""Baseline: the task type's classical model on the same split, in every run (TF-IDF + a linear model for the
sequence-level types; each type names and fits its own).

A fine-tuned transformer that loses to it is not worth its compute: the gate checks the model beats
it (registry.beat_baseline), and the summary, MLflow and the model card show both side by side.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from prefect import task

from schemas.config import CacheConfig
from schemas.data import SPLITS
from schemas.results import BaselineResult, SplitResult
from task_types import get_task_type
from task_types.base import scalar_metrics
from tasks.runtime.cache import build_step, fingerprint
from tasks.runtime.logs import step_logger, timed


def baseline_metrics(task: str, parts: dict[str, pd.DataFrame], spec: dict) -> dict[str, dict[str, float]]:
    """Fit the task type's baseline on parts["train"]; its metrics on validation and test (the output rule,
    e.g. multi-label thresholds, tuned on validation as for the model)."""
    task_type = get_task_type(task)
    outputs = task_type.baseline(parts, spec)
    truth = {name: task_type.truth_from_labels(part["label"], spec) for name, part in parts.items()}
    decision = task_type.fit_decision(truth["validation"], outputs["validation"], spec)
    return {name: scalar_metrics(task_type.score(truth[name], outputs[name], spec, decision)) for name in ("validation", "test")}


@task(name="baseline")
@timed
def fit_baseline(split: SplitResult, cache: CacheConfig, task: str) -> BaselineResult:
    """Fit and score the classical baseline on the split, cached by the split's key.

    Args:
        split: the split step's result (split files and the target spec).
        cache: where step outputs live and whether to recompute them.
        task: the task type, which picks the baseline and its metrics.
    Returns:
        the baseline's metrics on validation and test, the key and whether it was re-used.
    """
    logger = step_logger()
    key = fingerprint("baseline", 2, split.key, task)

    def make(folder: Path) -> dict:
        parts = {name: pd.read_parquet(split.paths[name]) for name in SPLITS}
        metrics = baseline_metrics(task, parts, split.target)
        (folder / "baseline.json").write_text(json.dumps(metrics, indent=1))
        return {"metrics": metrics}

    entry = build_step(cache, "baseline", key, make)
    result = BaselineResult.from_manifest(entry.meta, key=key, reused=entry.reused)
    task_type = get_task_type(task).for_target(split.target)
    for name, metrics in result.metrics.items():
        logger.info(
            "baseline %s (%s): %s%s",
            name,
            task_type.baseline_name,
            ", ".join(f"{m} {metrics[m]:.4f}" for m in task_type.headline if m in metrics),
            " (cached)" if entry.reused else "",
        )
    return result
