"""Scheduled deployments on real Prefect infrastructure: a local server, a process work pool,
the deployments from deployments/prefect.yaml and a worker, driven by the README's make targets."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow import MlflowClient

from schemas.config import ScheduleConfig


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _api(base: str, path: str, body: dict) -> list | dict:
    request = urllib.request.Request(f"{base}{path}", data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def local_prefect(request, tmp_path):
    """`make` against a temporary PREFECT_HOME and a free port; stops everything afterwards."""
    root = request.config.rootpath
    home, port = tmp_path / "prefect-home", _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5"}
    env.pop("PREFECT_API_URL", None)

    def make(*targets: str, timeout: int = 300, **variables: str) -> subprocess.CompletedProcess:
        args = ["make", "--no-print-directory", *targets, f"PREFECT_PORT={port}", *[f"{k}={v}" for k, v in variables.items()]]
        return subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)

    make.home, make.api, make.root = home, f"http://127.0.0.1:{port}/api", root
    yield make
    make("prefect-stop", timeout=120)


@pytest.mark.slow  # ~1.5 min: a real Prefect server, work pool, worker and deployments
def test_deploy_trigger_schedule_and_stop(local_prefect, tmp_path, tiny_model_dir, toy_csv):
    up = local_prefect("schedule-up", timeout=400)
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    pids = {name: int((local_prefect.home / f"{name}.pid").read_text()) for name in ("server", "worker")}
    assert all(_alive(pid) for pid in pids.values())

    deployments = {d["name"]: d for d in _api(local_prefect.api, "/deployments/filter", {})}
    assert {"nightly", "smoke"} <= set(deployments)
    # The schedule is the config's, defined once in schemas/config.py and filled in by `make prefect-deploy`.
    schedule = deployments["nightly"]["schedules"][0]["schedule"]
    assert (schedule["cron"], schedule["timezone"]) == (ScheduleConfig().cron, ScheduleConfig().timezone)

    # The scheduler creates the nightly's next runs by itself.
    deadline, scheduled = time.time() + 90, []
    while time.time() < deadline and not scheduled:
        scheduled = _api(
            local_prefect.api,
            "/flow_runs/filter",
            {
                "deployments": {"id": {"any_": [deployments["nightly"]["id"]]}},
                "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
            },
        )
        time.sleep(2)
    assert scheduled, "the scheduler created no run of the nightly deployment"
    assert all(run["expected_start_time"] > time.strftime("%Y-%m-%dT%H:%M", time.gmtime()) for run in scheduled)

    db = tmp_path / "mlruns" / "mlflow.db"
    cfg = {
        "data": {"path": str(toy_csv)},
        "model": {"name_or_path": str(tiny_model_dir)},
        "train": {"epochs": 1, "max_length": 32, "precision": "fp32"},
        "registry": {"model_name": "tiny-deployed", "min_accuracy": 0, "min_f1": 0, "beat_baseline": False},
        "tracking": {"uri": f"sqlite:///{db}"},
        "cache": {"dir": str(tmp_path / "cache")},
    }
    run = local_prefect("prefect-trigger", DEPLOYMENT="finetune/smoke", PARAMS=json.dumps({"cfg": cfg}))
    assert run.returncode == 0, run.stdout[-3000:] + (local_prefect.home / "worker.log").read_text()[-3000:]
    assert "Completed" in run.stdout
    versions = MlflowClient(f"sqlite:///{db}", f"sqlite:///{db}").search_model_versions("name='tiny-deployed'")
    assert len(versions) == 1
    # The gate decision is visible in the Prefect UI as a markdown artifact of the run.
    artifacts = _api(local_prefect.api, "/artifacts/filter", {"artifacts": {"key": {"any_": ["gate-decision"]}}})
    assert artifacts and "tiny-deployed v1: promoted to `@champion`" in artifacts[0]["data"]

    bad = local_prefect("prefect-trigger", DEPLOYMENT="finetune/smoke", PARAMS=json.dumps({"cfg": {**cfg, "train": {"epoch": 1}}}))
    assert bad.returncode != 0
    # Prefect checks parameters against the flow's schema (built from FinetuneConfig) before a run exists.
    assert "cfg.train" in bad.stdout and "'epoch' was unexpected" in bad.stdout

    # `--serve`: one process serves the flow on the cron from the config, against the same server.
    serve_env = {**os.environ, "PREFECT_HOME": str(local_prefect.home), "PREFECT_API_URL": local_prefect.api}
    serve_cmd = [sys.executable, "flows/finetune.py", "--serve", "schedule.cron=15 3 * * 1", "schedule.timezone=UTC"]
    server = subprocess.Popen(
        serve_cmd,
        cwd=local_prefect.root,
        env=serve_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        served = ""
        for line in server.stdout:
            served += line
            if "is being served" in line:
                break
        assert "is being served" in served and "Cannot schedule" not in served, served[-3000:]
        mine = [d for d in _api(local_prefect.api, "/deployments/filter", {}) if d["name"] == "finetune-serve"]
        assert mine and mine[0]["schedules"][0]["schedule"]["cron"] == "15 3 * * 1"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)

    stop = local_prefect("prefect-stop", timeout=120)
    assert stop.returncode == 0, stop.stderr
    time.sleep(1)
    assert not any(_alive(pid) for pid in pids.values()), stop.stdout
    assert "SIGKILL" not in stop.stdout, f"a process had to be killed: {stop.stdout}"
