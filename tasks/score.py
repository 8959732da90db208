"""Score: a registered version's metrics on clean labelled rows it was not trained on (flows/evaluate.py), with the
task type's own metrics and plots, the version's output rule (thresholds, temperature, null threshold) applied."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.config import DEFAULT_RETRIES, EVAL_BATCH_SIZE, CacheConfig
from schemas.errors import ConfigError, is_transient
from schemas.results import CleanResult, ScoreResult
from task_types import get_task_type
from task_types.base import Runner, scalar_metrics
from task_types.inference import cpu_has_fast_bf16, model_task
from tasks.runtime.cache import build_step, fingerprint
from tasks.runtime.logs import step_logger, timed
from tasks.serving.model_io import load_registered

SCORE_VERSION = 1


@task(name="score", **DEFAULT_RETRIES, retry_condition_fn=is_transient, cache_policy=NO_CACHE)
@timed
def score_version(
    model_uri: str, version_key: str, clean: CleanResult, task: str, cache: CacheConfig, trust_remote_code: bool = False
) -> ScoreResult:
    """Answer the clean rows with the registered version and score the answers against their labels.

    Args:
        model_uri: models:/NAME/VERSION of the version.
        version_key: what identifies the version's weights (its training key), part of the cache key.
        clean: the clean step's result (the labelled rows).
        task: the task type the data was read for; a version of another type is refused.
        cache: where step outputs live.
        trust_remote_code: allow a model with its own code.
    Returns:
        metrics, the folder of metrics.json and the plots.
    """
    logger = step_logger()
    key = fingerprint("score", SCORE_VERSION, model_uri, version_key, clean.key, cpu_has_fast_bf16())

    def make(folder: Path) -> dict:
        model, tokenizer = load_registered(model_uri, trust_remote_code, "pass --trust-remote-code")
        info = model_task(model.config)
        if info["task"] != task:
            raise ConfigError(f"{model_uri} is a {info['task']} model, and the data is read for task={task}: set task={info['task']}")
        task_type = get_task_type(task).for_target(info["target"])
        frame = pd.read_parquet(clean.path)
        truth, outputs = task_type.score_rows(model, tokenizer, frame, info, Runner(EVAL_BATCH_SIZE, "cpu", cpu_has_fast_bf16()))
        metrics = task_type.evaluate(truth, outputs, info["target"], info["decision"], "evaluation", folder)
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
        return {"metrics": metrics, "rows": len(frame)}

    entry = build_step(cache, "score", key, make)
    result = ScoreResult.from_manifest(entry.meta, model_uri=model_uri, artifacts=str(entry.path), key=key, reused=entry.reused)
    figures = scalar_metrics(result.metrics)
    logger.info("score %s on %d rows: %s", model_uri, result.rows, ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))
    return result
