"""The flow's MLflow run: opened once per flow run with its config as params, closed FINISHED or FAILED (never left
RUNNING), and runs of killed processes marked FAILED by the next start."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Param

from schemas.config import PROJECT_ROOT, FinetuneConfig, flatten
from schemas.errors import ConfigError
from schemas.secrets import mask_text, mask_uri
from tasks.runtime.cache import file_lock, fingerprint

PIPELINE_TAG = "finetune_flow.pipeline"
# "true" from the moment the flow opens its run until tracking_run closes it: a run still open whose process is gone
# was killed, whatever its status says (logging the model through MLflow's fluent API marks the run FINISHED).
OPEN_TAG = "finetune_flow.open"
REACH_SECONDS = 5.0  # an http(s) tracking server that does not accept a connection in this long is reported as down


def check_reachable(uri: str, option: str = "tracking.uri / --tracking-uri") -> None:
    """An http(s) tracking server accepts connections, or a ConfigError within seconds (MLflow's own client retries for
    minutes, and its error text carries the URI with any password in it)."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname or "localhost", port), timeout=REACH_SECONDS):
            pass
    except (OSError, ValueError) as err:
        why = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise ConfigError(f"the tracking server {mask_uri(uri)} does not answer ({why}): start it, or set {option}") from None


def tracking_client(uri: str) -> MlflowClient:
    """The MLflow client for one store (tracking and registry at the same URI); a server that is down is a ConfigError
    within seconds, with no secret in it."""
    check_reachable(uri)
    return MlflowClient(uri, uri)


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
    """Mark FAILED the runs of this pipeline left open by a process on this host that is gone (killed flows), and their
    Prefect flow runs (with their unfinished task runs) CRASHED."""
    host, orphans, seen = socket.gethostname(), [], set()
    pipeline = f"tags.`{PIPELINE_TAG}` = 'finetune'"
    candidates = [
        *client.search_runs([experiment_id], filter_string=f"tags.`{OPEN_TAG}` = 'true' and {pipeline}"),
        *client.search_runs([experiment_id], filter_string=f"attributes.status = 'RUNNING' and {pipeline}"),  # runs older than the tag
    ]
    for run in candidates:
        pid = int(run.data.tags.get("pid", "0") or 0)
        if run.info.run_id in seen or run.data.tags.get("host") != host or not pid or _alive(pid):
            continue
        seen.add(run.info.run_id)
        client.set_tag(
            run.info.run_id, "failure", f"process {pid} ended without closing this run (killed?); marked FAILED by a later start"
        )
        client.set_tag(run.info.run_id, OPEN_TAG, "false")
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
        client = tracking_client(uri)
        client.search_registered_models(max_results=1)
        experiment = client.get_experiment_by_name(cfg.tracking.experiment)
        if experiment is not None and experiment.lifecycle_stage == "deleted":
            raise ConfigError(
                f"tracking.experiment '{cfg.tracking.experiment}' was deleted in {mask_uri(uri)}: restore it "
                f"(mlflow experiments restore --experiment-id {experiment.experiment_id}) or set tracking.experiment to another name"
            )
        experiment_id = (
            experiment.experiment_id if experiment else client.create_experiment(cfg.tracking.experiment, artifact_location=artifacts)
        )
    fail_orphaned_runs(client, experiment_id)
    tags = {
        PIPELINE_TAG: "finetune",
        OPEN_TAG: "true",
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
        client.set_tag(run_id, OPEN_TAG, "false")
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_tag(run_id, OPEN_TAG, "false")
    client.set_terminated(run_id, status="FINISHED")
