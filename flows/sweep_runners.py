"""Where a sweep's trials run: Prefect task runners for local worker processes or Ray, and each trial's CPU share."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping

from schemas.config import PROJECT_ROOT, SweepConfig
from schemas.errors import ConfigError
from tasks.runtime.env import OFFLINE

RAY_INSTALL = "make setup-ray (or: pip install -c requirements.lock -r requirements-ray.lock)"


def trial_cpus(sweep: SweepConfig, cores: int | None = None) -> int:
    """Torch threads per trial: sweep.trial_cpus, else an equal share of this machine's cores."""
    if sweep.trial_cpus:
        return max(1, int(sweep.trial_cpus))
    return max(1, (cores or os.cpu_count() or 1) // sweep.parallel)


def worker_init(threads: int, project_root: str) -> None:
    """Run once in each local worker process: the project importable, its environment, the thread share."""
    import sys

    if project_root not in sys.path:
        sys.path.insert(0, project_root)
    from tasks.runtime import env

    env.apply()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def ray_remote_options(sweep_cfg: SweepConfig) -> dict:
    """What each trial asks Ray for: sweep.trial_cpus CPUs (else its share of this machine's cores) and sweep.trial_gpus GPUs."""
    gpus = {"num_gpus": sweep_cfg.trial_gpus} if sweep_cfg.trial_gpus else {}
    return {"num_cpus": sweep_cfg.trial_cpus or trial_cpus(sweep_cfg), **gpus}


def ray_init_kwargs(sweep_cfg: SweepConfig, environ: Mapping[str, str], api_url: str | None) -> dict:
    """ray.init's arguments: the project's environment for every Ray worker; a local Ray gets exactly the trials' CPUs.

    Ray workers are fresh processes (on a cluster, on other machines): they get the offline and
    no-telemetry variables as this process has them (values the user exported win), this checkout
    in front of their own path, and on a local Ray this run's Prefect API (a cluster's workers keep their own
    PREFECT_API_URL, set on the cluster: a URL of this machine would point at their own pod).
    """
    env_vars = {key: environ.get(key, value) for key, value in OFFLINE.items()}
    env_vars["PYTHONPATH"] = f"{PROJECT_ROOT}{os.pathsep}${{PYTHONPATH}}"  # Ray puts the worker's own path in ${...}
    if api_url and not sweep_cfg.ray_address:  # a cluster's workers reach the team's server (set there), not this machine's
        env_vars["PREFECT_API_URL"] = api_url
    kwargs = {"runtime_env": {"env_vars": env_vars}}
    if sweep_cfg.ray_address:
        return kwargs
    return {
        **kwargs,
        # GPUs are left to Ray to detect: declaring more than the machine has would hand trials devices that do not exist.
        "num_cpus": math.ceil(ray_remote_options(sweep_cfg)["num_cpus"] * sweep_cfg.parallel),
        "include_dashboard": False,
        "_node_ip_address": "127.0.0.1",  # a Ray started for one run serves this machine only
    }


def trial_resources(sweep_cfg: SweepConfig):
    """The context trials are submitted in: each one's Ray resource requests (prefect-ray's remote_options); nothing locally."""
    if sweep_cfg.runner != "ray":
        return contextlib.nullcontext()
    from prefect_ray.context import remote_options

    return remote_options(**ray_remote_options(sweep_cfg))


def check_runner(sweep_cfg: SweepConfig) -> None:
    """Fail before any work when the runner asked for is not installed."""
    if sweep_cfg.runner == "ray":
        try:
            import prefect_ray  # noqa: F401
        except ImportError:
            raise ConfigError(f"--runner ray needs Prefect's Ray integration, which is not installed: {RAY_INSTALL}") from None


def task_runner(sweep_cfg: SweepConfig):
    """The Prefect task runner the trials fan out on: local processes, or Ray through prefect-ray."""
    from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

    check_runner(sweep_cfg)
    if sweep_cfg.runner == "ray":
        from prefect.settings import PREFECT_API_URL
        from prefect_ray import RayTaskRunner

        # Without an address, prefect-ray starts a local Ray for the flow run and stops it at the end.
        return RayTaskRunner(address=sweep_cfg.ray_address, init_kwargs=ray_init_kwargs(sweep_cfg, os.environ, PREFECT_API_URL.value()))
    if sweep_cfg.parallel == 1:
        return ThreadPoolTaskRunner(max_workers=1)  # one trial at a time, in this process: no worker start-up
    return ProcessPoolTaskRunner(
        max_workers=sweep_cfg.parallel, initializer=worker_init, initargs=(trial_cpus(sweep_cfg), str(PROJECT_ROOT))
    )
