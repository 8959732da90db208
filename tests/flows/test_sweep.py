"""Sweeps end to end: the real sweep flow on Prefect, MLflow and Optuna, with the tiny random BERT."""

import json
from importlib.util import find_spec

import optuna
import pytest
from mlflow import MlflowClient

from flows.sweep import build_parser, cli_overrides, grid_limit, run_sweep
from flows.sweep_study import study_name
from schemas.config import load_config

SPACE = {"train.learning_rate": {"low": 1e-4, "high": 3e-3, "log": True}, "train.freeze_layers": [0, 1]}
# The --summary-json contract, key for key and in order.
SUMMARY_KEYS = [
    "parent_run_id",
    "best_run_id",
    "best_trial",
    "best_params",
    "best_value",
    "trials",
    "model_name",
    "model_version",
    "promoted",
    "alias",
    "reasons",
    "study",
    "trials_run_now",
    "tokenize_builds",
    "trial_step_seconds",
    "trial_spans",
    "wall_seconds",
]


def test_cli_flags_become_overrides_and_the_study_name_ignores_where_it_runs():
    args = build_parser().parse_intermixed_args(["--trials", "4", "--parallel", "2", "--runner", "local", "seed=3"])
    overrides = cli_overrides(args)
    assert overrides == ["seed=3", "sweep.trials=4", "sweep.parallel=2", "sweep.runner=local"]
    cfg = load_config(None, overrides)
    assert study_name(cfg) == study_name(load_config(None, ["seed=3", "sweep.trials=9"]))
    assert study_name(cfg) != study_name(load_config(None, ["seed=4"]))


def test_cli_help_and_a_bad_option_is_one_line(request):
    import subprocess
    import sys

    def cli(*args):
        return subprocess.run(
            [sys.executable, "flows/sweep.py", *args], cwd=request.config.rootpath, capture_output=True, text=True, timeout=120
        )

    shown = cli("--help")
    assert shown.returncode == 0 and "--parallel" in shown.stdout and "sweep.space" in shown.stdout
    bad = cli("sweep.space={train.epoch: [1]}")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: invalid config: sweep.space: 'train.epoch' is not an option (see --help for the options)"
    ]


def test_a_grid_sweep_asks_each_point_once_at_most():
    grid = load_config(
        None, ["sweep.sampler=grid", "sweep.trials=50", "sweep.space={train.batch_size: [8, 16], train.freeze_layers: [0, 1, 2]}"]
    )
    assert grid_limit(grid.sweep) == 6
    assert grid_limit(load_config(None, ["sweep.trials=50"]).sweep) == 50


def test_sweep_of_four_trials_two_at_once(prefect_server, make_config, toy_csv, tmp_path):
    cfg = make_config(data={"path": str(toy_csv)}, sweep={"space": SPACE, "trials": 4, "parallel": 2})
    check_sweep_of_four(run_sweep(cfg), cfg)


def check_sweep_of_four(summary: dict, cfg) -> None:
    """One parent run, four completed child runs, tokenize built once, one version from the best trial through the gate."""
    assert list(summary) == SUMMARY_KEYS and json.loads(json.dumps(summary)) == summary  # plain JSON values only
    assert [list(t) for t in summary["trial_step_seconds"]] == [["tokens", "fine_tune", "evaluate"]] * 4
    assert all(isinstance(s, float) for t in summary["trial_step_seconds"] for s in t.values())
    spans = summary["trial_spans"]
    assert len(spans) == 4 and all(0 < start < end < summary["wall_seconds"] for start, end in spans)
    assert all(e - s >= t["fine_tune"] for (s, e), t in zip(spans, summary["trial_step_seconds"]))
    assert summary["trials"] == {"completed": 4, "pruned": 0, "failed": 0}
    # tokenize is built once (by the sweep's shared steps), every trial re-uses it
    assert summary["tokenize_builds"] == 1 and all(t["tokenize_reused"] for t in summary["trials_run_now"])

    uri = cfg.tracking.resolved_uri()
    client = MlflowClient(uri, uri)
    experiment = client.get_experiment_by_name("finetune-flow").experiment_id
    runs = client.search_runs([experiment])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == summary["parent_run_id"]]
    assert [r.info.run_id for r in parent] == [summary["parent_run_id"]] and len(children) == 4
    assert sorted(int(r.data.tags["trial_number"]) for r in children) == [0, 1, 2, 3]
    states = [(r.info.status, r.data.tags.get("trial_state")) for r in children]
    assert states == [("FINISHED", "completed")] * 4, states
    assert all("val_f1_macro" in r.data.metrics and "train_loss" in r.data.metrics for r in children)
    assert {r.data.params["train.freeze_layers"] for r in children} <= {"0", "1"}
    assert len({r.data.params["train.learning_rate"] for r in children}) == 4
    artifacts = {a.path for a in client.list_artifacts(summary["parent_run_id"], "sweep")}
    assert {"sweep/space.json", "sweep/trials.csv", "sweep/trials.json", "sweep/parallel_coordinates.png"} <= artifacts
    best_child = next(r for r in children if r.info.run_id == summary["best_run_id"])
    assert best_child.data.metrics["val_f1_macro"] == max(r.data.metrics["val_f1_macro"] for r in children)
    assert client.get_run(summary["parent_run_id"]).data.tags["best_run_id"] == summary["best_run_id"]

    # one version, from the best trial's run, through the gate
    versions = client.search_model_versions("name='tiny'")
    assert [str(v.version) for v in versions] == ["1"] and summary["model_version"] == 1
    version = versions[0]
    assert version.run_id == summary["best_run_id"] and version.tags["sweep_parent_run_id"] == summary["parent_run_id"]
    assert (
        version.tags["gate_passed"] == str(summary["promoted"]).lower() and json.loads(version.tags["gate_reasons"]) == summary["reasons"]
    )
    assert summary["reasons"] and "## Sweep" in version.description and summary["parent_run_id"] in version.description


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_running_a_finished_trial_again(cli_env, tiny_model_dir, toy_csv, tmp_path, new_store, request):
    import signal
    import subprocess
    import sys
    import time

    uri = new_store(tmp_path / "mlruns")
    args = [
        sys.executable,
        "flows/sweep.py",
        "--trials",
        "4",
        "--parallel",
        "1",
        f"data.path={toy_csv}",
        f"model.name_or_path={tiny_model_dir}",
        "train.epochs=1",
        "train.batch_size=16",
        "train.max_length=32",
        "train.precision=fp32",
        f"tracking.uri={uri}",
        f"cache.dir={tmp_path / 'cache'}",
        "registry.model_name=tiny",
        "registry.min_accuracy=0",
        "registry.min_f1=0",
        "registry.beat_baseline=false",
        "sweep.space={train.learning_rate: {low: 1e-4, high: 3e-3, log: true}}",
    ]
    storage = f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"
    first = subprocess.Popen(args, cwd=request.config.rootpath, env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finished_before = []
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
        except (IndexError, KeyError, ValueError, optuna.exceptions.StorageInternalError):
            continue
        done = [t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(done) >= 2:
            finished_before = done
            break
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert len(finished_before) >= 2, "the first sweep did not finish two trials in time"

    summary_path = tmp_path / "summary.json"
    second = subprocess.run(
        args + ["--summary-json", str(summary_path)], cwd=request.config.rootpath, env=cli_env, capture_output=True, text=True, timeout=600
    )
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    assert summary["trials"] == {"completed": 4, "pruned": 0, "failed": 0}
    rerun = [t["number"] for t in summary["trials_run_now"]]
    assert not set(rerun) & set(finished_before) and len(rerun) == 4 - len(finished_before)

    client = MlflowClient(uri, uri)
    runs = client.search_runs([client.get_experiment_by_name("finetune-flow").experiment_id])
    trials = [r for r in runs if "trial_number" in r.data.tags and r.data.tags["trial_state"] == "completed"]
    # each finished trial has exactly one child run: the ones finished before the kill were not run again
    assert sorted(int(r.data.tags["trial_number"]) for r in trials) == sorted(finished_before + rerun)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert sorted(r.info.status for r in parents) == ["FAILED", "FINISHED"]  # the killed sweep's run is marked FAILED


@pytest.mark.slow
@pytest.mark.skipif(not all(find_spec(m) for m in ("ray", "prefect_ray")), reason="the Ray runner is not installed: make setup-ray")
def test_sweep_on_a_local_ray(prefect_server, make_config, toy_csv, monkeypatch):
    """The same sweep with --runner ray: a local Ray with 2 CPUs started for the run, each trial a Ray task asking for 1."""
    import ray
    from prefect_ray.context import RemoteOptionsContext
    from prefect_ray.task_runners import RayTaskRunner

    started, asked = [], []
    real_init, real_submit = ray.init, RayTaskRunner.submit
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: started.append(kwargs) or real_init(*args, **kwargs))

    def submit(runner, task, *args, **kwargs):
        asked.append((task.name, RemoteOptionsContext.get().current_remote_options))
        return real_submit(runner, task, *args, **kwargs)

    monkeypatch.setattr(RayTaskRunner, "submit", submit)

    cfg = make_config(data={"path": str(toy_csv)}, sweep={"space": SPACE, "trials": 4, "parallel": 2, "runner": "ray", "trial_cpus": 1})
    check_sweep_of_four(run_sweep(cfg), cfg)
    assert [(k["num_cpus"], k["include_dashboard"], k["_node_ip_address"]) for k in started] == [(2, False, "127.0.0.1")]
    assert started[0]["runtime_env"]["env_vars"]["HF_HUB_OFFLINE"] == "1"
    assert asked == [("trial", {"num_cpus": 1})] * 4  # one Ray task per trial, one CPU each: two at once on 2 CPUs
    assert not ray.is_initialized()  # the Ray started for the run is stopped with it
