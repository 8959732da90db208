"""Re-runs pay only for what changed; faults lose nothing (real Prefect, real MLflow, tiny model)."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

import tasks.ingest
import tasks.register
from flows.finetune import finetune
from tests.conftest import toy_frame

ALL_STEPS = ["ingest", "clean", "split", "tokenize", "report", "baseline", "fine_tune", "evaluate"]


def _versions(cfg):
    return MlflowClient(cfg.tracking.resolved_uri(), cfg.tracking.resolved_uri()).search_model_versions(f"name='{cfg.registry.model_name}'")


def test_reruns_reuse_exactly_what_did_not_change(prefect_server, make_config, toy_csv):
    cold = finetune(make_config(data={"path": str(toy_csv)}))
    assert cold["reused_steps"] == []

    warm = finetune(make_config(data={"path": str(toy_csv)}))
    assert warm["reused_steps"] == ALL_STEPS
    assert warm["model_version"] == cold["model_version"] and len(_versions(make_config())) == 1
    assert "no new version registered" in warm["reasons"][0]

    new_lr = finetune(make_config(data={"path": str(toy_csv)}, train={"learning_rate": 5e-4}))
    assert new_lr["reused_steps"] == ["ingest", "clean", "split", "tokenize", "report", "baseline"]

    new_length = finetune(make_config(data={"path": str(toy_csv)}, train={"max_length": 24}))
    assert new_length["reused_steps"] == ["ingest", "clean", "split", "baseline"]  # the baseline reads the split, not tokens

    refreshed = finetune(make_config(data={"path": str(toy_csv)}, cache={"refresh": True}))
    assert refreshed["reused_steps"] == []

    frame = pd.read_csv(toy_csv)
    frame.loc[0, "text"] = frame.loc[0, "text"] + " edited"
    frame.to_csv(toy_csv, index=False)
    edited = finetune(make_config(data={"path": str(toy_csv)}))
    assert edited["reused_steps"] == []


def test_flaky_source_is_retried_into_one_result(prefect_server, make_config, toy_csv, monkeypatch):
    real, calls = tasks.ingest.iter_source, []

    def flaky(data, *args):
        calls.append(1)
        if len(calls) <= 2:
            raise ConnectionError("network share hiccup")
        return real(data, *args)

    monkeypatch.setattr(tasks.ingest, "iter_source", flaky)
    cfg = make_config(data={"path": str(toy_csv)}, runtime={"io_retries": 2, "io_retry_delay_seconds": 0})
    summary = finetune(cfg)
    assert len(calls) == 3 and summary["model_version"] == 1
    entries = [p for p in (Path(cfg.cache.dir) / "ingest").iterdir() if p.is_dir()]
    assert len(entries) == 1 and not entries[0].name.startswith(".")


def test_registry_failing_once_gives_exactly_one_version(prefect_server, make_config, toy_csv, monkeypatch):
    real, calls = tasks.register.MlflowClient.set_model_version_tag, []

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("registry unavailable")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(tasks.register.MlflowClient, "set_model_version_tag", flaky)
    cfg = make_config(data={"path": str(toy_csv)}, runtime={"io_retry_delay_seconds": 0})
    summary = finetune(cfg)
    assert summary["promoted"] and len(_versions(cfg)) == 1


def test_validation_errors_are_not_retried(prefect_server, make_config, toy_csv, monkeypatch):
    real, calls = tasks.ingest.iter_source, []
    monkeypatch.setattr(tasks.ingest, "iter_source", lambda data, *args: calls.append(1) or real(data, *args))
    with pytest.raises(Exception, match="column 'nope' not found"):
        finetune(make_config(data={"path": str(toy_csv), "text_column": "nope"}, runtime={"io_retry_delay_seconds": 0}))
    assert len(calls) == 1


def _flow_cmd(root, data, workdir, *extra):
    return [
        sys.executable,
        "flows/finetune.py",
        f"data.path={data}",
        f"model.name_or_path={workdir['model']}",
        f"tracking.uri=sqlite:///{workdir['db']}",
        f"cache.dir={workdir['cache']}",
        "registry.model_name=tiny",
        "registry.min_accuracy=0",
        "registry.min_f1=0",
        "registry.beat_baseline=false",
        "train.max_length=32",
        "train.precision=fp32",
        *extra,
    ]


@pytest.mark.slow  # ~2 min: a real subprocess killed mid-training, then resumed
def test_killed_training_resumes_from_its_checkpoint(request, tmp_path, tiny_model_dir):
    root = request.config.rootpath
    data = tmp_path / "big.csv"
    toy_frame(n_per_class=300).to_csv(data, index=False)
    train = ["train.epochs=6", "train.batch_size=16", "train.learning_rate=1e-3", "train.save_steps=20", "train.early_stopping_patience=0"]
    work = {"model": tiny_model_dir, "db": tmp_path / "a.db", "cache": tmp_path / "cache-a"}
    proc = subprocess.Popen(
        _flow_cmd(root, data, work, *train), cwd=root, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    checkpoints = work["cache"] / "checkpoints"
    while time.time() < deadline and not list(checkpoints.glob("*/checkpoint-*/trainer_state.json")):
        assert proc.poll() is None, "flow ended before it could be killed"
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(checkpoints.glob("*/checkpoint-*")), "no checkpoint written before the kill"

    resumed = subprocess.run(
        _flow_cmd(root, data, work, *train, f"--summary-json={tmp_path / 'resumed.json'}"),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((tmp_path / "resumed.json").read_text())
    assert summary["resumed_from"] and summary["resumed_from"].startswith("checkpoint-")
    assert int(summary["resumed_from"].split("-")[1]) >= 20
    client = MlflowClient(f"sqlite:///{work['db']}", f"sqlite:///{work['db']}")
    assert len(client.search_model_versions("name='tiny'")) == 1
    statuses = sorted(r.info.status for r in client.search_runs([client.get_experiment_by_name("finetune-flow").experiment_id]))
    assert statuses == ["FAILED", "FINISHED"], "the killed run must be marked FAILED on the next start"

    fresh = {"model": tiny_model_dir, "db": tmp_path / "b.db", "cache": tmp_path / "cache-b"}
    straight = subprocess.run(
        _flow_cmd(root, data, fresh, *train, f"--summary-json={tmp_path / 'straight.json'}"),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert straight.returncode == 0, straight.stderr[-3000:]
    reference = json.loads((tmp_path / "straight.json").read_text())
    assert reference["resumed_from"] is None
    assert summary["val_f1"] == pytest.approx(reference["val_f1"], abs=0.05)


@pytest.mark.slow  # minutes of CPU on 2 cores: `make test-slow`
def test_two_flows_at_once_share_the_cache_safely(request, tmp_path, tiny_model_dir, toy_csv):
    root = request.config.rootpath
    work = {"model": tiny_model_dir, "db": tmp_path / "m.db", "cache": tmp_path / "cache"}
    procs = [
        subprocess.Popen(
            _flow_cmd(root, toy_csv, {**work, "db": tmp_path / f"m{i}.db"}, f"--summary-json={tmp_path / f's{i}.json'}"),
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=400) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outputs]
    summaries = [json.loads((tmp_path / f"s{i}.json").read_text()) for i in range(2)]
    assert summaries[0]["val_f1"] == summaries[1]["val_f1"]
    for step in ALL_STEPS[:4]:
        entries = [p for p in (work["cache"] / step).iterdir() if p.is_dir()]
        assert len(entries) == 1, f"{step}: {entries}"


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow  # ~2 min: a real flow process SIGKILLed mid-training with its own temporary Prefect server, then run again
def test_a_killed_run_leaves_no_server_behind_and_is_marked_crashed_at_the_next_start(request, tmp_path, tiny_model_dir):
    import sqlite3

    root, data = request.config.rootpath, tmp_path / "big.csv"
    toy_frame(n_per_class=300).to_csv(data, index=False)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")  # the flow's own temporary server and its database
    train = ["train.epochs=6", "train.batch_size=16", "train.learning_rate=1e-3", "train.save_steps=20", "train.early_stopping_patience=0"]
    work = {"model": tiny_model_dir, "db": tmp_path / "m.db", "cache": tmp_path / "cache"}
    proc = subprocess.Popen(_flow_cmd(root, data, work, *train), cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((work["cache"] / "checkpoints").glob("*/checkpoint-*/trainer_state.json")):
        assert proc.poll() is None, "flow ended before it could be killed"
        time.sleep(0.1)
    servers = _children(proc.pid)
    assert servers, "no temporary Prefect server process found"
    os.kill(proc.pid, signal.SIGKILL)  # the process alone, as the OOM killer does: not its group
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(pid) for pid in servers):
        time.sleep(0.2)
    left = [pid for pid in servers if _alive(pid)]
    for pid in left:  # clean up before failing
        os.kill(pid, signal.SIGKILL)
    assert not left, "the temporary Prefect server outlived the killed flow"

    again = subprocess.run(_flow_cmd(root, data, work, *train), cwd=root, env=env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{work['db']}", f"sqlite:///{work['db']}")
    runs = {r.info.status: r for r in client.search_runs([client.get_experiment_by_name("finetune-flow").experiment_id])}
    assert sorted(runs) == ["FAILED", "FINISHED"]
    dead = runs["FAILED"].data.tags["prefect_flow_run_id"]
    with sqlite3.connect(tmp_path / "prefect" / "prefect.db") as db:
        flow_state = db.execute("select state_type from flow_run where id in (?, ?)", (dead, dead.replace("-", ""))).fetchall()
        task_states = db.execute("select state_type from task_run where flow_run_id in (?, ?)", (dead, dead.replace("-", ""))).fetchall()
    assert flow_state == [("CRASHED",)]
    assert task_states and {s for (s,) in task_states} <= {"COMPLETED", "CRASHED", "FAILED"}


@pytest.mark.slow  # ~1 min: a real flow process SIGKILLed while it registers (the third audit), then run again
def test_a_run_killed_while_it_registers_reads_failed_in_mlflow_and_crashed_in_prefect(request, tmp_path, tiny_model_dir):
    import sqlite3

    root, data = request.config.rootpath, tmp_path / "toy.csv"
    toy_frame().to_csv(data, index=False)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    train = ["train.epochs=1", "train.batch_size=16", "train.learning_rate=1e-3"]
    work = {"model": tiny_model_dir, "db": tmp_path / "m.db", "cache": tmp_path / "cache"}
    proc = subprocess.Popen(_flow_cmd(root, data, work, *train), cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, found = time.time() + 300, False
    while time.time() < deadline and not found:  # the moment the version exists: registration is under way
        assert proc.poll() is None, "flow ended before it could be killed"
        if work["db"].exists():
            with contextlib.suppress(sqlite3.Error), sqlite3.connect(work["db"], timeout=1) as db:
                found = bool(db.execute("select count(*) from model_versions").fetchone()[0])
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # its temporary Prefect server dies with it (the kernel is told so)
    proc.wait()
    client = MlflowClient(f"sqlite:///{work['db']}", f"sqlite:///{work['db']}")
    experiment = client.get_experiment_by_name("finetune-flow").experiment_id
    (killed,) = client.search_runs([experiment])
    assert killed.data.tags["finetune_flow.open"] == "true"  # whatever logging the model set its status to

    again = subprocess.run(_flow_cmd(root, data, work, *train), cwd=root, env=env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    statuses = {r.info.run_id: r.info.status for r in client.search_runs([experiment])}
    assert statuses[killed.info.run_id] == "FAILED" and sorted(statuses.values()) == ["FAILED", "FINISHED"]
    dead = killed.data.tags["prefect_flow_run_id"]
    with sqlite3.connect(tmp_path / "prefect" / "prefect.db") as db:
        flow_state = db.execute("select state_type from flow_run where id in (?, ?)", (dead, dead.replace("-", ""))).fetchall()
        task_states = db.execute("select state_type from task_run where flow_run_id in (?, ?)", (dead, dead.replace("-", ""))).fetchall()
    assert flow_state == [("CRASHED",)] and "RUNNING" not in {s for (s,) in task_states}
