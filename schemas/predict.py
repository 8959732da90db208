"""The typed options of flows/predict.py: what the CLI parses and the predict flow takes (one object, as the
fine-tune flow takes FinetuneConfig)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.config import EVAL_BATCH_SIZE, FinetuneConfig, RegistryConfig

PREDICT_CHUNK_ROWS = 10_000  # rows read, predicted and written at a time: memory stays flat in the input size


def model_uri(model: str | None, name: str, alias: str, version: int | None) -> str:
    """models:/NAME@ALIAS by default; a version or a full URI when given."""
    if model:
        return model
    return f"models:/{name}/{version}" if version is not None else f"models:/{name}@{alias}"


class PredictConfig(BaseModel):
    """One batch prediction: the file in and out, the registered model, how the input is read and run."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    input: str = Field(description="file of rows: CSV/TSV/JSONL/JSON/Parquet")
    output: str = Field(description="where input columns + predictions go; format from the extension")
    model: str | None = Field(None, description="full model URI (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/...)")
    name: str = Field(RegistryConfig().model_name, description="registered model name")
    alias: str = Field(RegistryConfig().alias, description="alias of the version to use")
    version: int | None = Field(None, ge=1, description="a registered version number instead of the alias")
    tracking_uri: str | None = Field(None, description="MLflow store (None: MLFLOW_TRACKING_URI or the project's mlruns/mlflow.db)")
    columns: dict[str, str | None] = Field(
        default_factory=dict, description="input role (text, text_pair, ...) -> the column holding it; unset: as trained"
    )
    input_format: Literal["auto", "csv", "tsv", "jsonl", "json", "parquet"] = Field("auto", description="input format")
    encoding: str = Field("utf-8", description="text encoding of CSV/TSV/JSONL input")
    batch_size: int = Field(EVAL_BATCH_SIZE, gt=0, description="inputs per forward pass")
    max_length: int | None = Field(None, gt=0, description="tokens read per input (None: as the model was trained)")
    trust_remote_code: bool = Field(False, description="allow a model whose files carry their own code to run it")
    chunk_rows: int = Field(
        PREDICT_CHUNK_ROWS, gt=0, description="rows read, predicted and written at a time (runner ray: a chunk, one task and one part file)"
    )
    pre_tokenized: bool = Field(False, description="token_classification: JSON lists in text cells are words as given")
    runtime: Literal["torch", "onnx"] = Field("torch", description="torch, or onnxruntime on the model exported to ONNX")
    quantize: Literal["int8", "none"] = Field("int8", description="with runtime onnx: int8 or fp32")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="torch runtime: bf16 autocast (auto: where the CPU has it)")
    output_prefix: str = Field("", description="prefix of the output columns (when the input has columns of the same names)")
    top_k: int = Field(1, ge=1, description="question_answering: also the N best answers (top_answers)")
    explain: bool = Field(False, description="add `explanation`: each row's words with their integrated-gradients attribution")
    explain_top: int | None = Field(None, ge=1, description="with explain: only the K words of largest attribution (in word order)")
    cache_dir: str | None = Field(None, description="where ONNX exports are cached (default: the project's .cache)")
    runner: Literal["local", "ray"] = Field("local", description="local: this process; ray: a pool of Ray actors over chunks of the input")
    workers: int = Field(2, ge=1, le=4096, description="runner ray: actors that each load the model once")
    worker_cpus: float = Field(1.0, gt=0, description="runner ray: CPUs per actor (its torch threads)")
    worker_gpus: float = Field(0.0, ge=0, description="runner ray: GPUs per actor")
    ray_address: str | None = Field(None, description="runner ray: the cluster (default: $RAY_ADDRESS, else a local Ray for the run)")
    id_column: str | None = Field(None, description="runner ray: the input's own id column (default: row_id, each row's 0-based position)")
    output_format: Literal["csv", "jsonl", "parquet"] | None = Field(
        None, description="runner ray: the part files' format (default parquet)"
    )

    @model_validator(mode="after")
    def _onnx_options(self) -> PredictConfig:
        if self.runtime != "onnx" and self.quantize != "int8":
            raise ValueError("--quantize applies to --runtime onnx only")
        if self.explain and self.runtime == "onnx":
            raise ValueError("--explain needs the model's gradients, which the ONNX runtime does not give: use --runtime torch")
        if self.explain_top is not None and not self.explain:
            raise ValueError("--explain-top applies with --explain only")
        ray_only = {"id_column": "--id-column", "output_format": "--output-format", "ray_address": "--ray-address"}
        stray = [flag for name, flag in ray_only.items() if getattr(self, name) is not None and self.runner != "ray"]
        if stray:
            raise ValueError(f"{', '.join(stray)} apply with --runner ray only")
        if self.runner == "ray" and self.runtime == "onnx":
            raise ValueError("--runner ray runs the torch model: drop --runtime onnx")
        return self

    def model_uri(self) -> str:
        return model_uri(self.model, self.name, self.alias, self.version)


class EvaluateConfig(BaseModel):
    """Scoring registered versions on a new labelled file: the data read as training reads it (task, data, cache,
    tracking, runtime of a FinetuneConfig), which versions, and whether a model's own code may run."""

    model_config = ConfigDict(extra="forbid")

    run: FinetuneConfig = Field(description="task, data (the new labelled file and how to read it), cache, tracking and runtime")
    name: str = Field(RegistryConfig().model_name, description="registered model name")
    versions: list[str] = Field(
        description="version numbers or @aliases to score (two: compared on the same rows)", min_length=1, max_length=2
    )
    trust_remote_code: bool = Field(False, description="allow a model whose files carry their own code to run it")
