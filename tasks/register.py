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
from collections.abc import Iterator
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from prefect import task

from schemas.config import DEFAULT_RETRIES, PROJECT_ROOT, FinetuneConfig, RegistryConfig, TrackingConfig, flatten, resolve_model_path
from schemas.errors import is_transient
from schemas.secrets import mask_text, mask_uri
from task_types import get_task_type
from task_types.base import scalar_metrics
from task_types.classification import score_by_name
from tasks.cache import file_lock, fingerprint
from tasks.gate import Decision, policy_for, should_promote
from tasks.logs import publish_markdown, step_logger, timed
from tasks.registry import current_version, model_card, move_alias, promotion_lock
from tasks.safe_load import load_logged_model

PIPELINE_TAG = "finetune_flow.pipeline"


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _alive(pid: int) -> bool:
    import psutil

    return psutil.pid_exists(pid)


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
            client.set_tag(
                run.info.run_id, "failure", f"process {pid} ended without closing this run (killed?); marked FAILED by a later start"
            )
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
        experiment_id = (
            experiment.experiment_id if experiment else client.create_experiment(cfg.tracking.experiment, artifact_location=artifacts)
        )
    fail_orphaned_runs(client, experiment_id)
    tags = {
        PIPELINE_TAG: "finetune",
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
        "git_revision": git_revision(),
        "prefect_flow_run_id": str(flow_run_id or ""),
        "config_fingerprint": fingerprint(cfg.model_dump(mode="json")),
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


def metric_name(text: str) -> str:
    """A label made safe for an MLflow metric name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))


def metric_values(split: str, metrics: dict) -> dict[str, float]:
    """One split's metrics under their stable names: val_accuracy, val_f1_macro, test_rmse, test_recall_<label>, ..."""
    prefix = SPLIT_PREFIX[split]
    values = {f"{prefix}_{name}": value for name, value in scalar_metrics(metrics).items()}
    for label, report in metrics.get("per_class", {}).items():
        for name, value in report.items():
            values[f"{prefix}_{name}_{metric_name(label)}"] = value
    return values


def _history_metrics(history: list[dict]) -> list[Metric]:
    """Learning curves from the Trainer's log history, one point per logged step: train_loss, learning_rate,
    val_loss_curve and val_<metric>_curve for each metric computed during training."""
    fixed = {"loss": "train_loss", "learning_rate": "learning_rate", "eval_loss": "val_loss_curve"}
    points = []
    for entry in history:
        step = int(entry.get("step", 0))
        for key, value in entry.items():
            name = fixed.get(key) or (
                f"val_{key.removeprefix('eval_')}_curve"
                if key.startswith("eval_") and "runtime" not in key and "per_second" not in key and key != "eval_epoch"
                else None
            )
            if name and isinstance(value, (int, float)):
                points.append(Metric(name, float(value), 0, step))
    return points


def split_datasets(split: dict, source: str) -> list:
    """The train/validation/test splits as MLflow dataset inputs (the UI's Datasets column): name, source and a content
    digest (the split step's key, which fingerprints the data and how it was split), one context tag per split."""
    import pandas as pd
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import DatasetInput, InputTag

    inputs = []
    for name, path in split["paths"].items():
        frame = pd.read_parquet(path)
        dataset = from_pandas(
            frame, source=mask_uri(str(source)) or path, targets="label", name=f"{name}", digest=split["key"][:8] + name[:2]
        )
        inputs.append(
            DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", {"train": "training"}.get(name, name))])
        )
    return inputs


@task(name="log_run", **DEFAULT_RETRIES, retry_condition_fn=is_transient)
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
        "rows_in": clean["rows_in"],
        "rows_kept": clean["rows_kept"],
        "rows_quarantined": clean["rows_quarantined"],
        **{f"rows_quarantined_{reason}": n for reason, n in clean["quarantine_reasons"].items()},
        **{f"rows_{name}": part["rows"] for name, part in split["splits"].items()},
        "texts_truncated": sum(s["truncated"] for s in tokens["lengths"].values()),
        "train_seconds": model["train_seconds"] or 0.0,
        "train_samples_per_second": model["train_samples_per_second"] or 0.0,
        "epochs_run": model["epochs_run"] or 0.0,
    }
    for split_name, metrics in evaluation["metrics"].items():
        values.update(metric_values(split_name, metrics))
    for split_name, metrics in steps["baseline"]["metrics"].items():
        values.update({f"baseline_{k}": v for k, v in metric_values(split_name, metrics).items()})
    points = [Metric(k, float(v), 0, 0) for k, v in values.items()] + _history_metrics(model["history"])
    for start in range(0, len(points), 500):
        client.log_batch(run_id, metrics=points[start : start + 500])
    client.log_batch(
        run_id,
        tags=[
            RunTag("task", model["task"]),
            RunTag("device", model["device"]),
            RunTag("precision", model["precision"]),
            RunTag("labels", json.dumps(model["labels"])),
            RunTag("data_fingerprint", split["key"]),
            RunTag("resumed_from_checkpoint", str(model["resumed_from"] or "")),
            RunTag("loss_weights", json.dumps(model.get("loss_weights"))),
            RunTag("epochs_chosen", str(model.get("epochs_why", ""))[:5000]),
        ],
    )
    for artifact in sorted(Path(evaluation["artifacts"]).glob("*")):
        if artifact.name != "manifest.json":
            client.log_artifact(run_id, str(artifact), "evaluation")
    client.log_artifact(run_id, clean["quarantine"], "data")
    for name in ("data_report.json", "data_report.md", "token_lengths.png"):
        client.log_artifact(run_id, str(Path(steps["report"]["path"]) / name), "data")
    client.log_dict(run_id, {k: {kk: vv for kk, vv in v.items() if kk != "history"} for k, v in steps.items()}, "data/steps.json")
    client.log_inputs(run_id, datasets=split_datasets(split, steps["ingest"].get("source", "")))
    return {"metrics_logged": len(points)}


def _version_for_key(client: MlflowClient, name: str, key: str):
    versions = client.search_model_versions(f"name='{name}' and tags.train_key='{key}'")
    return min(versions, key=lambda v: int(v.version)) if versions else None


def _with_decision(model_path: str, decision: dict, columns: dict, folder: Path) -> str:
    """A copy of the trained model whose config also carries the output rule tuned on validation and the
    input column names it was trained on (predict's defaults)."""
    import shutil

    target = folder / "model"
    shutil.copytree(model_path, target)
    config = json.loads((target / "config.json").read_text())
    config.setdefault("finetune_flow", {}).update({"decision": decision, **columns})
    (target / "config.json").write_text(json.dumps(config, indent=2))
    return str(target)


def _signature(task_type, info: dict):
    """The MLflow signature: the text (and pair) in, the task type's predict columns out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = [ColSpec("string", "text")] + ([ColSpec("string", "text_pair")] if info["text_pair"] else [])
    outputs = []
    for name in task_type.empty_columns(info["target"]):
        kind = "string" if name in ("predicted_label", "predicted_labels", *task_type.string_columns) else "double"
        outputs.append(ColSpec(kind, name))
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def hub_card(base_model: str):
    """A model card for MLflow built from what is on disk: given one, MLflow never asks the hub for the base
    model's card or license (offline, that costs a warning per registration, or a timeout)."""
    import re

    from huggingface_hub import ModelCard

    readme = Path(resolve_model_path(base_model)) / "README.md" if base_model else None
    found = re.search(r"^license:\s*(\S+)", readme.read_text(errors="replace"), re.M) if readme and readme.is_file() else None
    license_name = found.group(1) if found else "unknown"
    return ModelCard(
        f"---\nlicense: {license_name}\n---\nFine-tuned by finetune-flow from `{mask_uri(base_model)}`; see the registered "
        "version's description for its model card.\n"
    )


def _log_model(run_id: str, model_path: str, decision: dict, columns: dict, base_model: str = "") -> str:
    """Log the fine-tuned model (with its output rule) as an MLflow transformers model; returns its URI."""
    import tempfile

    import torch
    import transformers

    from tasks.inference import model_task

    requirements = [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"transformers=={transformers.__version__}",
    ]
    with tempfile.TemporaryDirectory(prefix="ff-model-") as tmp:
        path = _with_decision(model_path, decision, columns, Path(tmp))
        task = json.loads((Path(path) / "config.json").read_text()).get("finetune_flow", {}).get("task", "classification")
        pipeline_task = get_task_type(task).pipeline_task  # text-classification, or token-classification for word-level types
        pipe = transformers.pipeline(pipeline_task, model=path, tokenizer=path, device="cpu")
        info = model_task(pipe.model.config)
        # log_model writes to the active run; resuming ours here marks it finished on exit, and the
        # flow's tracking_run sets the final status afterwards.
        with mlflow.start_run(run_id=run_id):
            logged = mlflow.transformers.log_model(
                pipe,
                name="model",
                task=pipeline_task,
                pip_requirements=requirements,
                signature=_signature(get_task_type(info["task"]), info),
                model_card=hub_card(base_model),
            )
    return logged.model_uri


def load_registered(model_uri: str, trust_remote_code: bool = False, opt_in: str = "set model.trust_remote_code=true"):
    """(model, tokenizer) of a registered transformers model, e.g. models:/name@champion.

    Never through mlflow.transformers.load_model: it turns trust_remote_code on by itself for
    classes transformers does not know. A model that needs its own code is refused unless opted in.
    """
    return load_logged_model(model_uri, trust_remote_code, opt_in)


def rescore_champion(
    tracking_uri: str, name: str, champion, split: dict, metric: str, batch_size: int, trust_remote_code: bool = False
) -> float:
    """The champion's compare-on metric on the candidate's validation split, matched by label name (ids may differ)."""
    import pandas as pd

    from tasks.inference import logits_for_texts, model_task

    mlflow.set_registry_uri(tracking_uri)
    model, tokenizer = load_registered(
        f"models:/{name}/{champion.version}", trust_remote_code, "set model.trust_remote_code=true to re-score the champion with it"
    )
    info = model_task(model.config)
    task_type = get_task_type(info["task"])
    frame = pd.read_parquet(split["paths"]["validation"])
    max_length = int(info.get("max_length") or champion.tags.get("max_length") or tokenizer.model_max_length)
    if task_type.word_level:  # the candidate's validation words, tagged by the champion
        from tasks.word_inference import word_probabilities

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
        return score_by_name(frame["label"].astype(str).tolist(), names, split["labels"])[metric]
    # The candidate's targets in the champion's encoding: labels the champion does not know are never predicted.
    truth = task_type.truth_from_labels(frame["label"], info["target"])
    return scalar_metrics(task_type.score(truth, outputs, info["target"], info["decision"]))[metric]


RESCORE_BATCH = 128


def _champion_for_gate(
    tracking_uri: str,
    registry: RegistryConfig,
    task: str,
    metric: str,
    current,
    split: dict,
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
    if theirs == split["key"] and own == own:
        return {"version": current.version, "value": own}, [], True
    rescored = rescore_champion(tracking_uri, registry.model_name, current, split, metric, batch_size, trust_remote_code)
    note = (
        f"champion v{current.version} was trained on different data (data fingerprint {theirs[:12] or 'unknown'} != {split['key'][:12]}): "
        f"re-evaluated on this run's validation split, {metric} {rescored:.4f} (it had {own:.4f} on its own)"
    )
    return {"version": current.version, "value": rescored}, [note], True


def metrics_markdown(name: str, version, promoted: bool, reasons: list[str], metrics: dict, alias: str, headline: tuple[str, ...]) -> str:
    """The run's metrics table and gate decision as a Prefect markdown artifact."""
    verdict = f"promoted to `@{alias}`" if promoted else "**not promoted**"
    header = "| split | " + " | ".join(headline) + " |\n|---|" + "---|" * len(headline)
    rows = "\n".join(f"| {split} | " + " | ".join(f"{m.get(k, float('nan')):.4f}" for k in headline) + " |" for split, m in metrics.items())
    gates = "\n".join(f"| {reason} |" for reason in reasons)
    return f"# {name} v{version}: {verdict}\n\n## Metrics\n{header}\n{rows}\n\n## Gate decision\n| gate |\n|---|\n{gates}\n"


def _version_facts(
    client: MlflowClient, run_id: str, model: dict, evaluation: dict, split: dict, tracking: TrackingConfig
) -> dict[str, str]:
    """Tags every version carries: task, inputs and outputs, metrics, fingerprints, code revision and where its run lives."""
    run = client.get_run(run_id)
    link = f"#/experiments/{run.info.experiment_id}/runs/{run_id}"
    task_type = get_task_type(model["task"])
    pair = run.data.params.get("data.text_pair_column", "None")
    tags = {
        "task": model["task"],
        "inputs": "text, text_pair" if pair not in ("None", "") else "text",
        "outputs": ", ".join(task_type.empty_columns(split["target"]))[:5000],
        "train_key": model["key"],
        "data_fingerprint": split["key"],
        "config_fingerprint": run.data.tags.get("config_fingerprint", ""),
        "git_revision": run.data.tags.get("git_revision", git_revision()),
        "run_id": run_id,
        "run_link": link,
        "tracking_uri": mask_uri(tracking.resolved_uri()),
        "labels": json.dumps(model["labels"])[:5000],
        "base_model": run.data.params.get("model.name_or_path", ""),
        "data_source": run.data.params.get("data.path", ""),
        "max_length": str(model.get("max_length") or run.data.params.get("train.max_length", "")),
    }
    if evaluation["decision"]:
        tags["decision"] = json.dumps(evaluation["decision"])[:5000]
    for split_name, metrics in evaluation["metrics"].items():
        prefix = SPLIT_PREFIX[split_name]
        tags.update({f"{prefix}_{n}": f"{v:.6f}" for n, v in scalar_metrics(metrics).items()})
    return tags


@task(name="register", **DEFAULT_RETRIES, retry_condition_fn=is_transient)
@timed
def register_model(
    run_id: str,
    model: dict,
    evaluation: dict,
    split: dict,
    registry: RegistryConfig,
    tracking: TrackingConfig,
    baseline: dict | None = None,
) -> dict:
    """Log and register the model as a version, tag it, apply the gate, and move the alias if every gate passed.

    Args:
        run_id: the flow's MLflow run.
        model: the fine-tune step's result.
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
    client = MlflowClient(uri, uri)
    name, alias = registry.model_name, registry.alias
    task_type = get_task_type(model["task"]).for_target(split["target"])
    policy = policy_for(task_type, registry)
    candidate = scalar_metrics(evaluation["metrics"]["validation"])
    notes: list[str] = []
    version = _version_for_key(client, name, model["key"])
    if version is None:
        params = client.get_run(run_id).data.params
        columns = {
            name: None if value in (None, "None") or value.startswith("[") else value  # a joined list names no one column
            for name, value in (("text_column", params.get("data.text_column")), ("text_pair_column", params.get("data.text_pair_column")))
        }
        logged = _log_model(run_id, model["path"], evaluation["decision"], columns, params.get("model.name_or_path", ""))
        version = mlflow.register_model(logged, name, tags={"train_key": model["key"]})
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
        champion, rescored, comparable = _champion_for_gate(
            uri, registry, model["task"], policy.compare_on, current, split, RESCORE_BATCH, bool(model.get("trust_remote_code"))
        )
        decision = should_promote(candidate, champion, policy, baseline["metrics"]["validation"] if baseline else None)
        if not comparable:
            decision = Decision(False, [r for r in decision.reasons if r != "no current champion"])
        reasons = notes + rescored + decision.reasons
        gate = {"gate_passed": str(decision.promote).lower(), "gate_reasons": json.dumps(reasons)}
        gate.update({f"gate_reason_{i + 1}": reason[:5000] for i, reason in enumerate(reasons)})
        for key, value in gate.items():
            client.set_model_version_tag(name, str(version.version), key, value)
        card = model_card(_card_facts(client, version, model, evaluation, split, decision.promote, reasons, alias, baseline))
        client.update_model_version(name, str(version.version), description=card)
        client.log_text(run_id, card, "model_card.md")
        if decision.promote:
            move_alias(client, name, alias, version.version, who=f"finetune-flow run {run_id}", why="every gate passed")

    publish_markdown(
        "gate-decision",
        metrics_markdown(name, version.version, decision.promote, reasons, evaluation["metrics"], alias, task_type.headline),
        f"{name} v{version.version}: {'promoted' if decision.promote else 'not promoted'}",
    )
    logger.info(
        "register: %s v%s %s; %s",
        name,
        version.version,
        f"promoted to @{alias}" if decision.promote else "not promoted",
        "; ".join(reasons),
    )
    return {
        "model_name": name,
        "model_version": int(version.version),
        "promoted": decision.promote,
        "alias": alias if decision.promote else None,
        "reasons": reasons,
    }


def _card_facts(
    client: MlflowClient,
    version,
    model: dict,
    evaluation: dict,
    split: dict,
    promoted: bool,
    reasons: list[str],
    alias: str,
    baseline: dict | None = None,
) -> dict:
    tags = client.get_model_version(version.name, str(version.version)).tags
    return {
        "model_name": version.name,
        "version": version.version,
        "gate_passed": promoted or tags.get("gate_passed") == "true",
        "promoted": promoted,
        "alias": alias,
        "reasons": reasons,
        "base_model": tags.get("base_model", ""),
        "labels": model["labels"],
        "task": model["task"],
        "target": split["target"],
        "decision": evaluation["decision"],
        "baseline": baseline["metrics"] if baseline else None,
        "training": f"device {model['device']}, precision {model['precision']}, {model.get('epochs_run') or '?'} epochs, "
        + (f"loss weights {model['loss_weights']}" if model.get("loss_weights") else "unweighted loss"),
        "data_source": tags.get("data_source", ""),
        "data_fingerprint": split["key"],
        "config_fingerprint": tags.get("config_fingerprint", ""),
        "sizes": {name: part["rows"] for name, part in split["splits"].items()},
        "git_revision": tags.get("git_revision", ""),
        "run_id": tags.get("run_id", ""),
        "metrics": evaluation["metrics"],
        "max_length": tags.get("max_length", "?"),
        "long_text": model.get("long_text", "truncate"),
    }
