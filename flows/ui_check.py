"""finetune-flow ui-check: start a real `mlflow server` on 127.0.0.1 over the store and check,
through its REST API, what a reviewer opening the UI would see.

    python -m flows.ui_check [--name NAME] [--alias champion] [--tracking-uri URI]

Checks: the champion's version and alias, its run (FINISHED, with metrics and params), a
learning curve with steps, the evaluation artifacts listed and one of them downloadable,
and the model card as the version's description. Exits non-zero naming what is missing.
"""

from __future__ import annotations

import sys

if __package__ in (None, ""):
    from tasks.runtime import env as _env

    _env.apply()

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from schemas.config import RegistryConfig

EXPECTED_METRICS = ("val_accuracy", "val_f1_macro", "val_f1_weighted", "val_roc_auc", "val_ece", "test_accuracy", "test_f1_macro")
EXPECTED_ARTIFACTS = (
    "evaluation/metrics.json",
    "evaluation/confusion_validation.png",
    "evaluation/confusion_validation_normalized.png",
    "evaluation/roc_validation.png",
    "evaluation/pr_validation.png",
    "model_card.md",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(tracking_uri: str, port: int | None = None, timeout: float = 120, artifacts: Path | None = None) -> Iterator[str]:
    """A real `mlflow server` over the store, on 127.0.0.1; yields its base URL and stops it after.
    artifacts: where the server keeps the artifacts it is sent (default: its own ./mlartifacts)."""
    port = port or free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"mlflow-server-{port}.log"
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        tracking_uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    if artifacts is not None:
        cmd += ["--artifacts-destination", str(artifacts)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {proc.returncode}; log: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.time() > deadline:
                raise RuntimeError(f"mlflow server did not answer on {url} within {timeout:.0f} s; log: {log}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _get(url: str, endpoint: str, raw: bool = False, **params):
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}{endpoint}?{query}", timeout=30) as r:
        body = r.read()
    return body if raw else json.loads(body)


def check_ui(url: str, name: str, alias: str) -> dict:
    """What the server shows for the alias's version and its run; raises AssertionError naming what is missing."""
    version = _get(url, "/api/2.0/mlflow/registered-models/alias", name=name, alias=alias)["model_version"]
    run = _get(url, "/api/2.0/mlflow/runs/get", run_id=version["run_id"])["run"]
    metrics = {m["key"]: m["value"] for m in run["data"].get("metrics", [])}
    params = {p["key"]: p["value"] for p in run["data"].get("params", [])}
    curve = _get(url, "/api/2.0/mlflow/metrics/get-history", run_id=version["run_id"], metric_key="train_loss").get("metrics", [])
    listed = set()
    for folder in ("", "evaluation"):
        listed |= {f["path"] for f in _get(url, "/api/2.0/mlflow/artifacts/list", run_id=version["run_id"], path=folder).get("files", [])}
    metrics_json = json.loads(_get(url, "/get-artifact", raw=True, path="evaluation/metrics.json", run_uuid=version["run_id"]))
    found = {
        "version": version["version"],
        "aliases": version.get("aliases", []),
        "run_id": version["run_id"],
        "run_status": run["info"]["status"],
        "metrics": sorted(metrics),
        "params": len(params),
        "train_loss_steps": sorted({int(m["step"]) for m in curve}),
        "artifacts": sorted(listed),
        "metrics_json_splits": sorted(metrics_json),
        "description_starts": (version.get("description") or "")[:60],
    }
    problems = []
    if alias not in found["aliases"]:
        problems.append(f"@{alias} missing from the version's aliases {found['aliases']}")
    if found["run_status"] != "FINISHED":
        problems.append(f"run status {found['run_status']}")
    problems += [f"metric {m} missing" for m in EXPECTED_METRICS if m not in metrics]
    if len(found["train_loss_steps"]) < 2:
        problems.append(f"train_loss has {len(found['train_loss_steps'])} logged steps, want a curve")
    problems += [f"artifact {a} missing" for a in EXPECTED_ARTIFACTS if a not in listed]
    if not found["description_starts"].startswith(f"# {name} v{version['version']}"):
        problems.append("the version's description is not its model card")
    if not params:
        problems.append("the run has no params")
    assert not problems, "; ".join(problems)
    return found


def main(argv: list[str] | None = None) -> int:
    from flows.cli import add_tracking_argument, tracking_uri

    registry = RegistryConfig()
    parser = argparse.ArgumentParser(prog="python -m flows.ui_check", description=__doc__.splitlines()[0])
    parser.add_argument("--name", default=registry.model_name, help=f"registered model (default: {registry.model_name})")
    parser.add_argument("--alias", default=registry.alias, help=f"alias to look up (default: {registry.alias})")
    add_tracking_argument(parser)
    args = parser.parse_args(argv)
    with mlflow_server(tracking_uri(args.tracking_uri)) as url:
        try:
            found = check_ui(url, args.name, args.alias)
        except (AssertionError, urllib.error.HTTPError) as err:
            print(f"ui-check FAILED on {url}: {err}", file=sys.stderr)
            return 1
    print(json.dumps(found, indent=1))
    print(f"ui-check passed: {args.name} v{found['version']} @{args.alias} and its run are visible through the MLflow server")
    return 0


if __name__ == "__main__":
    sys.exit(main())
