"""train.runner=ray and predict --runner ray on a Ray cluster of two nodes on this machine (Ray's own cluster
utilities: a head and a worker node of one CPU each), through the real flow, MLflow and the real predict command.
The worker node is removed while predict runs and added again: no row is lost or doubled."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

pytest.importorskip("ray", reason="Ray is not installed: make setup-ray")

pytestmark = pytest.mark.slow  # minutes: a Ray cluster, Ray Train workers and a pool of predict actors

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    two = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 1, "include_dashboard": False})
    two.worker = two.add_node(num_cpus=1)
    two.wait_for_nodes()
    yield two
    import ray

    if ray.is_initialized():
        ray.shutdown()
    two.shutdown()


def _rows(n: int) -> pd.DataFrame:
    words = ["good", "great", "fine", "bad", "awful", "poor", "film", "plot"]
    return pd.DataFrame({"text": [f"{words[i % 8]} {words[(i * 7 + 3) % 8]} film number {i}" for i in range(n)]})


def test_training_on_ray_registers_one_run_and_matches_torchrun(cluster, prefect_server, make_config, tmp_path):
    from flows.finetune import finetune
    from tests.conftest import toy_frame

    data = tmp_path / "toy.csv"
    toy_frame(n_per_class=60).to_csv(data, index=False)
    same = {"epochs": 4, "learning_rate": 3e-3, "early_stopping_patience": 0, "batch_size": 8}
    torchrun = finetune(make_config(data={"path": str(data)}, train={**same, "nproc": 2}, registry={"model_name": "torchrun"}))
    cfg = make_config(
        data={"path": str(data)},
        train={**same, "runner": "ray", "workers": 2, "worker_cpus": 1},
        sweep={"ray_address": cluster.address},
        registry={"model_name": "on-ray"},
    )
    on_ray = finetune(cfg)

    client = MlflowClient(cfg.tracking.resolved_uri(), cfg.tracking.resolved_uri())
    assert on_ray["model_version"] == 1 and on_ray["promoted"]  # trained, registered, gated (gates at 0 for the tiny model)
    steps = json.loads(open(client.download_artifacts(on_ray["run_id"], "data/steps.json")).read())
    assert steps["fine_tune"]["runner"] == "ray" and steps["fine_tune"]["nproc"] == 2
    history = client.get_metric_history(on_ray["run_id"], "train_loss")
    assert len(history) >= 2  # the workers' learning curve, logged by the flow's one run
    runs = client.search_runs([client.get_experiment_by_name("finetune-flow").experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}  # one run per flow: the workers log nothing
    metric = "f1_macro"
    assert abs(on_ray["val_metrics"][metric] - torchrun["val_metrics"][metric]) <= 0.1, (on_ray["val_metrics"], torchrun["val_metrics"])


def test_predict_on_ray_survives_a_lost_node_and_answers_as_local(cluster, prefect_server, make_config, toy_csv, tmp_path):
    from flows.finetune import finetune

    cfg = make_config(data={"path": str(toy_csv)}, registry={"model_name": "scored"})
    finetune(cfg)
    rows = _rows(40_000)
    source = tmp_path / "in.csv"
    rows.to_csv(source, index=False)
    common = ["--name", "scored", "--version", "1", "--tracking-uri", cfg.tracking.resolved_uri(), "--precision", "fp32"]
    local = subprocess.run(
        [sys.executable, "flows/predict.py", str(source), str(tmp_path / "local.csv"), *common],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert local.returncode == 0, local.stderr[-2000:]

    out = tmp_path / "out"
    command = [sys.executable, "flows/predict.py", str(source), str(out), *common, "--runner", "ray", "--workers", "2"]
    command += ["--ray-address", cluster.address, "--chunk-rows", "1000", "--batch-size", "8"]
    run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while len(list(out.glob("part-*"))) < 3 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    parts_when_lost = len(list(out.glob("part-*")))
    assert run.poll() is None and 0 < parts_when_lost < 40, parts_when_lost  # still running: the node goes mid-run
    cluster.remove_node(cluster.worker)
    time.sleep(5)
    cluster.worker = cluster.add_node(num_cpus=1)
    stdout, stderr = run.communicate(timeout=600)
    assert run.returncode == 0, stderr[-3000:]

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows_in"] == manifest["rows_out"] == 40_000 and len(manifest["parts"]) == 40
    answered = pd.concat([pd.read_parquet(out / p["part"]) for p in manifest["parts"]], ignore_index=True)
    assert sorted(answered["row_id"]) == list(range(40_000))  # every row once: none lost, none doubled
    answered = answered.sort_values("row_id").reset_index(drop=True)
    expected = pd.read_csv(tmp_path / "local.csv")
    assert answered["text"].tolist() == expected["text"].tolist()
    assert (answered["predicted_label"] == expected["predicted_label"]).mean() >= 0.999
    assert list(answered.columns) == ["row_id", *expected.columns]  # local predict's columns, row for row, and the id
