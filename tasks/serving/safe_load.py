"""Load a logged transformers model without running any code that came with it.

`mlflow.transformers.load_model` turns `trust_remote_code` on by itself when the MLmodel file
names a class transformers does not know, so a copied model folder with an `auto_map` entry
runs its own Python file on load. Here the artifacts are downloaded as plain files, checked,
and loaded with transformers' Auto classes with `trust_remote_code` off unless the caller opts in.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from schemas.errors import ConfigError

# Where a logged model keeps its weights: the pyfunc's artifacts (this project's models), or the MLflow transformers
# flavour's folders (versions registered before the pyfunc, and copied-in models).
WEIGHTS_DIRS = ("artifacts/weights", "model")
TOKENIZER_DIR = "components/tokenizer"
PICKLED = ("pytorch_model.bin", "tf_model.h5", "model.ckpt", "flax_model.msgpack", "pytorch_model.bin.index.json")


def _json(path: Path) -> dict:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _flavour_classes(folder: Path) -> list[str]:
    """The class names the MLmodel file asks for (model and components)."""
    try:
        mlmodel = yaml.safe_load((folder / "MLmodel").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    flavour = (mlmodel.get("flavors") or {}).get("transformers") or {}
    return [
        str(v)
        for k, v in flavour.items()
        if (k == "model_type" or k.endswith("_type")) and isinstance(v, str) and k != "pipeline_model_type"
    ]


def remote_code_reasons(folder: Path) -> list[str]:
    """Why loading the logged model in folder would need code from the model itself (empty: it would not)."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    folder = Path(folder)
    reasons = []
    for part in (*WEIGHTS_DIRS, TOKENIZER_DIR, "."):
        for name in ("config.json", "tokenizer_config.json"):
            path = folder / part / name
            settings = _json(path) if path.is_file() else {}
            where = str(Path(part) / name).removeprefix("./")
            if "auto_map" in settings:
                reasons.append(f"{where} has an auto_map entry")
            if name == "config.json" and settings and settings.get("model_type") not in CONFIG_MAPPING_NAMES:
                reasons.append(f"{where} names model_type {settings.get('model_type')!r}, which transformers does not know")
            tokenizer_class = settings.get("tokenizer_class") if name == "tokenizer_config.json" else None
            if tokenizer_class and not hasattr(transformers, tokenizer_class):
                reasons.append(f"{where} names tokenizer_class {tokenizer_class!r}, which transformers does not have")
    for cls in _flavour_classes(folder):
        if not hasattr(transformers, cls):
            reasons.append(f"MLmodel names class {cls!r}, which transformers does not have")
    return sorted(set(reasons))


def weights_folder(folder: Path) -> Path:
    """The folder holding config.json and the weights inside a downloaded logged model (or the folder itself)."""
    return next((folder / part for part in WEIGHTS_DIRS if (folder / part / "config.json").is_file()), folder)


def refuse_pickles(weights: Path, model_uri: str, option: str = "") -> None:
    """Weights stored only as a pickle are refused with one line: unpickling can run code, whatever the loader's setting."""
    if not weights.is_dir() or any(weights.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in weights.iterdir() if p.name in PICKLED or p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt"))
    if pickled:
        raise ConfigError(
            f"model {model_uri} keeps its weights as a pickle ({', '.join(pickled)}), which can run code when it is read: refused, "
            "nothing from it was loaded; save the weights as safetensors (save_pretrained does by default)"
            + (f", or set {option} to a model that has them" if option else "")
        )


def load_weights(weights: Path, model_uri: str, trust_remote_code: bool = False, tokenizer: Path | None = None):
    """(model, tokenizer) from a folder of plain weights (its tokenizer beside them unless given), built by the class of
    the task it was trained for."""
    from transformers import AutoTokenizer

    from task_types import TASK_TYPES
    from task_types.inference import task_of

    refuse_pickles(weights, model_uri)
    task = task_of(_json(weights / "config.json"))
    if task not in TASK_TYPES:
        raise ConfigError(f"model {model_uri} was trained for task {task!r}, which this version does not know: {sorted(TASK_TYPES)}")
    model = TASK_TYPES[task].model_class().from_pretrained(str(weights), trust_remote_code=trust_remote_code, use_safetensors=True)
    return model, AutoTokenizer.from_pretrained(str(tokenizer or weights), trust_remote_code=trust_remote_code)


def load_folder(folder: Path, model_uri: str, trust_remote_code: bool, opt_in: str):
    """(model, tokenizer) from a downloaded logged model, built by the class of the task it was trained for; refuses one
    that needs its own code or keeps its weights as a pickle."""
    folder = Path(folder)
    reasons = remote_code_reasons(folder)
    if reasons and not trust_remote_code:
        raise ConfigError(
            f"model {model_uri} needs code from its own files to load ({'; '.join(reasons)}); refused, "
            f"nothing from it was run: if you trust it, {opt_in}"
        )
    tokenizer = folder / TOKENIZER_DIR if (folder / TOKENIZER_DIR).is_dir() else None
    return load_weights(weights_folder(folder), model_uri, trust_remote_code, tokenizer)


def load_logged_model(model_uri: str, trust_remote_code: bool = False, opt_in: str = "set trust_remote_code"):
    """Download model_uri (models:/, runs:/ or a local folder) as files and load it with load_folder."""
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory(prefix="ff-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
        return load_folder(Path(local), model_uri, trust_remote_code, opt_in)
