"""One rank of a distributed fine-tune, started by tasks.train.train_distributed:

    python -m torch.distributed.run --nproc_per_node N -m tasks.training.ddp JOB.json

Every rank trains (HF Trainer wraps the model in DDP from torchrun's environment); rank 0
writes the result the parent flow reads. Nothing here logs to MLflow or registers.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(job_path: str) -> None:
    from tasks.runtime import env

    env.apply()
    from schemas.config import ModelConfig, TrainConfig
    from schemas.results import TokenizeResult
    from tasks.train import train_model

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
