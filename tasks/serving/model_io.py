"""The fine-tuned model in and out of MLflow: logged as a transformers model with its output rule, signature and an
offline model card; loaded back safely (never running a model's own code unless opted in)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow

from schemas.config import resolve_model_path
from schemas.secrets import mask_uri
from task_types import get_task_type
from tasks.serving.safe_load import load_logged_model


def _with_decision(model_path: str, decision: dict, columns: dict, folder: Path) -> str:
    """A copy of the trained model whose config also carries the output rule tuned on validation and the
    input column names it was trained on (predict's defaults)."""
    import shutil

    target = folder / "model"
    shutil.copytree(model_path, target)
    config = json.loads((target / "config.json").read_text())
    config.setdefault("finetune_flow", {}).update({"decision": decision, **columns})
    (target / "config.json").write_text(json.dumps(config, indent=2))
    return str(target)


def _signature(task_type, info: dict):
    """The MLflow signature: the text (and pair) in, the task type's predict columns out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = [ColSpec("string", "text")] + ([ColSpec("string", "text_pair")] if info["text_pair"] else [])
    outputs = [ColSpec(kind, name) for name, kind in task_type.output_schema(info["target"])]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def hub_card(base_model: str):
    """A model card for MLflow built from what is on disk: given one, MLflow never asks the hub for the base
    model's card or license (offline, that costs a warning per registration, or a timeout)."""
    import re

    from huggingface_hub import ModelCard

    readme = Path(resolve_model_path(base_model)) / "README.md" if base_model else None
    found = re.search(r"^license:\s*(\S+)", readme.read_text(errors="replace"), re.M) if readme and readme.is_file() else None
    license_name = found.group(1) if found else "unknown"
    return ModelCard(
        f"---\nlicense: {license_name}\n---\nFine-tuned by finetune-flow from `{mask_uri(base_model)}`; see the registered "
        "version's description for its model card.\n"
    )


def log_model(run_id: str, model_path: str, decision: dict, columns: dict, base_model: str = "") -> str:
    """Log the fine-tuned model (with its output rule) as an MLflow transformers model; returns its URI."""
    import tempfile

    import torch
    import transformers

    from task_types.inference import model_task, task_of

    requirements = [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"transformers=={transformers.__version__}",
    ]
    with tempfile.TemporaryDirectory(prefix="ff-model-") as tmp:
        path = _with_decision(model_path, decision, columns, Path(tmp))
        pipeline_task = get_task_type(task_of(json.loads((Path(path) / "config.json").read_text()))).pipeline_task
        pipe = transformers.pipeline(pipeline_task, model=path, tokenizer=path, device="cpu")
        info = model_task(pipe.model.config)
        # log_model writes to the active run; resuming ours here marks it finished on exit, and the
        # flow's tracking_run sets the final status afterwards.
        with mlflow.start_run(run_id=run_id):
            logged = mlflow.transformers.log_model(
                pipe,
                name="model",
                task=pipeline_task,
                pip_requirements=requirements,
                signature=_signature(get_task_type(info["task"]), info),
                model_card=hub_card(base_model),
            )
    return logged.model_uri


def load_registered(model_uri: str, trust_remote_code: bool = False, opt_in: str = "set model.trust_remote_code=true"):
    """(model, tokenizer) of a registered transformers model, e.g. models:/name@champion.

    Never through mlflow.transformers.load_model: it turns trust_remote_code on by itself for
    classes transformers does not know. A model that needs its own code is refused unless opted in.
    """
    return load_logged_model(model_uri, trust_remote_code, opt_in)
