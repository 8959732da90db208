"""Where a sweep's trials run: Prefect task runners for local worker processes or Ray, and each trial's CPU share."""

from __future__ import annotations

import os

from schemas.config import PROJECT_ROOT, SweepConfig
from schemas.errors import ConfigError

RAY_INSTALL = "pip install prefect-ray==0.6.0 'ray[default]==2.60.0'"


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
    from tasks import env

    env.apply()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


class ray_resources:
    """Per-trial CPU/GPU requests for Ray tasks (prefect-ray's remote_options); nothing for the local runner."""

    def __init__(self, sweep_cfg: SweepConfig):
        self.sweep_cfg, self.inner = sweep_cfg, None

    def __enter__(self):
        if self.sweep_cfg.runner == "ray":
            from prefect_ray.context import remote_options

            gpus = {"num_gpus": self.sweep_cfg.trial_gpus} if self.sweep_cfg.trial_gpus else {}
            self.inner = remote_options(num_cpus=trial_cpus(self.sweep_cfg), **gpus)
            self.inner.__enter__()
        return self

    def __exit__(self, *exc):
        if self.inner is not None:
            return self.inner.__exit__(*exc)
        return False


def task_runner(sweep_cfg: SweepConfig):
    """The Prefect task runner the trials fan out on: local processes, or Ray through prefect-ray."""
    from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

    if sweep_cfg.runner == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError:
            raise ConfigError(f"--runner ray needs Prefect's Ray integration, which is not installed: {RAY_INSTALL}") from None
        from prefect.settings import PREFECT_API_URL

        from tasks.env import OFFLINE

        # Workers get the project's environment and this API; a cluster's image carries the project (deployments/README.md).
        api = {"PREFECT_API_URL": PREFECT_API_URL.value()} if PREFECT_API_URL.value() else {}
        env_vars = {**OFFLINE, "PYTHONPATH": str(PROJECT_ROOT), **api}
        runtime_env = {"env_vars": env_vars}
        if sweep_cfg.ray_address:
            return RayTaskRunner(address=sweep_cfg.ray_address, init_kwargs={"runtime_env": runtime_env})
        cpus = trial_cpus(sweep_cfg) * sweep_cfg.parallel
        return RayTaskRunner(init_kwargs={"num_cpus": cpus, "runtime_env": runtime_env, "include_dashboard": False})
    if sweep_cfg.parallel == 1:
        return ThreadPoolTaskRunner(max_workers=1)  # one trial at a time, in this process: no worker start-up
    return ProcessPoolTaskRunner(
        max_workers=sweep_cfg.parallel, initializer=worker_init, initargs=(trial_cpus(sweep_cfg), str(PROJECT_ROOT))
    )
