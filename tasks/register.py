"""The register step: log the model as a registered version, tag it, apply the gate, and move the alias if every
gate passed.

Promotion is a pure decision (tasks/gate.py `should_promote`) plus this thin I/O step that moves the alias only after
the version is fully logged and tagged, under one lock per registered model.
"""

from __future__ import annotations

import json

import mlflow
from mlflow import MlflowClient
from prefect import task

from schemas.config import DEFAULT_RETRIES, EVAL_BATCH_SIZE, RegistryConfig, TrackingConfig
from schemas.errors import is_transient
from schemas.results import BaselineResult, EvaluationResult, RegisterResult, SplitResult, TrainResult
from task_types import get_task_type
from task_types.base import scalar_metrics
from tasks.registry.aliases import current_version, move_alias, promotion_lock
from tasks.registry.champion import champion_for_gate
from tasks.registry.gate import Decision, no_holder, policy_for, should_promote
from tasks.registry.model_card import card_facts, metrics_markdown, model_card, version_facts
from tasks.runtime.logs import publish_markdown, step_logger, timed
from tasks.runtime.tracking import tracking_client
from tasks.serving.model_io import log_model


def _version_for_key(client: MlflowClient, name: str, key: str):
    versions = client.search_model_versions(f"name='{name}' and tags.train_key='{key}'")
    return min(versions, key=lambda v: int(v.version)) if versions else None


@task(name="register", **DEFAULT_RETRIES, retry_condition_fn=is_transient)
@timed
def register_model(
    run_id: str,
    trained: TrainResult,
    evaluation: EvaluationResult,
    split: SplitResult,
    registry: RegistryConfig,
    tracking: TrackingConfig,
    baseline: BaselineResult | None = None,
) -> RegisterResult:
    """Log and register the model as a version, tag it, apply the gate, and move the alias if every gate passed.

    Args:
        run_id: the flow's MLflow run.
        trained: the fine-tune step's result.
        evaluation: the evaluate step's result.
        split: the split step's result (data fingerprint, label set, validation rows for re-scoring a champion).
        registry: model name, gates and alias.
        tracking: where MLflow lives.
        baseline: the baseline step's result (its validation metrics are a gate; its figures go into the card).
    Returns:
        model name, version, whether it was promoted, the alias and the reasons.
    """
    logger = step_logger()
    uri = tracking.resolved_uri()
    client = tracking_client(uri)
    name, alias = registry.model_name, registry.alias
    task_type = get_task_type(trained.task).for_target(split.target)
    policy = policy_for(task_type, registry)
    candidate = scalar_metrics(evaluation.metrics["validation"])
    notes: list[str] = []
    version = _version_for_key(client, name, trained.key)
    if version is None:
        params = client.get_run(run_id).data.params
        columns = task_type.trained_inputs(params)
        logged = log_model(run_id, trained.path, evaluation.decision, columns, params.get("model.name_or_path", ""))
        version = mlflow.register_model(logged, name, tags={"train_key": trained.key})
    elif version.run_id != run_id:
        # Same data, base model, training config and seed as a registered version: nothing new to register.
        notes.append(f"identical to v{version.version} (same training key {trained.key}): no new version registered")
    # else: a retry of this very run after a partial failure re-uses the version it already made.
    if not notes:
        for key, value in version_facts(client, run_id, trained, evaluation, split, tracking).items():
            client.set_model_version_tag(name, str(version.version), key, value)

    with promotion_lock(uri, name):
        current = current_version(client, name, alias)
        if notes and current is not None and str(current.version) == str(version.version):
            logger.info("register: %s; it is @%s already", notes[0], alias)
            return RegisterResult(model_name=name, model_version=int(version.version), promoted=False, alias=alias, reasons=notes)
        champion, rescored, comparable = champion_for_gate(
            uri, registry, trained.task, policy.compare_on, current, split, EVAL_BATCH_SIZE, trained.trust_remote_code
        )
        decision = should_promote(candidate, champion, policy, baseline.metrics["validation"] if baseline else None)
        if not comparable:
            decision = Decision(False, [r for r in decision.reasons if r != no_holder(alias)])
        reasons = notes + rescored + decision.reasons
        gate = {"gate_passed": str(decision.promote).lower(), "gate_reasons": json.dumps(reasons)}
        gate.update({f"gate_reason_{i + 1}": reason[:5000] for i, reason in enumerate(reasons)})
        for key, value in gate.items():
            client.set_model_version_tag(name, str(version.version), key, value)
        card = model_card(card_facts(client, version, trained, evaluation, split, decision.promote, reasons, alias, baseline))
        client.update_model_version(name, str(version.version), description=card)
        client.log_text(run_id, card, "model_card.md")
        if decision.promote:
            move_alias(client, name, alias, version.version, who=f"finetune-flow run {run_id}", why="every gate passed")

    publish_markdown(
        "gate-decision",
        metrics_markdown(name, version.version, decision.promote, reasons, evaluation.metrics, alias, task_type.headline),
        f"{name} v{version.version}: {'promoted' if decision.promote else 'not promoted'}",
    )
    logger.info(
        "register: %s v%s %s; %s",
        name,
        version.version,
        f"promoted to @{alias}" if decision.promote else "not promoted",
        "; ".join(reasons),
    )
    return RegisterResult(
        model_name=name,
        model_version=int(version.version),
        promoted=decision.promote,
        alias=alias if decision.promote else None,
        reasons=reasons,
    )
