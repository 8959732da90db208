"""Evaluate: score the fine-tuned model on validation and test with its task type's metrics and plots.

The output rule is fixed on validation first (multi-label thresholds) and then applied to every split.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from datasets import load_from_disk
from prefect import task
from transformers import AutoTokenizer

from schemas.config import CacheConfig, EvalConfig, TrainConfig
from schemas.results import EvaluationResult, TokenizeResult, TrainResult
from task_types import get_task_type
from task_types.base import scalar_metrics
from task_types.inference import INPUT_FEATURES, per_document, predict_logits
from tasks.runtime.cache import build_step, fingerprint
from tasks.runtime.logs import step_logger, timed

REPORT_VERSION = 7  # bump when the metrics or plots change, so cached evaluations are recomputed


@task(name="evaluate")
@timed
def evaluate_model(
    trained: TrainResult, tokens: TokenizeResult, eval_cfg: EvalConfig, train: TrainConfig, cache: CacheConfig
) -> EvaluationResult:
    """Score the fine-tuned model on the configured splits; write metrics JSON and plots.

    Args:
        trained: the fine-tune step's result (saved model path, task, device, precision).
        tokens: the tokenize step's result (tokenized splits and the target spec).
        eval_cfg: which splits to evaluate.
        train: batch size for inference.
        cache: where step outputs live.
    Returns:
        metrics per split, the output rule tuned on validation (`decision`) and the folder holding the artifacts.
    """
    logger = step_logger()
    task_type, spec = get_task_type(trained.task), tokens.target
    key = fingerprint("evaluate", REPORT_VERSION, trained.key, tokens.key, eval_cfg.splits)

    def make(folder: Path) -> dict:
        net = task_type.model_class().from_pretrained(trained.path)
        tokenizer = AutoTokenizer.from_pretrained(trained.path)
        scored = {}
        for split in sorted(set(eval_cfg.splits) | {"validation"}, key=["validation", "test"].index):
            dataset = load_from_disk(tokens.paths[split])
            if task_type.word_level:  # one row per window: outputs per word, merged back per sentence
                from task_types.token_classification.inference import scored_split

                scored[split] = scored_split(
                    net, tokenizer, dataset, spec, train.eval_batch_size, trained.device, trained.precision == "bf16"
                )
                continue
            columns = {k: dataset[k] for k in INPUT_FEATURES if k in dataset.column_names}
            logits = predict_logits(net, tokenizer, columns, train.eval_batch_size, trained.device, trained.precision == "bf16")
            labels = dataset["labels"]
            if "document" in dataset.column_names:  # chunked texts: one prediction per text, from all its windows
                documents = np.asarray(dataset["document"])
                logits = per_document(logits, documents, task_type.window_aggregate)
                labels = [labels[i] for i in np.unique(documents, return_index=True)[1]]
            scored[split] = (task_type.decode_truth(labels, spec), logits)
        # The output rule, fixed on validation: a temperature first, then thresholds on the calibrated outputs.
        calibration = task_type.calibrate(*scored["validation"], spec)
        outputs = {split: task_type.outputs(logits, spec, calibration) for split, (_, logits) in scored.items()}
        decision = {**calibration, **task_type.fit_decision(scored["validation"][0], outputs["validation"], spec)}
        results = {split: task_type.evaluate(scored[split][0], outputs[split], spec, decision, split, folder) for split in eval_cfg.splits}
        (folder / "metrics.json").write_text(json.dumps(results, indent=1))
        if decision:
            (folder / "decision.json").write_text(json.dumps(decision, indent=1))
        return {"metrics": results, "decision": decision}

    entry = build_step(cache, "evaluate", key, make)
    result = EvaluationResult.from_manifest(entry.meta, task=trained.task, artifacts=str(entry.path), key=key, reused=entry.reused)
    for split, metrics in result.metrics.items():
        figures = scalar_metrics(metrics)
        logger.info("evaluate %s: %s", split, ", ".join(f"{name} {figures[name]:.4f}" for name in task_type.headline if name in figures))
    return result
