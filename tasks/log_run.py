"""The log_run step: row counts, metrics, learning curves, artifacts and dataset lineage of every step, on the flow's run."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from mlflow.entities import Metric, RunTag
from prefect import task

from schemas.config import DEFAULT_RETRIES, TrackingConfig
from schemas.errors import is_transient
from schemas.results import LogRunResult, RunSteps, SplitResult
from schemas.secrets import mask_uri
from tasks.runtime.logs import timed
from tasks.runtime.metric_names import history_metrics, metric_values
from tasks.runtime.tracking import tracking_client


def split_datasets(split: SplitResult, source: str) -> list:
    """The train/validation/test splits as MLflow dataset inputs (the UI's Datasets column): name, source and a content
    digest (the split step's key, which fingerprints the data and how it was split), one context tag per split."""
    import pandas as pd
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import DatasetInput, InputTag

    inputs = []
    for name, path in split.paths.items():
        frame = pd.read_parquet(path)
        dataset = from_pandas(frame, source=mask_uri(str(source)) or path, targets="label", name=f"{name}", digest=split.key[:8] + name[:2])
        inputs.append(
            DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", {"train": "training"}.get(name, name))])
        )
    return inputs


@task(name="log_run", **DEFAULT_RETRIES, retry_condition_fn=is_transient)
@timed
def log_run(run_id: str, tracking: TrackingConfig, steps: RunSteps) -> LogRunResult:
    """Log row counts, metrics, learning curves and artifacts of every step to the run.

    Args:
        run_id: the flow's MLflow run.
        tracking: where MLflow lives.
        steps: the results of ingest, clean, split, tokenize, report, baseline, fine_tune and evaluate.
    Returns:
        how many metric points were logged.
    """
    client = tracking_client(tracking.resolved_uri())
    clean, split, tokens, trained, evaluation = steps.clean, steps.split, steps.tokenize, steps.fine_tune, steps.evaluate
    values = {
        "rows_in": clean.rows_in,
        "rows_kept": clean.rows_kept,
        "rows_quarantined": clean.rows_quarantined,
        **{f"rows_quarantined_{reason}": n for reason, n in clean.quarantine_reasons.items()},
        **{f"rows_{name}": rows for name, rows in split.sizes.items()},
        "texts_truncated": tokens.texts_truncated,
        "train_seconds": trained.train_seconds or 0.0,
        "train_samples_per_second": trained.train_samples_per_second or 0.0,
        "epochs_run": trained.epochs_run or 0.0,
        **({"learning_rate_chosen": trained.learning_rate} if isinstance(trained.learning_rate, (int, float)) else {}),
        **({"lr_range_seconds": trained.lr_range_seconds} if trained.lr_range_seconds is not None else {}),
    }
    for split_name, metrics in evaluation.metrics.items():
        values.update(metric_values(split_name, metrics))
    values.update(evaluation.explanations.get("metrics", {}))  # explain_comprehensiveness, ..., explain_delta
    for split_name, metrics in steps.baseline.metrics.items():
        values.update({f"baseline_{k}": v for k, v in metric_values(split_name, metrics).items()})
    points = [Metric(k, float(v), 0, 0) for k, v in values.items()] + history_metrics(trained.history)
    for start in range(0, len(points), 500):
        client.log_batch(run_id, metrics=points[start : start + 500])
    client.log_batch(
        run_id,
        tags=[
            RunTag("task", trained.task),
            RunTag("device", trained.device),
            RunTag("precision", trained.precision),
            RunTag("labels", json.dumps(trained.labels)),
            RunTag("data_fingerprint", split.key),
            RunTag("resumed_from_checkpoint", str(trained.resumed_from or "")),
            RunTag("loss_weights", json.dumps(trained.loss_weights)),
            RunTag("epochs_chosen", trained.epochs_why[:5000]),
            RunTag("learning_rate_chosen", trained.learning_rate_why[:5000]),
        ],
    )
    for artifact in sorted(Path(evaluation.artifacts).glob("*")):
        if artifact.name != "manifest.json":
            client.log_artifact(run_id, str(artifact), "evaluation")
    client.log_artifact(run_id, clean.quarantine, "data")
    for name in ("lr_range.png", "lr_range.json"):  # train.learning_rate=auto: the range test's curve
        if (Path(trained.path).parent / name).is_file():
            client.log_artifact(run_id, str(Path(trained.path).parent / name), "training")
    for name in ("data_report.json", "data_report.md", "token_lengths.png"):
        client.log_artifact(run_id, str(Path(steps.report.path) / name), "data")
    results = {name: {k: v for k, v in asdict(result).items() if k != "history"} for name, result in steps.by_name().items()}
    client.log_dict(run_id, results, "data/steps.json")
    client.log_inputs(run_id, datasets=split_datasets(split, steps.ingest.source))
    return LogRunResult(metrics_logged=len(points))
