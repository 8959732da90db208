"""Sweeps end to end: the real sweep flow on Prefect, MLflow and Optuna, with the tiny random BERT."""

import json

import optuna
import pytest
from mlflow import MlflowClient

from flows.sweep import build_parser, cli_overrides, run_sweep, task_runner
from schemas.config import load_config
from schemas.errors import ConfigError
from tasks.sweep import count_trials, grid_space, study_name, suggest, trial_config

SPACE = {"train.learning_rate": {"low": 1e-4, "high": 3e-3, "log": True}, "train.freeze_layers": [0, 1]}
SUMMARY_KEYS = {"parent_run_id", "best_run_id", "trials", "model_name", "model_version", "promoted", "reasons"}


def test_trial_config_sets_the_values_and_rejects_bad_ones(make_config):
    cfg = make_config(sweep={"space": SPACE})
    trial = trial_config(cfg, {"train.learning_rate": 2e-4, "train.freeze_layers": 1})
    assert (trial.train.learning_rate, trial.train.freeze_layers, trial.train.batch_size) == (2e-4, 1, cfg.train.batch_size)
    with pytest.raises(ConfigError, match="sweep.space"):
        trial_config(cfg, {"train.batch_size": 0})


def test_suggest_log_ranges_ints_and_choices():
    cfg = load_config(
        None,
        [
            "sweep.space={train.learning_rate: {low: 1e-5, high: 1e-3, log: true}, train.epochs: {low: 1, high: 3}, "
            "model.name_or_path: [a, b]}"
        ],
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = [suggest(study.ask(), cfg.sweep.space) for _ in range(20)]
    assert all(1e-5 <= v["train.learning_rate"] <= 1e-3 for v in values)
    assert {v["train.epochs"] for v in values} <= {1, 2, 3} and all(isinstance(v["train.epochs"], int) for v in values)
    assert {v["model.name_or_path"] for v in values} == {"a", "b"}
    assert isinstance(study.trials[0].distributions["train.learning_rate"], optuna.distributions.FloatDistribution)
    assert study.trials[0].distributions["train.learning_rate"].log


def test_sweep_config_errors_say_what_to_change():
    with pytest.raises(ValueError, match="'train.epoch' is not an option"):
        load_config(None, ["sweep.space={train.epoch: [1, 2]}"])
    with pytest.raises(ValueError, match="grid needs choices or a stepped range"):
        load_config(None, ["sweep.sampler=grid", "sweep.space={train.learning_rate: {low: 1e-5, high: 1e-3}}"])
    with pytest.raises(ValueError, match="cannot be searched"):
        load_config(None, ["sweep.space={registry.min_f1: [0.1]}"])
    grid = load_config(None, ["sweep.sampler=grid", "sweep.space={train.epochs: {low: 1, high: 3, step: 1}, train.batch_size: [8]}"])
    assert grid_space(grid.sweep.space) == {"train.epochs": [1, 2, 3], "train.batch_size": [8]}


def test_cli_flags_become_overrides_and_the_study_name_ignores_where_it_runs():
    args = build_parser().parse_intermixed_args(["--trials", "4", "--parallel", "2", "--runner", "local", "seed=3"])
    overrides = cli_overrides(args)
    assert overrides == ["seed=3", "sweep.trials=4", "sweep.parallel=2", "sweep.runner=local"]
    cfg = load_config(None, overrides)
    assert study_name(cfg) == study_name(load_config(None, ["seed=3", "sweep.trials=9"]))
    assert study_name(cfg) != study_name(load_config(None, ["seed=4"]))


def test_ray_runner_without_prefect_ray_is_one_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name.startswith("prefect_ray"):
            raise ImportError("No module named 'prefect_ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ConfigError, match=r"pip install prefect-ray==0\.6\.0 'ray\[default\]==2\.60\.0'"):
        task_runner(load_config(None, ["sweep.runner=ray"]).sweep)


def test_count_trials_leaves_out_interrupted_ones():
    study = optuna.create_study()
    for value in (1.0, 2.0):
        study.tell(study.ask(), value)
    interrupted = study.ask()
    interrupted.set_user_attr("interrupted", True)
    study.tell(interrupted, state=optuna.trial.TrialState.FAIL)
    study.tell(study.ask(), state=optuna.trial.TrialState.PRUNED)
    assert count_trials(study.trials) == {"completed": 2, "pruned": 1, "failed": 0}


def test_sweep_of_four_trials_two_at_once(prefect_server, make_config, toy_csv, tmp_path):
    cfg = make_config(data={"path": str(toy_csv)}, sweep={"space": SPACE, "trials": 4, "parallel": 2})
    summary = run_sweep(cfg)
    assert SUMMARY_KEYS <= set(summary)
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
    assert all(r.info.status == "FINISHED" and r.data.tags["trial_state"] == "completed" for r in children)
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
    assert version.tags["gate_passed"] in ("true", "false") and json.loads(version.tags["gate_reasons"]) == summary["reasons"]
    assert summary["reasons"] and "## Sweep" in version.description and summary["parent_run_id"] in version.description


def _study_with_good_trials(tmp_path, value: float = 0.9):
    """An RDB study where three finished trials scored `value` after epoch 1, and a fourth trial just asked."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for _ in range(3):
        study.add_trial(
            optuna.trial.create_trial(value=value, intermediate_values={1: value, 2: value, 3: value}, distributions={}, params={})
        )
    trial = study.ask()
    return {"study": "s", "storage": storage, "trial_id": trial._trial_id, "metric": "f1_macro", "startup": 0}, study, trial


def test_pruning_callback_reports_and_prunes_behind_the_median_but_never_at_the_end(tmp_path):
    from types import SimpleNamespace

    from tasks.sweep import PruneOnEpoch

    pruning, study, _ = _study_with_good_trials(tmp_path)
    last = SimpleNamespace(epoch=1.0, global_step=10, max_steps=10, is_world_process_zero=True)
    PruneOnEpoch.build(pruning).on_evaluate(None, last, None, metrics={"eval_f1_macro": 0.1})  # the last evaluation: kept
    assert study.trials[-1].intermediate_values == {1: 0.1}
    early = SimpleNamespace(epoch=1.0, global_step=5, max_steps=10, is_world_process_zero=True)
    ahead = {**pruning, "trial_id": study.ask()._trial_id}
    PruneOnEpoch.build(ahead).on_evaluate(None, early, None, metrics={"eval_f1_macro": 0.95})  # ahead of the median: goes on
    behind = {**pruning, "trial_id": study.ask()._trial_id}
    with pytest.raises(optuna.TrialPruned, match="below the median"):
        PruneOnEpoch.build(behind).on_evaluate(None, early, None, metrics={"eval_f1_macro": 0.1})


def test_a_pruned_fine_tune_leaves_no_cache_entry_and_no_checkpoints(prefect_server, make_config, toy_csv, tmp_path):
    from tasks.clean import clean_data
    from tasks.ingest import ingest_data
    from tasks.split import split_data
    from tasks.tokenize import tokenize_data
    from tasks.train import fine_tune

    cfg = make_config(data={"path": str(toy_csv)}, train={"epochs": 3})
    raw = ingest_data.fn(cfg.data, cfg.cache)
    split = split_data.fn(clean_data.fn(raw, cfg.data, cfg.cache), cfg.data, cfg.cache, cfg.seed)
    tokens = tokenize_data.fn(split, cfg.model, cfg.train.max_length, cfg.cache)
    pruning, _, _ = _study_with_good_trials(tmp_path, value=0.99)
    with pytest.raises(optuna.TrialPruned):
        fine_tune.fn(tokens, cfg.model, cfg.train, cfg.cache, cfg.seed, pruning=pruning)
    cache = cfg.cache.resolved_dir()
    assert not [p for p in (cache / "train").glob("*") if not p.name.startswith(".")]
    assert not list((cache / "checkpoints").glob("*/checkpoint-*"))


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
def test_sweep_on_a_local_ray(prefect_server, make_config, toy_csv):
    """The same sweep with --runner ray on a local Ray started for the test (2 CPUs); needs prefect-ray and ray installed."""
    pytest.importorskip("prefect_ray", reason="pip install prefect-ray==0.6.0 'ray[default]==2.60.0' to run the Ray test")
    cfg = make_config(data={"path": str(toy_csv)}, sweep={"space": SPACE, "trials": 4, "parallel": 2, "runner": "ray", "trial_cpus": 1})
    summary = run_sweep(cfg)
    assert summary["trials"] == {"completed": 4, "pruned": 0, "failed": 0}
    assert summary["tokenize_builds"] == 1 and summary["model_version"] == 1
    uri = cfg.tracking.resolved_uri()
    client = MlflowClient(uri, uri)
    children = client.search_runs(
        [client.get_experiment_by_name("finetune-flow").experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'",
    )
    assert len(children) == 4
    assert client.get_model_version("tiny", "1").run_id == summary["best_run_id"]


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


def test_pruned_and_failed_trials_are_child_runs_that_say_so(make_config, toy_csv):
    from tasks.sweep_tracking import log_trial

    cfg = make_config(data={"path": str(toy_csv)}, sweep={"space": SPACE})
    uri = cfg.tracking.resolved_uri()
    client = MlflowClient(uri, uri)
    parent = client.create_run(client.create_experiment("sweeps"), tags={"sweep_study": "s"}).info.run_id
    base = {"params": {"train.freeze_layers": 1}, "metric": "f1_macro", "started": 1.0e9, "ended": 1.0e9 + 5}
    trial_cfg = trial_config(cfg, base["params"])
    pruned = log_trial.fn(
        parent, {**base, "number": 3, "state": "pruned", "reason": "below the median"}, trial_cfg, {}, {"1": 0.2}, cfg.tracking
    )
    failed = log_trial.fn(
        parent, {**base, "number": 4, "state": "failed", "error": "RuntimeError: out of memory"}, cfg, {}, {}, cfg.tracking
    )
    p, f = client.get_run(pruned), client.get_run(failed)
    assert p.data.tags["mlflow.parentRunId"] == f.data.tags["mlflow.parentRunId"] == parent
    assert (p.info.status, p.data.tags["trial_state"], p.data.tags["pruned_because"]) == ("FINISHED", "pruned", "below the median")
    assert p.data.metrics["val_f1_macro_per_epoch"] == 0.2 and p.data.params["train.freeze_layers"] == "1"
    assert (f.info.status, f.data.tags["trial_state"], f.data.tags["failure"]) == ("FAILED", "failed", "RuntimeError: out of memory")
    assert not any(k.startswith("sweep.") for k in p.data.params)


def test_a_grid_sweep_asks_each_point_once_at_most():
    from flows.sweep import grid_limit

    grid = load_config(
        None, ["sweep.sampler=grid", "sweep.trials=50", "sweep.space={train.batch_size: [8, 16], train.freeze_layers: [0, 1, 2]}"]
    )
    assert grid_limit(grid.sweep) == 6
    assert grid_limit(load_config(None, ["sweep.trials=50"]).sweep) == 50


def test_reopening_a_study_fails_the_trials_left_running_and_asks_them_again(tmp_path):
    from tasks.sweep import open_study

    cfg = load_config(
        None, [f"sweep.storage=sqlite:///{tmp_path / 'optuna.db'}", "sweep.study=s", "sweep.space={train.batch_size: [8, 16, 32, 64]}"]
    )
    first = open_study(cfg, "f1_macro")
    done = first.ask()
    done.suggest_categorical("train.batch_size", [8, 16, 32, 64])
    first.tell(done, 0.5)
    killed = first.ask()  # the sweep dies while this one trains
    size = killed.suggest_categorical("train.batch_size", [8, 16, 32, 64])

    again = open_study(cfg, "f1_macro")
    states = {t.number: (t.state, t.user_attrs.get("interrupted")) for t in again.trials}
    assert states[done.number] == (optuna.trial.TrialState.COMPLETE, None)
    assert states[killed.number] == (optuna.trial.TrialState.FAIL, True)
    assert count_trials(again.trials) == {"completed": 1, "pruned": 0, "failed": 0}
    restarted = again.ask()
    assert suggest(restarted, cfg.sweep.space) == {"train.batch_size": size}
