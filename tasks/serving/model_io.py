"""The fine-tuned model in and out of MLflow: logged as a pyfunc that answers as flows/predict.py does (the weights
plain files among its artifacts, the project's code logged beside them, pinned requirements, a signature with
predict's params); loaded back safely (never running a model's own code unless opted in)."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import mlflow

from schemas.config import PROJECT_ROOT
from task_types import get_task_type
from tasks.serving.safe_load import load_logged_model

# The distributions the logged model's code imports when it loads and predicts, pinned as installed here.
SERVING_REQUIREMENTS = (
    "mlflow",
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "numpy",
    "pandas",
    "pyarrow",
    "pydantic",
    "pandera",
    "pyyaml",
    "scikit-learn",
    "scipy",
    "seqeval",
)
# The project packages logged as the model's code (flows/ is not: serving needs none of it).
CODE_PACKAGES = ("schemas", "task_types", "tasks")


def _with_decision(model_path: str, decision: dict, columns: dict, folder: Path) -> Path:
    """A copy of the trained model whose config also carries the output rule tuned on validation and the
    input column names it was trained on (predict's defaults)."""
    import shutil

    target = folder / "weights"
    shutil.copytree(model_path, target)
    config = json.loads((target / "config.json").read_text())
    config.setdefault("finetune_flow", {}).update({"decision": decision, **columns})
    (target / "config.json").write_text(json.dumps(config, indent=2))
    return target


def requirements() -> list[str]:
    """Exact versions of what serving imports, as installed in this environment (torch without its local build tag)."""
    pins = []
    for name in SERVING_REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def _code_paths(folder: Path) -> list[str]:
    """Copies of the project's packages without compiled caches (what MLflow logs as the model's code)."""
    import shutil

    paths = []
    for package in CODE_PACKAGES:
        target = folder / "code" / package
        shutil.copytree(PROJECT_ROOT / package, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        paths.append(str(target))
    return paths


def log_model(run_id: str, model_path: str, decision: dict, columns: dict, base_model: str = "") -> str:
    """Log the fine-tuned model (with its output rule) as the project's pyfunc; returns its URI."""
    import tempfile

    from task_types.inference import model_task
    from tasks.serving.pyfunc import WEIGHTS, signature

    with tempfile.TemporaryDirectory(prefix="ff-model-") as tmp:
        weights = _with_decision(model_path, decision, columns, Path(tmp))
        info = model_task(_Config(json.loads((weights / "config.json").read_text())))
        task_type = get_task_type(info["task"]).for_target(info["target"])
        # log_model links the model to the active run; resuming it here marks it FINISHED on exit, so it is set back to
        # what it was at once: RUNNING for the flow's own run (tracking_run closes it; a kill in between is found by its
        # open tag), FINISHED for a sweep's finished trial.
        client = mlflow.MlflowClient(mlflow.get_tracking_uri())
        status = client.get_run(run_id).info.status
        with mlflow.start_run(run_id=run_id):
            logged = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(Path(__file__).with_name("logged_model.py")),  # models from code: no pickle
                artifacts={WEIGHTS: str(weights)},
                code_paths=_code_paths(Path(tmp)),
                pip_requirements=requirements(),
                signature=signature(task_type, info),
                metadata={"task": info["task"], "base_model": base_model},
            )
        if status != "FINISHED":
            client.update_run(run_id, status=status)
    return logged.model_uri


class _Config:
    """A saved config.json read as the attributes model_task reads."""

    def __init__(self, settings: dict):
        self.finetune_flow = settings.get("finetune_flow")
        self.num_labels = len(settings.get("id2label") or {})
        self.id2label = {int(k): v for k, v in (settings.get("id2label") or {}).items()}


def load_registered(model_uri: str, trust_remote_code: bool = False, opt_in: str = "set model.trust_remote_code=true"):
    """(model, tokenizer) of a registered model, e.g. models:/name@champion, from its plain weight files.

    A model that needs its own code is refused unless opted in; weights kept as a pickle are refused always.
    """
    return load_logged_model(model_uri, trust_remote_code, opt_in)
