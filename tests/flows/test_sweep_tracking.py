"""The sweep's MLflow side: a child run per trial, whatever its outcome."""

from mlflow import MlflowClient

from flows.sweep_study import trial_config
from flows.sweep_tracking import log_trial

SPACE = {"train.learning_rate": {"low": 1e-4, "high": 3e-3, "log": True}, "train.freeze_layers": [0, 1]}


def test_pruned_and_failed_trials_are_child_runs_that_say_so(make_config, toy_csv):
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
