"""The fine-tuned model as ONNX for serving: exported with torch.onnx, optionally quantized to int8 (onnxruntime's
dynamic quantization: int8 weights, activations quantized per batch), and run by onnxruntime as a drop-in for the
torch model in batch inference (task_types/inference.py calls `model(**batch).logits` on either)."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from schemas.errors import ConfigError
from task_types import get_task_type
from task_types.inference import INPUT_FEATURES, model_task

ONNX_OPSET = 17
EXPORT_REVISION = 1  # bump when the export changes: cached exports are keyed by it
QUANTIZE_CHOICES = ("int8", "none")
ONNX_FILES = {"none": "model.onnx", "int8": "model.int8.onnx"}


def weights_digest(model) -> str:
    """A short digest of the model's weights: which export in the cache belongs to which model."""
    digest = hashlib.sha256(f"opset {ONNX_OPSET} revision {EXPORT_REVISION}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def export_onnx(model, tokenizer, folder: Path, quantize: str = "int8") -> Path:
    """Write model.onnx (fp32; dynamic batch and sequence axes), model.int8.onnx when quantize=int8, the tokenizer and
    the config (with the task, output rule and label names) into folder; returns the file predict should run.
    A model the exporter cannot trace is a ConfigError naming why."""
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize={quantize!r}: choose one of {list(QUANTIZE_CHOICES)}")
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ONNX_FILES.values():  # an earlier export's files must not sit beside this model's
        (folder / stale).unlink(missing_ok=True)
    try:
        _export(model, tokenizer, folder, quantize)
    except (RuntimeError, ValueError, TypeError, NotImplementedError, AttributeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"cannot export {type(model).__name__} to ONNX: {first[:300]}; predict with --runtime torch") from None
    finally:  # a failed export (a full disk among others) leaves no half-written file behind
        for partial in folder.glob("*.partial"):
            partial.unlink(missing_ok=True)
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "export.json").write_text(
        json.dumps({"opset": ONNX_OPSET, "inputs": _input_names(tokenizer), "quantize": quantize, "file": ONNX_FILES[quantize]}, indent=1)
    )
    return folder / ONNX_FILES[quantize]


def _input_names(tokenizer) -> list[str]:
    return [n for n in INPUT_FEATURES if n in tokenizer.model_input_names]


def _export(model, tokenizer, folder: Path, quantize: str) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    partial = folder / "model.onnx.partial"
    sample = tokenizer(["an example text to trace the model with", "another one"], padding=True, return_tensors="pt")
    names = [n for n in _input_names(tokenizer) if n in sample]
    outputs = get_task_type(model_task(model.config)["task"]).onnx_outputs  # names and dynamic axes (a tag per piece: a sequence axis)
    model = model.float().eval()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes: not the user's concern
        torch.onnx.export(
            model,
            (),
            str(partial),
            kwargs={n: sample[n] for n in names},
            input_names=names,
            output_names=list(outputs),
            dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, **outputs},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    partial.replace(folder / ONNX_FILES["none"])
    check_against_torch(model, tokenizer, folder / ONNX_FILES["none"], names)
    if quantize == "int8":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(
                folder / ONNX_FILES["none"],
                folder / "model.int8.onnx.partial",
                weight_type=QuantType.QInt8,
                per_channel=True,  # a scale per output column: 97.9% vs 95.5% labels as torch on a weak model (bench/README.md)
                op_types_to_quantize=["MatMul"],  # the embedding lookups (Gather) stay fp32
                nodes_to_exclude=fp32_matmuls(folder / ONNX_FILES["none"]),
            )
        (folder / "model.int8.onnx.partial").replace(folder / ONNX_FILES["int8"])


def fp32_matmuls(path: Path) -> list[str]:
    """The MatMul nodes int8 leaves in fp32, for labels that agree with the torch model (bench/README.md: 99.3% vs
    98.3% when all weights are int8, on a model at 0.82 accuracy):
    - those with no weight among their inputs (attention's query x key and scores x value): quantizing them
      quantizes activations twice per batch, slower and less exact;
    - every MatMul of the first and the last encoder layer, where the input is closest to the embeddings and the
      output feeds the head;
    - each layer's feed-forward output projection (the widest activations, the largest quantization error)."""
    import re

    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    matmuls = [node for node in graph.node if node.op_type == "MatMul"]
    layers = {int(m.group(1)) for node in matmuls if (m := re.search(r"/layer\.(\d+)/", node.name))}
    edges = {f"/layer.{i}/" for i in ({min(layers), max(layers)} if layers else set())}
    return [
        node.name
        for node in matmuls
        if not any(name in weights for name in node.input)
        or any(edge in node.name for edge in edges)
        or (node.name.endswith("/output/dense/MatMul") and "/attention/" not in node.name)
    ]


def check_against_torch(model, tokenizer, path: Path, names: list[str]) -> None:
    """The fp32 export on a batch of another size and length than the trace's must give the torch model's logits
    (a shape the tracer fixed into the graph would not)."""
    texts = ["a third text, longer than both texts the export was traced with, to vary the length", "short", "two words"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = model(**{n: batch[n] for n in names})
    got = OnnxModel(path, model.config)(**{n: batch[n] for n in names})
    for name in got.names:
        want, have = getattr(expected, name).float().numpy(), getattr(got, name).numpy()
        if have.shape != want.shape or not np.allclose(have, want, atol=1e-3):
            raise RuntimeError(
                f"the ONNX graph's {name} disagree with the torch model on a new batch shape {tuple(batch['input_ids'].shape)}"
            )


def cached_export(model, tokenizer, cache_dir: Path, quantize: str) -> Path:
    """The model's ONNX file under cache_dir/onnx/<weights digest>: exported (fp32 and int8 both) on first use and
    published like any cache entry (a scratch folder renamed into place under a lock, a sha256 per file): a damaged
    export (a truncated or overwritten .onnx) is found, logged and exported again, never loaded."""
    from tasks.runtime.cache import StepCache

    def make(folder: Path) -> dict:
        export_onnx(model, tokenizer, folder, "int8")
        return {"revision": EXPORT_REVISION}

    entry = StepCache(Path(cache_dir), "onnx", weights_digest(model)).build(make)
    return entry.path / ONNX_FILES[quantize]


class OnnxOutput(SimpleNamespace):
    """The session's outputs as torch tensors, by name (logits; start_logits and end_logits), as the torch model gives them."""

    @property
    def names(self) -> list[str]:
        return list(vars(self))


class OnnxModel:
    """An onnxruntime session that batch inference can call like the torch model: model(**batch).logits."""

    def __init__(self, path: Path, config, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.config = config

    def to(self, device: str) -> OnnxModel:
        if device != "cpu":
            raise ValueError("--runtime onnx runs on the CPU (onnxruntime's CPU provider)")
        return self

    def eval(self) -> OnnxModel:
        return self

    def __call__(self, **batch) -> SimpleNamespace:
        feeds = {k: np.asarray(v.cpu().numpy(), dtype=np.int64) for k, v in batch.items() if k in self.inputs}
        found = self.session.run(self.outputs, feeds)
        return OnnxOutput(**{name: torch.from_numpy(value) for name, value in zip(self.outputs, found)})
