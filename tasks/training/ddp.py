"""Data-parallel fine-tuning on one machine: the fine-tune step launches train.nproc ranks under torchrun, each running
the same recipe (HF Trainer wraps the model in DDP from torchrun's environment); rank 0 writes the result the parent
reads. Nothing here logs to MLflow or registers.

    python -m torch.distributed.run --nproc_per_node N -m tasks.training.ddp JOB.json
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from schemas.config import ModelConfig, TrainConfig
from schemas.results import TokenizeResult


def train_distributed(
    tokens: TokenizeResult,
    model_cfg: ModelConfig,
    train: TrainConfig,
    seed: int,
    folder: Path,
    checkpoints: Path,
    task: str,
    compare_on: str | None = None,
) -> dict:
    """train_model in train.nproc processes under torchrun (HF Trainer's DDP); rank 0 saves and reports.

    Runs `python -m torch.distributed.run` from this venv; each rank gets an equal share of the CPU threads.
    """
    import dataclasses
    import socket
    import subprocess
    import sys

    from schemas.config import PROJECT_ROOT

    job = folder / ".ddp-job.json"
    result = folder / ".ddp-result.json"
    job.write_text(
        json.dumps(
            {
                "tokens": dataclasses.asdict(tokens),
                "model": model_cfg.model_dump(),
                "train": train.model_dump(),
                "seed": seed,
                "folder": str(folder),
                "checkpoints": str(checkpoints),
                "result": str(result),
                "task": task,
                "compare_on": compare_on,
            }
        )
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    threads = max(1, (os.cpu_count() or 1) // train.nproc)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(PROJECT_ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(train.nproc),
        "--nnodes",
        "1",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        "-m",
        "tasks.training.ddp",
        str(job),
    ]
    done = subprocess.run(cmd, env=env)
    if done.returncode != 0 or not result.is_file():
        raise RuntimeError(
            f"distributed training (torchrun, {train.nproc} processes) failed with exit code {done.returncode}; see its log above"
        )
    meta = json.loads(result.read_text())
    job.unlink()
    result.unlink()
    return meta


def main(job_path: str) -> None:
    from tasks.runtime import env

    env.apply()
    from tasks.training.recipe import train_model

    job = json.loads(Path(job_path).read_text())
    result = train_model(
        TokenizeResult(**job["tokens"]),
        ModelConfig(**job["model"]),
        TrainConfig(**job["train"]),
        job["seed"],
        Path(job["folder"]),
        Path(job["checkpoints"]),
        job["task"],
        job["compare_on"],
    )
    if int(os.environ.get("RANK", "0")) == 0:
        Path(job["result"]).write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main(sys.argv[1])
