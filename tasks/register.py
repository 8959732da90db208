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
from schemas.secrets import mask_text, mask_uri
from tasks.logs import publish_markdown, step_logger, timed
from tasks.cache import file_lock, fingerprint
from tasks.registry import current_version, model_card, move_alias, promotion_lock
from tasks.safe_load import load_logged_model

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


def crash_prefect_flow_run(flow_run_id: str, message: str) -> bool:
    """Mark a dead process's Prefect flow run, and its unfinished task runs, CRASHED (when this API holds it)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    try:
        with get_client(sync_client=True) as prefect:
            run = prefect.read_flow_run(UUID(flow_run_id))
            if run.state is not None and run.state.is_final():
                return False
            for task_run in prefect.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))):
                if task_run.state is None or not task_run.state.is_final():
                    prefect.set_task_run_state(task_run.id, Crashed(message=message), force=True)
            prefect.set_flow_run_state(run.id, Crashed(message=message), force=True)
            return True
    except (ObjectNotFound, ValueError):  # another Prefect API's run, or no id
        return False


def fail_orphaned_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark FAILED the RUNNING runs of this pipeline whose process on this host is gone (killed flows),
    and their Prefect flow runs CRASHED."""
    host, orphans = socket.gethostname(), []
    running = client.search_runs([experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.`{PIPELINE_TAG}` = 'finetune'")
    for run in running:
        pid = int(run.data.tags.get("pid", "0") or 0)
        if run.data.tags.get("host") == host and pid and not _alive(pid):
            client.set_tag(run.info.run_id, "failure", f"process {pid} ended without closing this run (killed?); marked FAILED by a later start")
            client.set_terminated(run.info.run_id, status="FAILED")
            orphans.append(run.info.run_id)
            if run.data.tags.get("prefect_flow_run_id"):
                crash_prefect_flow_run(run.data.tags["prefect_flow_run_id"], f"process {pid} was killed; found by a later start")
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
    params = [Param(k, mask_text(str(v))[:6000]) for k, v in flatten(cfg).items()]
    for start in range(0, len(params), 100):
        client.log_batch(run_id, params=params[start : start + 100])
    try:
        yield run_id
    except BaseException as err:
        client.set_tag(run_id, "failure", mask_text(f"{type(err).__name__}: {err}")[:5000])
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")


SPLIT_PREFIX = {"validation": "val", "test": "test"}
SCALARS = ("accuracy", "f1_macro", "f1_weighted", "roc_auc", "pr_auc", "ece")


def metric_name(text: str) -> str:
    """A label made safe for an MLflow metric name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))


def metric_values(split: str, metrics: dict) -> dict[str, float]:
    """One split's metrics under their stable names: val_accuracy, val_f1_macro, test_recall_<label>, ..."""
    prefix = SPLIT_PREFIX[split]
    values = {f"{prefix}_{name}": metrics[name] for name in SCALARS if name in metrics}
    values[f"{prefix}_f1"] = metrics["f1_macro"]  # short alias kept for older comparisons
    for label, report in metrics.get("per_class", {}).items():
        for name, value in report.items():
            values[f"{prefix}_{name}_{metric_name(label)}"] = value
    return values


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
    for split_name, metrics in evaluation["metrics"].items():
        values.update(metric_values(split_name, metrics))
    points = [Metric(k, float(v), 0, 0) for k, v in values.items()] + _history_metrics(model["history"])
    for start in range(0, len(points), 500):
        client.log_batch(run_id, metrics=points[start : start + 500])
    client.log_batch(run_id, tags=[RunTag("device", model["device"]), RunTag("precision", model["precision"]), RunTag("labels", json.dumps(model["labels"])), RunTag("data_fingerprint", split["key"]), RunTag("resumed_from_checkpoint", str(model["resumed_from"] or ""))])
    for artifact in sorted(Path(evaluation["artifacts"]).glob("*")):
        if artifact.name != "manifest.json":
            client.log_artifact(run_id, str(artifact), "evaluation")
    client.log_artifact(run_id, clean["quarantine"], "data")
    for name in ("data_report.json", "data_report.md", "token_lengths.png"):
        client.log_artifact(run_id, str(Path(steps["report"]["path"]) / name), "data")
    client.log_dict(run_id, {k: {kk: vv for kk, vv in v.items() if kk != "history"} for k, v in steps.items()}, "data/steps.json")
    return {"metrics_logged": len(points)}


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


def load_registered(model_uri: str, trust_remote_code: bool = False, opt_in: str = "set model.trust_remote_code=true"):
    """(model, tokenizer) of a registered transformers model, e.g. models:/name@champion.

    Never through mlflow.transformers.load_model: it turns trust_remote_code on by itself for
    classes transformers does not know. A model that needs its own code is refused unless opted in.
    """
    return load_logged_model(model_uri, trust_remote_code, opt_in)


def rescore_champion(tracking_uri: str, name: str, champion, split: dict, batch_size: int, trust_remote_code: bool = False) -> dict:
    """Score the champion on the candidate's validation split, by label name (the label ids may differ)."""
    import pandas as pd

    from tasks.evaluate import predict_texts, score_by_name

    mlflow.set_registry_uri(tracking_uri)
    model, tokenizer = load_registered(f"models:/{name}/{champion.version}", trust_remote_code,
                                       "set model.trust_remote_code=true to re-score the champion with it")
    frame = pd.read_parquet(split["paths"]["validation"])
    max_length = int(champion.tags.get("max_length", "128"))
    proba = predict_texts(model, tokenizer, frame["text"].tolist(), max_length, batch_size)
    names = [model.config.id2label[int(i)] for i in proba.argmax(axis=1)]
    return score_by_name(frame["label"].astype(str).tolist(), names, split["labels"])


RESCORE_BATCH = 128


def _champion_for_gate(tracking_uri: str, registry: RegistryConfig, current, split: dict, batch_size: int,
                       trust_remote_code: bool = False) -> tuple[dict | None, list[str]]:
    """The champion's validation macro-F1 comparable with the candidate's, and a note when it was re-scored."""
    if current is None:
        return None, []
    own = float(current.tags.get("val_f1_macro", current.tags.get("val_f1", "nan")))
    theirs = current.tags.get("data_fingerprint", "")
    if theirs == split["key"]:
        return {"version": current.version, "val_f1": own}, []
    rescored = rescore_champion(tracking_uri, registry.model_name, current, split, batch_size, trust_remote_code)
    note = (f"champion v{current.version} was trained on different data (data fingerprint {theirs[:12] or 'unknown'} != {split['key'][:12]}): "
            f"re-evaluated on this run's validation split, macro-F1 {rescored['f1_macro']:.4f} (it had {own:.4f} on its own)")
    return {"version": current.version, "val_f1": rescored["f1_macro"]}, [note]


def metrics_markdown(name: str, version, promoted: bool, reasons: list[str], metrics: dict, alias: str) -> str:
    """The run's metrics table and gate decision as a Prefect markdown artifact."""
    verdict = f"promoted to `@{alias}`" if promoted else "**not promoted**"
    header = "| split | accuracy | macro-F1 | weighted-F1 | ROC-AUC | PR-AUC | ECE |\n|---|---|---|---|---|---|---|"
    rows = "\n".join(
        f"| {split} | " + " | ".join(f"{m.get(k, float('nan')):.4f}" for k in SCALARS) + " |" for split, m in metrics.items()
    )
    gates = "\n".join(f"| {reason} |" for reason in reasons)
    return f"# {name} v{version}: {verdict}\n\n## Metrics\n{header}\n{rows}\n\n## Gate decision\n| gate |\n|---|\n{gates}\n"


def _version_facts(client: MlflowClient, run_id: str, model: dict, evaluation: dict, split: dict, tracking: TrackingConfig) -> dict[str, str]:
    """Tags every version carries: metrics, fingerprints, code revision and where its run lives."""
    run = client.get_run(run_id)
    link = f"#/experiments/{run.info.experiment_id}/runs/{run_id}"
    tags = {
        "train_key": model["key"], "data_fingerprint": split["key"], "config_fingerprint": run.data.tags.get("config_fingerprint", ""),
        "git_revision": run.data.tags.get("git_revision", git_revision()), "run_id": run_id, "run_link": link,
        "tracking_uri": mask_uri(tracking.resolved_uri()), "labels": json.dumps(model["labels"]),
        "base_model": run.data.params.get("model.name_or_path", ""), "data_source": run.data.params.get("data.path", ""),
        "max_length": run.data.params.get("train.max_length", ""),
    }
    for split_name, metrics in evaluation["metrics"].items():
        prefix = SPLIT_PREFIX[split_name]
        tags.update({f"{prefix}_{n}": f"{metrics[n]:.6f}" for n in SCALARS if n in metrics})
    tags["val_f1"] = tags["val_f1_macro"]
    return tags


@task(name="register", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=is_transient)
@timed
def register_model(run_id: str, model: dict, evaluation: dict, split: dict, registry: RegistryConfig, tracking: TrackingConfig) -> dict:
    """Log and register the model as a version, tag it, apply the gate, and move the alias if every gate passed.

    Args:
        run_id: the flow's MLflow run.
        model: the fine-tune step's result.
        evaluation: the evaluate step's result.
        split: the split step's result (data fingerprint, label set, validation rows for re-scoring a champion).
        registry: model name, gates and alias.
        tracking: where MLflow lives.
    Returns:
        model name, version, whether it was promoted, the alias and the reasons.
    """
    logger = step_logger()
    uri = tracking.resolved_uri()
    client = MlflowClient(uri, uri)
    name, alias = registry.model_name, registry.alias
    val = evaluation["metrics"]["validation"]
    candidate = {"val_accuracy": val["accuracy"], "val_f1": val["f1_macro"]}
    notes: list[str] = []
    version = _version_for_key(client, name, model["key"])
    if version is None:
        version = mlflow.register_model(_log_model(run_id, model["path"]), name, tags={"train_key": model["key"]})
    elif version.run_id != run_id:
        # Same data, base model, training config and seed as a registered version: nothing new to register.
        notes.append(f"identical to v{version.version} (same training key {model['key']}): no new version registered")
    # else: a retry of this very run after a partial failure re-uses the version it already made.
    if not notes:
        for key, value in _version_facts(client, run_id, model, evaluation, split, tracking).items():
            client.set_model_version_tag(name, str(version.version), key, value)

    with promotion_lock(uri, name):
        current = current_version(client, name, alias)
        if notes and current is not None and str(current.version) == str(version.version):
            logger.info("register: %s; it is @%s already", notes[0], alias)
            return {"model_name": name, "model_version": int(version.version), "promoted": False, "alias": alias, "reasons": notes}
        champion, rescored = _champion_for_gate(uri, registry, current, split, RESCORE_BATCH, bool(model.get("trust_remote_code")))
        decision = should_promote(candidate, champion, registry)
        reasons = notes + rescored + decision.reasons
        gate = {"gate_passed": str(decision.promote).lower(), "gate_reasons": json.dumps(reasons)}
        gate.update({f"gate_reason_{i + 1}": reason[:5000] for i, reason in enumerate(reasons)})
        for key, value in gate.items():
            client.set_model_version_tag(name, str(version.version), key, value)
        card = model_card(_card_facts(client, version, model, evaluation, split, decision.promote, reasons, alias))
        client.update_model_version(name, str(version.version), description=card)
        client.log_text(run_id, card, "model_card.md")
        if decision.promote:
            move_alias(client, name, alias, version.version, who=f"finetune-flow run {run_id}", why="every gate passed")

    publish_markdown("gate-decision", metrics_markdown(name, version.version, decision.promote, reasons, evaluation["metrics"], alias),
                     f"{name} v{version.version}: {'promoted' if decision.promote else 'not promoted'}")
    logger.info("register: %s v%s %s; %s", name, version.version, f"promoted to @{alias}" if decision.promote else "not promoted", "; ".join(reasons))
    return {"model_name": name, "model_version": int(version.version), "promoted": decision.promote, "alias": alias if decision.promote else None, "reasons": reasons}


def _card_facts(client: MlflowClient, version, model: dict, evaluation: dict, split: dict, promoted: bool, reasons: list[str], alias: str) -> dict:
    tags = client.get_model_version(version.name, str(version.version)).tags
    return {
        "model_name": version.name, "version": version.version, "gate_passed": promoted or tags.get("gate_passed") == "true",
        "promoted": promoted, "alias": alias, "reasons": reasons, "base_model": tags.get("base_model", ""),
        "labels": model["labels"], "training": f"device {model['device']}, precision {model['precision']}, {model.get('epochs_run') or '?'} epochs",
        "data_source": tags.get("data_source", ""), "data_fingerprint": split["key"], "config_fingerprint": tags.get("config_fingerprint", ""),
        "sizes": {name: part["rows"] for name, part in split["splits"].items()}, "git_revision": tags.get("git_revision", ""),
        "run_id": tags.get("run_id", ""), "metrics": evaluation["metrics"], "max_length": tags.get("max_length", "?"),
    }
