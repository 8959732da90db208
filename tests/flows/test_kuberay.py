"""The KubeRay RayJobs in deployments/kuberay/ are what the docs say: YAML a cluster accepts, with token
authentication on, no dashboard, no usage statistics, and entrypoints that the project's own parsers accept."""

import shlex
from pathlib import Path

import pytest
import yaml

from flows import predict
from flows.cli import finetune_parser
from schemas.config import load_config

KUBERAY = Path(__file__).resolve().parents[2] / "deployments" / "kuberay"


def _job(name: str) -> dict:
    return yaml.safe_load((KUBERAY / name).read_text())


@pytest.mark.parametrize("name", ["rayjob-finetune.yaml", "rayjob-predict.yaml"])
def test_rayjobs_are_safe_by_default(name):
    job = _job(name)
    assert job["kind"] == "RayJob" and job["apiVersion"] == "ray.io/v1"
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token"
    assert cluster["headGroupSpec"]["rayStartParams"]["include-dashboard"] == "false"
    pods = [cluster["headGroupSpec"]["template"]] + [group["template"] for group in cluster["workerGroupSpecs"]]
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert env["RAY_USAGE_STATS_ENABLED"] == "0"
        assert "MLFLOW_TRACKING_PASSWORD" in env and env["MLFLOW_TRACKING_PASSWORD"] is None  # from a secret, never inline
        assert [m["mountPath"] for m in container["volumeMounts"]] == ["/shared"]


def test_finetune_rayjob_entrypoint_is_a_valid_config():
    argv = shlex.split(_job("rayjob-finetune.yaml")["spec"]["entrypoint"])
    assert argv[:2] == ["python", "flows/finetune.py"]
    args = finetune_parser().parse_args(argv[2:])
    cfg = load_config(None, args.overrides)  # the config file lives on the shared volume; the overrides must validate
    assert cfg.train.runner == "ray" and cfg.train.workers == 4 and cfg.train.worker_gpus == 1
    assert str(cfg.cache.dir).startswith("/shared")


def test_predict_rayjob_entrypoint_is_a_valid_config():
    argv = shlex.split(_job("rayjob-predict.yaml")["spec"]["entrypoint"])
    assert argv[:2] == ["python", "flows/predict.py"]
    cfg = predict.config_from(predict.build_parser().parse_args(argv[2:]))
    assert cfg.runner == "ray" and cfg.workers == 16 and cfg.output_format == "parquet" and cfg.id_column == "id"
    assert cfg.input.startswith("/shared/") and cfg.output.startswith("/shared/")
