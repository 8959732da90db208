"""The version an alias points at, as a candidate is compared with it: its compare-on figure, re-scored on the
candidate's validation rows when it was trained on other data, and never one of another task type."""

from __future__ import annotations

import mlflow

from schemas.config import RegistryConfig
from schemas.results import SplitResult
from task_types import get_task_type
from task_types.base import Runner
from task_types.inference import LEGACY_TASK
from tasks.serving.model_io import load_registered


def rescore_champion(
    tracking_uri: str, name: str, alias: str, champion, split: SplitResult, metric: str, batch_size: int, trust_remote_code: bool = False
) -> float:
    """The aliased version's compare-on metric on the candidate's validation split (its task type matches rows and labels)."""
    import pandas as pd

    from task_types.inference import model_task

    mlflow.set_registry_uri(tracking_uri)
    model, tokenizer = load_registered(
        f"models:/{name}/{champion.version}", trust_remote_code, f"set model.trust_remote_code=true to re-score @{alias} with it"
    )
    info = model_task(model.config)
    frame = pd.read_parquet(split.paths["validation"])
    metrics = get_task_type(info["task"]).rescore(model, tokenizer, frame, info, split.target, Runner(batch_size))
    return metrics.get(metric, float("nan"))


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
    """(the aliased version's compare-on metric comparable with the candidate's, notes, whether it may be compared at all)."""
    if current is None:
        return None, [], True
    alias = registry.alias
    theirs_task = current.tags.get("task") or LEGACY_TASK  # versions registered before task types were classifiers
    if theirs_task != task:
        return (
            None,
            [
                f"@{alias} v{current.version} is a {theirs_task} model: a {task} model never replaces it "
                f"(set registry.model_name to a name of its own)"
            ],
            False,
        )
    own = float(current.tags.get(f"val_{metric}", "nan"))
    theirs = current.tags.get("data_fingerprint", "")
    if theirs == split.key and own == own:
        return {"version": current.version, "value": own}, [], True
    rescored = rescore_champion(tracking_uri, registry.model_name, alias, current, split, metric, batch_size, trust_remote_code)
    note = (
        f"@{alias} v{current.version} was trained on different data (data fingerprint {theirs[:12] or 'unknown'} != {split.key[:12]}): "
        f"re-evaluated on this run's validation split, {metric} {rescored:.4f} (it had {own:.4f} on its own)"
    )
    return {"version": current.version, "value": rescored}, [note], True
