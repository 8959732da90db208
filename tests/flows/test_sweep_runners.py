"""Where trials run: the task runner a sweep's config asks for, and what a trial asks Ray for."""

import os

import pytest

from flows.sweep_runners import ray_init_kwargs, ray_remote_options, task_runner, trial_cpus
from schemas.config import PROJECT_ROOT, load_config
from schemas.errors import ConfigError


def test_ray_runner_without_prefect_ray_is_one_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name.startswith("prefect_ray"):
            raise ImportError("No module named 'prefect_ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ConfigError, match=r"not installed: make setup-ray \(or: pip install .* -r requirements-ray.lock\)"):
        task_runner(load_config(None, ["sweep.runner=ray"]).sweep)


def test_each_trial_asks_ray_for_its_cpus_and_gpus():
    two = load_config(None, ["sweep.parallel=2", "sweep.trial_cpus=1"]).sweep
    assert ray_remote_options(two) == {"num_cpus": 1} and trial_cpus(two) == 1
    shared_gpu = load_config(None, ["sweep.parallel=4", "sweep.trial_cpus=0.5", "sweep.trial_gpus=0.5"]).sweep
    assert ray_remote_options(shared_gpu) == {"num_cpus": 0.5, "num_gpus": 0.5} and trial_cpus(shared_gpu) == 1
    default = load_config(None, ["sweep.parallel=2"]).sweep
    assert ray_remote_options(default) == {"num_cpus": trial_cpus(default)}  # this machine's cores / parallel


def test_a_local_ray_gets_the_trials_cpus_and_every_worker_the_projects_environment():
    local = load_config(None, ["sweep.runner=ray", "sweep.parallel=2", "sweep.trial_cpus=1"]).sweep
    kwargs = ray_init_kwargs(local, {"HF_HUB_OFFLINE": "0"}, "http://127.0.0.1:4200/api")
    assert (kwargs["num_cpus"], kwargs["include_dashboard"], kwargs["_node_ip_address"]) == (2, False, "127.0.0.1")
    env = kwargs["runtime_env"]["env_vars"]
    assert env["HF_HUB_OFFLINE"] == "0"  # the value this process runs with, not the project's default
    assert env["TRANSFORMERS_OFFLINE"] == "1" and env["RAY_USAGE_STATS_ENABLED"] == "0"
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"
    assert env["PYTHONPATH"].startswith(f"{PROJECT_ROOT}{os.pathsep}") and env["PYTHONPATH"].endswith("${PYTHONPATH}")
    gpus = load_config(None, ["sweep.runner=ray", "sweep.parallel=2", "sweep.trial_cpus=1", "sweep.trial_gpus=1"]).sweep
    assert "num_gpus" not in ray_init_kwargs(gpus, {}, None)  # Ray counts the machine's GPUs itself

    cluster = load_config(None, ["sweep.runner=ray", "sweep.ray_address=ray://head:10001", "sweep.trial_gpus=1"]).sweep
    kwargs = ray_init_kwargs(cluster, {}, "http://127.0.0.1:4200/api")
    assert set(kwargs) == {"runtime_env"}  # a cluster has its own size; the driver only brings the environment
    # this machine's loopback API would be the worker pod's own: cluster workers keep the URL set on the cluster
    assert "PREFECT_API_URL" not in kwargs["runtime_env"]["env_vars"]
