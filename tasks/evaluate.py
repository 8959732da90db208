"""Evaluate: score the fine-tuned model on validation and test with its task type's metrics and plots.

The output rule is fixed on validation first (multi-label thresholds) and then applied to every split.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from prefect import task

from schemas.config import CacheConfig, EvalConfig, ExplainConfig, TrainConfig
from schemas.results import EvaluationResult, TokenizeResult, TrainResult
from task_types import get_task_type
from task_types.base import Runner, scalar_metrics
from task_types.explain import explain_examples
from task_types.inference import model_task
from tasks.runtime.cache import build_step, fingerprint
from tasks.runtime.logs import step_logger, timed

REPORT_VERSION = 9  # bump when the metrics or plots change, so cached evaluations are recomputed


@task(name="evaluate")
@timed
def evaluate_model(
    trained: TrainResult,
    tokens: TokenizeResult,
    eval_cfg: EvalConfig,
    train: TrainConfig,
    cache: CacheConfig,
    explain: ExplainConfig | None = None,
) -> EvaluationResult:
    """Score the fine-tuned model on the configured splits; write metrics JSON and plots.

    Args:
        trained: the fine-tune step's result (saved model path, task, device, precision).
        tokens: the tokenize step's result (tokenized splits, the rows they came from and the target spec).
        eval_cfg: which splits to evaluate (and the task type's own evaluation options).
        train: batch size for inference.
        cache: where step outputs live.
        explain: how many validation rows to explain and how (None or examples=0: none).
    Returns:
        metrics per split, the output rule tuned on validation (`decision`) and the folder holding the artifacts.
    """
    logger = step_logger()
    task_type, spec = get_task_type(trained.task).for_target(tokens.target), tokens.target
    explaining = explain is not None and explain.examples > 0
    key = fingerprint(
        "evaluate", REPORT_VERSION, trained.key, tokens.key, eval_cfg.model_dump(mode="json"), explain.model_dump() if explaining else None
    )
    runner = Runner(train.eval_batch_size, trained.device, trained.precision == "bf16")
    settings = task_type.eval_settings(eval_cfg)

    def make(folder: Path) -> dict:
        from datasets import load_from_disk  # here: a re-run that finds the step cached never loads datasets or transformers
        from transformers import AutoTokenizer

        net = task_type.model_class().from_pretrained(trained.path)
        tokenizer = AutoTokenizer.from_pretrained(trained.path)
        scored, frames = {}, {}
        for split in sorted(set(eval_cfg.splits) | {"validation"}, key=["validation", "test"].index):
            frame = frames[split] = pd.read_parquet(tokens.sources[split]) if tokens.sources else None
            scored[split] = task_type.run_features(net, tokenizer, load_from_disk(tokens.paths[split]), frame, spec, runner, settings)
        # The output rule, fixed on validation: a temperature first, then thresholds on the calibrated outputs.
        calibration = task_type.calibrate(*scored["validation"], spec)
        outputs = {split: task_type.outputs(raw, spec, calibration) for split, (_, raw) in scored.items()}
        decision = {**settings, **calibration, **task_type.fit_decision(scored["validation"][0], outputs["validation"], spec)}
        results = {split: task_type.evaluate(scored[split][0], outputs[split], spec, decision, split, folder) for split in eval_cfg.splits}
        (folder / "metrics.json").write_text(json.dumps(results, indent=1))
        if decision:
            (folder / "decision.json").write_text(json.dumps(decision, indent=1))
        explanations = {}
        if explaining:
            info = {**model_task(net.config), "decision": decision}
            truth, outputs_val = scored["validation"][0], outputs["validation"]
            explanations = explain_examples(
                task_type, net, tokenizer, frames["validation"], truth, outputs_val, info, explain, runner, folder
            )
        return {"metrics": results, "decision": decision, "explanations": explanations}

    entry = build_step(cache, "evaluate", key, make)
    result = EvaluationResult.from_manifest(entry.meta, task=trained.task, artifacts=str(entry.path), key=key, reused=entry.reused)
    if result.explanations:
        figures = result.explanations["metrics"]
        logger.info(
            "evaluate: explained %d validation rows (%.2f s each): %s",
            result.explanations["rows"],
            result.explanations["seconds_per_row"],
            ", ".join(f"{k} {v:.4f}" for k, v in figures.items()),
        )
    for split, metrics in result.metrics.items():
        figures = scalar_metrics(metrics)
        logger.info("evaluate %s: %s", split, ", ".join(f"{name} {figures[name]:.4f}" for name in task_type.headline if name in figures))
    return result
