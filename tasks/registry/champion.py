"""The champion a candidate is compared with: its compare-on figure, re-scored on the candidate's validation rows when
it was trained on other data, and never one of another task type."""

from __future__ import annotations

import json

import mlflow

from schemas.config import RegistryConfig
from schemas.results import SplitResult
from task_types import get_task_type
from task_types.base import scalar_metrics
from task_types.classification import score_by_name
from tasks.serving.model_io import load_registered


def rescore_champion(
    tracking_uri: str, name: str, champion, split: SplitResult, metric: str, batch_size: int, trust_remote_code: bool = False
) -> float:
    """The champion's compare-on metric on the candidate's validation split, matched by label name (ids may differ)."""
    import pandas as pd

    from task_types.inference import logits_for_texts, model_task

    mlflow.set_registry_uri(tracking_uri)
    model, tokenizer = load_registered(
        f"models:/{name}/{champion.version}", trust_remote_code, "set model.trust_remote_code=true to re-score the champion with it"
    )
    info = model_task(model.config)
    task_type = get_task_type(info["task"])
    frame = pd.read_parquet(split.paths["validation"])
    max_length = int(info.get("max_length") or champion.tags.get("max_length") or tokenizer.model_max_length)
    if task_type.word_level:  # the candidate's validation words, tagged by the champion
        from task_types.token_classification.inference import word_probabilities

        outputs = word_probabilities(model, tokenizer, [json.loads(v) for v in frame["text"]], max_length, batch_size)
        truth = task_type.truth_from_labels(frame["label"], info["target"])
        return scalar_metrics(task_type.score(truth, outputs, info["target"], info["decision"])).get(metric, float("nan"))
    pairs = frame["text_pair"].tolist() if "text_pair" in frame and info["text_pair"] else None
    logits = logits_for_texts(
        model,
        tokenizer,
        frame["text"].tolist(),
        max_length,
        batch_size,
        pairs=pairs,
        chunk=info.get("long_text") == "chunk",
        how=task_type.window_aggregate,
    )
    outputs = task_type.outputs(logits, info["target"], info["decision"])
    if info["task"] == "classification":
        names = [info["target"]["labels"][i] for i in outputs.argmax(axis=1)]
        return score_by_name(frame["label"].astype(str).tolist(), names, split.labels)[metric]
    # The candidate's targets in the champion's encoding: labels the champion does not know are never predicted.
    truth = task_type.truth_from_labels(frame["label"], info["target"])
    return scalar_metrics(task_type.score(truth, outputs, info["target"], info["decision"]))[metric]


def champion_for_gate(
    tracking_uri: str,
    registry: RegistryConfig,
    task: str,
    metric: str,
    current,
    split: SplitResult,
    batch_size: int,
    trust_remote_code: bool = False,
) -> tuple[dict | None, list[str], bool]:
    """(the champion's compare-on metric comparable with the candidate's, notes, whether it may be compared at all)."""
    if current is None:
        return None, [], True
    theirs_task = current.tags.get("task", "classification")
    if theirs_task != task:
        return (
            None,
            [
                f"champion v{current.version} is a {theirs_task} model: a {task} model never replaces it "
                f"(set registry.model_name to a name of its own)"
            ],
            False,
        )
    own = float(current.tags.get(f"val_{metric}", "nan"))
    theirs = current.tags.get("data_fingerprint", "")
    if theirs == split.key and own == own:
        return {"version": current.version, "value": own}, [], True
    rescored = rescore_champion(tracking_uri, registry.model_name, current, split, metric, batch_size, trust_remote_code)
    note = (
        f"champion v{current.version} was trained on different data (data fingerprint {theirs[:12] or 'unknown'} != {split.key[:12]}): "
        f"re-evaluated on this run's validation split, {metric} {rescored:.4f} (it had {own:.4f} on its own)"
    )
    return {"version": current.version, "value": rescored}, [note], True
