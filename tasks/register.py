"""Tracking and registration: one MLflow run per flow run, the model version, and the gate.

Promotion is a pure decision (`should_promote`) plus a thin I/O step that moves
the alias only after the version is fully logged and tagged.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from prefect import task

from schemas.config import PROJECT_ROOT, FinetuneConfig, RegistryConfig, TrackingConfig, flatten
from schemas.errors import is_transient
from tasks.logs import step_logger, timed
from tasks.cache import file_lock, fingerprint

PIPELINE_TAG = "finetune_flow.pipeline"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str]


def should_promote(candidate: dict, champion: dict | None, registry: RegistryConfig) -> Decision:
    """Every gate checked and reported together; candidate/champion hold val_accuracy and val_f1."""
    checks: list[tuple[bool, str]] = []
    acc, f1 = candidate["val_accuracy"], candidate["val_f1"]
    checks.append((acc >= registry.min_accuracy, f"val_accuracy {acc:.4f} {'>=' if acc >= registry.min_accuracy else '<'} min_accuracy {registry.min_accuracy}"))
    checks.append((f1 >= registry.min_f1, f"val_f1 {f1:.4f} {'>=' if f1 >= registry.min_f1 else '<'} min_f1 {registry.min_f1}"))
    if champion is not None:
        gain = f1 - champion["val_f1"]
        beats = gain > registry.min_delta
        checks.append((beats, f"val_f1 {f1:.4f} {'beats' if beats else 'does not beat'} champion v{champion['version']} ({champion['val_f1']:.4f}) by more than min_delta {registry.min_delta} (gain {gain:+.4f})"))
    else:
        checks.append((True, "no current champion"))
    passed = all(ok for ok, _ in checks)
    if passed and not registry.promote:
        return Decision(False, [msg for _, msg in checks] + ["registry.promote=false: registered without promotion"])
    failures = [msg for ok, msg in checks if not ok]
    return Decision(passed, [msg for _, msg in checks] if passed else failures)


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_orphaned_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark FAILED the RUNNING runs of this pipeline whose process on this host is gone (killed flows)."""
    host, orphans = socket.gethostname(), []
    running = client.search_runs([experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.`{PIPELINE_TAG}` = 'finetune'")
    for run in running:
        pid = int(run.data.tags.get("pid", "0") or 0)
        if run.data.tags.get("host") == host and pid and not _alive(pid):
            client.set_tag(run.info.run_id, "failure", f"process {pid} ended without closing this run (killed?); marked FAILED by a later start")
            client.set_terminated(run.info.run_id, status="FAILED")
            orphans.append(run.info.run_id)
    return orphans


@contextlib.contextmanager
def tracking_run(cfg: FinetuneConfig, flow_run_id: str | None = None) -> Iterator[str]:
    """Open the flow's one MLflow run; it ends FINISHED, or FAILED with the error, never RUNNING."""
    uri = cfg.tracking.resolved_uri()
    artifacts = None
    if uri.startswith("sqlite:///"):
        # Artifacts beside the database, not in whatever folder the flow was started from.
        store = Path(uri.removeprefix("sqlite:///")).parent
        store.mkdir(parents=True, exist_ok=True)
        artifacts = (store / "artifacts").resolve().as_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # Two flows creating one sqlite store at once race in its schema migrations: create it under a lock.
    with file_lock(Path(uri.removeprefix("sqlite:///") + ".lock")) if artifacts else contextlib.nullcontext():
        client = MlflowClient(uri, uri)
        client.search_registered_models(max_results=1)
        experiment = client.get_experiment_by_name(cfg.tracking.experiment)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(cfg.tracking.experiment, artifact_location=artifacts)
    fail_orphaned_runs(client, experiment_id)
    tags = {
        PIPELINE_TAG: "finetune", "host": socket.gethostname(), "pid": str(os.getpid()), "git_revision": git_revision(),
        "prefect_flow_run_id": str(flow_run_id or ""), "config_fingerprint": fingerprint(cfg.model_dump(mode="json")),
    }
    run = client.create_run(experiment_id, tags=tags)
    run_id = run.info.run_id
    params = [Param(k, str(v)[:6000]) for k, v in flatten(cfg).items()]
    for start in range(0, len(params), 100):
        client.log_batch(run_id, params=params[start : start + 100])
    try:
        yield run_id
    except BaseException as err:
        client.set_tag(run_id, "failure", f"{type(err).__name__}: {err}"[:5000])
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")


def _history_metrics(history: list[dict]) -> list[Metric]:
    """Learning curves from the Trainer's log history, one point per logged step."""
    names = {"loss": "train_loss", "eval_loss": "val_loss_curve", "eval_accuracy": "val_accuracy_curve", "eval_f1": "val_f1_curve", "learning_rate": "learning_rate"}
    points = []
    for entry in history:
        step = int(entry.get("step", 0))
        for key, name in names.items():
            if key in entry:
                points.append(Metric(name, float(entry[key]), 0, step))
    return points


@task(name="log_run", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=is_transient)
@timed
def log_run(run_id: str, tracking: TrackingConfig, steps: dict) -> dict:
    """Log row counts, metrics, learning curves and artifacts of every step to the run.

    Args:
        run_id: the flow's MLflow run.
        tracking: where MLflow lives.
        steps: results of ingest, clean, split, tokenize, fine_tune and evaluate by name.
    """
    client = MlflowClient(tracking.resolved_uri(), tracking.resolved_uri())
    clean, split, tokens, model, evaluation = (steps[k] for k in ("clean", "split", "tokenize", "fine_tune", "evaluate"))
    values = {
        "rows_in": clean["rows_in"], "rows_kept": clean["rows_kept"], "rows_quarantined": clean["rows_quarantined"],
        **{f"rows_quarantined_{reason}": n for reason, n in clean["quarantine_reasons"].items()},
        **{f"rows_{name}": part["rows"] for name, part in split["splits"].items()},
        "texts_truncated": sum(s["truncated"] for s in tokens["lengths"].values()),
        "train_seconds": model["train_seconds"] or 0.0, "train_samples_per_second": model["train_samples_per_second"] or 0.0,
        "epochs_run": model["epochs_run"] or 0.0,
    }
    prefix = {"validation": "val", "test": "test"}
    for split_name, metrics in evaluation["metrics"].items():
        for name in ("accuracy", "f1_macro", "f1_weighted"):
            values[f"{prefix[split_name]}_{name}"] = metrics[name]
        values[f"{prefix[split_name]}_f1"] = metrics["f1_macro"]
    points = [Metric(k, float(v), 0, 0) for k, v in values.items()] + _history_metrics(model["history"])
    for start in range(0, len(points), 500):
        client.log_batch(run_id, metrics=points[start : start + 500])
    client.log_batch(run_id, tags=[RunTag("device", model["device"]), RunTag("precision", model["precision"]), RunTag("labels", json.dumps(model["labels"])), RunTag("data_fingerprint", split["key"]), RunTag("resumed_from_checkpoint", str(model["resumed_from"] or ""))])
    for artifact in sorted(Path(evaluation["artifacts"]).glob("*")):
        if artifact.name != "manifest.json":
            client.log_artifact(run_id, str(artifact), "evaluation")
    client.log_artifact(run_id, clean["quarantine"], "data")
    client.log_dict(run_id, {k: {kk: vv for kk, vv in v.items() if kk != "history"} for k, v in steps.items()}, "data/steps.json")
    return {"metrics_logged": len(points)}


def _champion(client: MlflowClient, name: str, alias: str) -> dict | None:
    try:
        version = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None
    return {"version": version.version, "val_f1": float(version.tags.get("val_f1", "nan")), "run_id": version.run_id}


def _version_for_key(client: MlflowClient, name: str, key: str):
    versions = client.search_model_versions(f"name='{name}' and tags.train_key='{key}'")
    return min(versions, key=lambda v: int(v.version)) if versions else None


def _log_model(run_id: str, model_path: str) -> str:
    """Log the fine-tuned model as an MLflow transformers model; returns its URI."""
    import torch
    import transformers

    pipe = transformers.pipeline("text-classification", model=model_path, tokenizer=model_path, device="cpu")
    requirements = [f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}", f"transformers=={transformers.__version__}"]
    # log_model writes to the active run; resuming ours here marks it finished on exit, and the
    # flow's tracking_run sets the final status afterwards.
    with mlflow.start_run(run_id=run_id):
        info = mlflow.transformers.log_model(pipe, name="model", task="text-classification", pip_requirements=requirements)
    return info.model_uri


def decision_markdown(name: str, version, decision: Decision, candidate: dict, alias: str) -> str:
    """The gate decision as a Prefect markdown artifact, so the Prefect UI shows why."""
    verdict = f"promoted to `@{alias}`" if decision.promote else "**not promoted**"
    rows = "\n".join(f"| {reason} |" for reason in decision.reasons)
    return (
        f"# {name} v{version}: {verdict}\n\n"
        f"validation accuracy {candidate['val_accuracy']:.4f}, macro-F1 {candidate['val_f1']:.4f}\n\n"
        f"| gate |\n|---|\n{rows}\n"
    )


def _publish_decision(registry: RegistryConfig, version, decision: Decision, candidate: dict) -> None:
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import TaskRunContext

    if TaskRunContext.get() is None:  # the task body called directly (unit tests): no Prefect run to attach to
        return
    create_markdown_artifact(
        markdown=decision_markdown(registry.model_name, version, decision, candidate, registry.alias),
        key="gate-decision",
        description=f"{registry.model_name} v{version}: {'promoted' if decision.promote else 'not promoted'}",
    )


@task(name="register", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=is_transient)
@timed
def register_model(run_id: str, model: dict, evaluation: dict, registry: RegistryConfig, tracking: TrackingConfig) -> dict:
    """Log and register the model as a new version, apply the gate, move the alias if it passes.

    Args:
        run_id: the flow's MLflow run.
        model: the fine-tune step's result.
        evaluation: the evaluate step's result.
        registry: model name, gates and alias.
        tracking: where MLflow lives.
    Returns:
        model name, version, whether it was promoted, the alias and the reasons.
    """
    logger = step_logger()
    client = MlflowClient(tracking.resolved_uri(), tracking.resolved_uri())
    val = evaluation["metrics"]["validation"]
    candidate = {"val_accuracy": val["accuracy"], "val_f1": val["f1_macro"]}
    champion = _champion(client, registry.model_name, registry.alias)
    existing = _version_for_key(client, registry.model_name, model["key"])
    if existing is not None and existing.run_id != run_id:
        # Same data, base model, training config and seed as a registered version: nothing new to register.
        same = champion is not None and str(champion["version"]) == str(existing.version)
        reasons = [f"identical to v{existing.version} (same training key {model['key']}): no new version registered"]
        logger.info("register: %s", reasons[0])
        return {"model_name": registry.model_name, "model_version": int(existing.version), "promoted": False, "alias": registry.alias if same else None, "reasons": reasons}
    if existing is None:
        uri = _log_model(run_id, model["path"])
        existing = mlflow.register_model(uri, registry.model_name, tags={"train_key": model["key"]})
    # else: a retry of this very run after a partial failure re-uses the version it already made.
    version = existing
    decision = should_promote(candidate, champion, registry)
    tags = {
        "gate_passed": str(decision.promote).lower(),
        "gate_reasons": json.dumps(decision.reasons),
        "val_accuracy": f"{candidate['val_accuracy']:.6f}",
        "val_f1": f"{candidate['val_f1']:.6f}",
        "labels": json.dumps(model["labels"]),
        "git_revision": git_revision(),
        "run_id": run_id,
    }
    for key, value in tags.items():
        client.set_model_version_tag(registry.model_name, version.version, key, value)
    # The alias moves last: only a fully logged and tagged version can become champion.
    if decision.promote:
        client.set_registered_model_alias(registry.model_name, registry.alias, version.version)
    _publish_decision(registry, version.version, decision, candidate)
    logger.info("register: %s v%s %s; %s", registry.model_name, version.version, f"promoted to @{registry.alias}" if decision.promote else "not promoted", "; ".join(decision.reasons))
    return {"model_name": registry.model_name, "model_version": int(version.version), "promoted": decision.promote, "alias": registry.alias if decision.promote else None, "reasons": decision.reasons}
