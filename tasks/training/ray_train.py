"""Fine-tuning on a Ray cluster (train.runner=ray): Ray Train's TorchTrainer runs the fine-tune recipe's own Trainer in
train.workers workers (data-parallel, gloo on CPUs and nccl on GPUs, the process group set up by Ray).

The tokenized data comes from the step cache (tokenized once, before training, by the tokenize step); every worker
reads it and writes checkpoints into the shared cache (so a killed run resumes as it does locally); rank 0 saves the
best model and writes what the parent records. Nothing here logs to MLflow or registers: the flow's process does.
The cluster is the one at sweep.ray_address or $RAY_ADDRESS; without either a local Ray is started for the run and
stopped at its end (127.0.0.1, no dashboard, no usage statistics, Ray's token authentication as Ray sets it up).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from schemas.config import PROJECT_ROOT, ModelConfig, TrainConfig
from schemas.errors import ConfigError
from schemas.results import TokenizeResult
from tasks.runtime.env import OFFLINE

RAY_INSTALL = "make setup-ray (or: pip install -c requirements.lock -r requirements-ray.lock)"


def ray_environment(environ: dict | None = None) -> dict:
    """What every Ray worker runs under: the project's offline and no-telemetry variables (values exported here win) and
    this checkout first on its path."""
    environ = dict(os.environ if environ is None else environ)
    env_vars = {key: environ.get(key, value) for key, value in OFFLINE.items()}
    env_vars["PYTHONPATH"] = f"{PROJECT_ROOT}{os.pathsep}${{PYTHONPATH}}"
    return {"env_vars": env_vars}


def connect(address: str | None, cpus: float, what: str) -> bool:
    """Join the cluster at address (or $RAY_ADDRESS), or start a local Ray with cpus CPUs; True when one was started here."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"{what} needs Ray, which is not installed: {RAY_INSTALL}") from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, runtime_env=ray_environment(), log_to_driver=False)
            return False
        ray.init(
            num_cpus=max(1, int(round(cpus))),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",  # a Ray started for one run serves this machine only
            runtime_env=ray_environment(),
            log_to_driver=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ConfigError(
            f"cannot reach the Ray cluster at {address or 'a local Ray'} ({first}): start it (ray start --head) or set the address"
        ) from None
    return True


def _worker_loop(config: dict) -> None:
    """One Ray Train worker: the recipe's life cycle, with Ray's report callback; rank 0 writes the result file."""
    import torch

    from tasks.runtime import env

    env.apply()
    torch.set_num_threads(max(1, int(config["threads"])))
    import ray.train
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer

    from tasks.training.recipe import finish, run, save, set_up, validate

    tokens, model = TokenizeResult(**config["tokens"]), ModelConfig(**config["model"])
    train = TrainConfig(**config["train"])
    folder, checkpoints = Path(config["folder"]), Path(config["checkpoints"])
    choices = validate(train, config["task"], config["compare_on"], tokens.target)
    trainer, facts = set_up(tokens, model, train, config["task"], choices, config["seed"], checkpoints, [RayTrainReportCallback()])
    trainer = prepare_trainer(trainer)
    result, resume = run(trainer, checkpoints)
    save(trainer, folder, model, train, config["seed"], config["task"], tokens.target, choices.best_metric)
    if ray.train.get_context().get_world_rank() == 0:
        (folder / ".ray-result.json").write_text(json.dumps(finish(trainer, choices, result, resume, facts), default=str))


def train_on_ray(
    tokens: TokenizeResult,
    model_cfg: ModelConfig,
    train: TrainConfig,
    seed: int,
    folder: Path,
    checkpoints: Path,
    task: str,
    compare_on: str | None = None,
    address: str | None = None,
) -> dict:
    """train_model in train.workers Ray Train workers; returns rank 0's record (as train_model's)."""
    import dataclasses

    started = connect(address, train.workers * train.worker_cpus, "train.runner=ray")
    try:
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        resources = {"CPU": train.worker_cpus, **({"GPU": train.worker_gpus} if train.worker_gpus else {})}
        trainer = TorchTrainer(
            _worker_loop,
            train_loop_config={
                "tokens": dataclasses.asdict(tokens),
                "model": model_cfg.model_dump(),
                "train": train.model_dump(),
                "seed": seed,
                "folder": str(folder),
                "checkpoints": str(checkpoints),
                "task": task,
                "compare_on": compare_on,
                "threads": train.worker_cpus,
            },
            scaling_config=ScalingConfig(num_workers=train.workers, use_gpu=train.worker_gpus > 0, resources_per_worker=resources),
            run_config=RunConfig(name=folder.name.lstrip("."), storage_path=str(checkpoints.parent.parent / "ray")),
        )
        trainer.fit()
    finally:
        if started:
            import ray

            ray.shutdown()
    record = folder / ".ray-result.json"
    if not record.is_file():
        raise RuntimeError(f"Ray training ({train.workers} workers) ended without rank 0's result; see its log above")
    meta = json.loads(record.read_text())
    record.unlink()
    return meta
