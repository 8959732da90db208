"""train.nproc=2: the fine-tune step under torchrun (DDP, gloo on CPU), through the real flow."""

import json

from mlflow import MlflowClient

from flows.finetune import finetune
from tests.conftest import toy_frame


def test_two_processes_train_register_one_version_and_match_one_process(prefect_server, make_config, tmp_path):
    data = tmp_path / "toy.csv"
    toy_frame(n_per_class=60).to_csv(data, index=False)
    single = finetune(
        make_config(
            data={"path": str(data)},
            train={"epochs": 6, "learning_rate": 3e-3, "early_stopping_patience": 0},
            registry={"model_name": "single"},
        )
    )
    cfg = make_config(
        data={"path": str(data)},
        train={"epochs": 6, "learning_rate": 3e-3, "early_stopping_patience": 0, "nproc": 2, "batch_size": 8},
        registry={"model_name": "ddp"},
    )
    ddp = finetune(cfg)

    client = MlflowClient(cfg.tracking.resolved_uri(), cfg.tracking.resolved_uri())
    assert len(client.search_model_versions("name='ddp'")) == 1 and ddp["model_version"] == 1
    steps = json.loads(open(client.download_artifacts(ddp["run_id"], "data/steps.json")).read())
    assert steps["fine_tune"]["nproc"] == 2 and steps["fine_tune"]["device"] == "cpu"
    # one MLflow run per flow: the ranks log nothing themselves
    runs = client.search_runs([client.get_experiment_by_name("finetune-flow").experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    # two ranks x batch 8 see the same examples per step as one process x batch 16
    assert abs(ddp["test_accuracy"] - single["test_accuracy"]) <= 0.1, (ddp["test_accuracy"], single["test_accuracy"])
    assert ddp["test_accuracy"] >= 0.8
