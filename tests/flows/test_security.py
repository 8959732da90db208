"""Hardening against hostile or careless input, through the real entry points: a model folder that
carries its own code is refused (and none of it runs), and secrets in a tracking URI are written nowhere."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from flows.finetune import finetune
from schemas.config import FinetuneConfig
from tasks.serving.safe_load import weights_folder
from tests.conftest import toy_frame


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model_dir, prefect_server, empty_store):
    """One real flow run (v1 of 'tiny', promoted) in a store of its own."""
    root = tmp_path_factory.mktemp("security")
    data = root / "toy.csv"
    toy_frame().to_csv(data, index=False)
    (root / "mlruns").mkdir()
    shutil.copy(empty_store, root / "mlruns" / "mlflow.db")
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    args = {
        "data": {"path": str(data)},
        "model": {"name_or_path": str(tiny_model_dir)},
        "train": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "max_length": 32, "precision": "fp32"},
        "registry": {"model_name": "tiny", "min_accuracy": 0.0, "min_f1": 0.0},
        "tracking": {"uri": uri},
        "cache": {"dir": str(root / "cache")},
    }
    first = finetune(FinetuneConfig.model_validate(args))
    return {"root": root, "uri": uri, "data": data, "first": first}


def _hostile_version(store, marker: Path) -> str:
    """A copy of v1 whose config points at a Python file in the model folder that writes marker when run."""
    client = MlflowClient(store["uri"], store["uri"])
    mlflow.set_tracking_uri(store["uri"])
    folder = Path(mlflow.artifacts.download_artifacts("models:/tiny/1", dst_path=str(store["root"] / "hostile")))
    weights = weights_folder(folder)  # the pyfunc's artifacts/weights (or an older version's model/)
    (weights / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import BertConfig, BertForSequenceClassification\n"
        "class EvilConfig(BertConfig):\n    model_type = 'evil'\n"
        "class EvilModel(BertForSequenceClassification):\n    config_class = EvilConfig\n"
    )
    config = json.loads((weights / "config.json").read_text())
    config.update(
        {
            "model_type": "evil",
            "architectures": ["EvilModel"],
            "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModelForSequenceClassification": "evil.EvilModel"},
        }
    )
    (weights / "config.json").write_text(json.dumps(config))
    mlmodel = (folder / "MLmodel").read_text()
    (folder / "MLmodel").write_text(mlmodel.replace("model_type: BertForSequenceClassification", "model_type: EvilModel"))
    run = client.create_run(client.get_experiment_by_name("finetune-flow").experiment_id)
    client.log_artifacts(run.info.run_id, str(folder), "model")
    client.set_terminated(run.info.run_id)
    version = client.create_model_version("tiny", f"runs:/{run.info.run_id}/model", run.info.run_id)
    return str(version.version)


def _error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_a_model_folder_with_its_own_code_is_refused_and_none_of_it_runs(store, tmp_path, cli_env, request):
    marker = tmp_path / "remote-code-ran"
    version = _hostile_version(store, marker)
    root = request.config.rootpath
    source = tmp_path / "in.csv"
    source.write_text("text\ngreat superb film\n")

    predicted = subprocess.run(
        [
            sys.executable,
            "flows/predict.py",
            str(source),
            str(tmp_path / "out.csv"),
            "--model",
            f"models:/tiny/{version}",
            "--tracking-uri",
            store["uri"],
        ],
        cwd=root,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert predicted.returncode == 2, predicted.stderr[-3000:]
    errors = _error_lines(predicted)
    assert len(errors) == 1 and "needs code from its own files" in errors[0] and "--trust-remote-code" in errors[0], errors
    assert "Traceback" not in predicted.stderr and not marker.exists()
    assert not (tmp_path / "out.csv").exists()

    # The same folder as the champion, trained on other data: the gate would re-score it, and must refuse to.
    client = MlflowClient(store["uri"], store["uri"])
    client.set_model_version_tag("tiny", version, "data_fingerprint", "other-data")
    client.set_registered_model_alias("tiny", "champion", version)
    trained = subprocess.run(
        [
            sys.executable,
            "flows/finetune.py",
            f"data.path={store['data']}",
            f"model.name_or_path={request.getfixturevalue('tiny_model_dir')}",
            f"tracking.uri={store['uri']}",
            f"cache.dir={store['root'] / 'cache'}",
            "registry.model_name=tiny",
            "registry.min_accuracy=0",
            "registry.min_f1=0",
            "train.epochs=1",
            "train.batch_size=16",
            "train.learning_rate=5e-4",
            "train.max_length=32",
            "train.precision=fp32",
        ],
        cwd=root,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert trained.returncode == 2, trained.stderr[-3000:]
    errors = _error_lines(trained)
    assert len(errors) == 1 and "needs code from its own files" in errors[0] and "model.trust_remote_code=true" in errors[0], errors
    assert "Traceback" not in trained.stderr and not marker.exists()
    assert str(client.get_model_version_by_alias("tiny", "champion").version) == version
    latest = client.search_runs(
        [client.get_experiment_by_name("finetune-flow").experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )[0]
    assert latest.info.status == "FAILED"


def test_a_secret_in_the_tracking_uri_is_written_nowhere(request, tmp_path, tiny_model_dir, toy_csv, new_store):
    import os
    import uuid

    from flows.ui_check import mlflow_server

    secret = f"s3cr3t-{uuid.uuid4().hex}"
    backend = new_store(tmp_path / "server")
    prefect_home = tmp_path / "prefect"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(prefect_home)  # the flow's own temporary Prefect server, its database in here
    with mlflow_server(backend, artifacts=tmp_path / "server" / "artifacts") as url:
        uri = url.replace("http://", f"http://alice:{secret}@")
        result = subprocess.run(
            [
                sys.executable,
                "flows/finetune.py",
                f"data.path={toy_csv}",
                f"model.name_or_path={tiny_model_dir}",
                f"tracking.uri={uri}",
                f"cache.dir={tmp_path / 'cache'}",
                "registry.model_name=tiny",
                "registry.min_accuracy=0",
                "registry.min_f1=0",
                "train.epochs=1",
                "train.max_length=32",
                "train.precision=fp32",
                f"--summary-json={tmp_path / 'summary.json'}",
            ],
            cwd=request.config.rootpath,
            env=env,
            capture_output=True,
            text=True,
            timeout=500,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    assert secret not in result.stdout + result.stderr
    assert "alice" not in result.stdout + result.stderr
    client = MlflowClient(backend, backend)
    runs = client.search_runs([client.get_experiment_by_name("finetune-flow").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    recorded = [*runs[0].data.params.values(), *runs[0].data.tags.values()]
    for version in client.search_model_versions("name='tiny'"):
        recorded += [*version.tags.values(), version.description or ""]
    assert recorded and not [value for value in recorded if secret in value]
    assert runs[0].data.params["tracking.uri"] == url
    stored = [p for p in prefect_home.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in stored)
    assert not [p for p in stored if secret.encode() in p.read_bytes()]
    assert secret not in (tmp_path / "summary.json").read_text()
