"""What each step hands on: one frozen dataclass per step result, read by attribute.

Results are small (paths, fingerprints, counts), so Prefect passes them between tasks as they are.
A cached step's cache manifest stays the JSON dict its `make` wrote; `from_manifest` builds the result
from it and keeps entries written before a field existed loadable (a missing field takes its default,
a key no field names is left out). `tasks.runtime.logs.timed` sets `seconds`.

Dicts remain only for data keyed by a name (split, metric, label, quarantine reason) and for what the
task type or the Trainer shapes: the target spec, per-split counts and length statistics, the output rule,
the clean step's task facts, the log history. This module imports no step module: every step and flow can.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

R = TypeVar("R", bound="CachedStepResult")


@dataclass(frozen=True, kw_only=True)
class StepResult:
    """Every step's result: the step body's wall time."""

    seconds: float | None = None  # set by tasks.runtime.logs.timed; None where the body was called without it


@dataclass(frozen=True, kw_only=True)
class CachedStepResult(StepResult):
    """A step whose output lives in the cache: the entry's key and whether it was re-used rather than built."""

    key: str
    reused: bool

    @classmethod
    def from_manifest(cls: type[R], meta: dict, **own: Any) -> R:
        """The result from a cache entry's metadata and the step's own values (paths, key, reused; they win)."""
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in meta.items() if k in names}, **own})


@dataclass(frozen=True, kw_only=True)
class IngestResult(CachedStepResult):
    """ingest: the raw frame and how many rows the reader handed on."""

    # where the raw frame is and what was read
    path: str
    source: str = ""
    format: str = ""
    # rows: read = out + not_data; undecodable and NUL-byte rows are handed on flagged, for the clean step
    rows_read: int
    rows_out: int
    rows_not_data: int = 0
    not_data_why: str | None = None
    rows_undecodable: int = 0
    rows_nul_byte: int = 0


@dataclass(frozen=True, kw_only=True)
class CleanResult(CachedStepResult):
    """clean: the kept rows, the quarantine and where every row went."""

    # the kept rows (clean.parquet) and the quarantined ones with their reason (quarantine.csv)
    path: str
    quarantine: str
    # rows: in = kept + quarantined; quarantined rows counted by reason
    rows_in: int
    rows_kept: int
    rows_quarantined: int
    quarantine_reasons: dict[str, int]
    # the task type's own facts about the clean rows (token classification: tag_scheme, tags_repaired, sentences_repaired)
    task_facts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, meta: dict, **own: Any) -> CleanResult:
        """As for every step; the task type's facts sit beside the counts in the manifest and are gathered into task_facts."""
        names = {f.name for f in fields(cls)}
        facts = {k: v for k, v in meta.items() if k not in names}
        return cls(**{**{k: v for k, v in meta.items() if k in names}, "task_facts": facts, **own})


@dataclass(frozen=True, kw_only=True)
class SplitResult(CachedStepResult):
    """split: the train/validation/test files and the target encoding they fix."""

    # split name -> Parquet file
    paths: dict[str, str]
    # rows: in = sum of the splits' rows + not_sampled (left out by data.max_rows)
    rows_in: int
    rows_not_sampled: int = 0
    # the task type's target spec (label order, scaling, tag scheme) and its label list ([] where it has none)
    target: dict[str, Any]
    labels: list[str]
    # split name -> {"rows": n, "groups": n when grouped, and the task type's own counts: per_class, empty_label_sets, target, words}
    splits: dict[str, dict[str, Any]]
    # what kept rows together in one split (data.group_column, or the task type's grouping), None when rows split freely
    grouped_by: str | None = None

    @property
    def sizes(self) -> dict[str, int]:
        """Rows in each split, by split name."""
        return {name: part["rows"] for name, part in self.splits.items()}


@dataclass(frozen=True, kw_only=True)
class TokenizeResult(CachedStepResult):
    """tokenize: the tokenized splits, the length they were cut to and why, and how long the texts were."""

    # split name -> Arrow dataset folder; split name -> .npy of every input's full length in tokens
    paths: dict[str, str]
    length_files: dict[str, str]
    # split name -> the split's rows (Parquet) the Arrow data was made from (types whose evaluation reads the examples)
    sources: dict[str, str] = field(default_factory=dict)
    # the split's target spec and labels, handed on to training
    labels: list[str]
    target: dict[str, Any]
    # tokens per text (or per window) and how long texts are read (truncate, chunk or windows), each with the reason
    max_length: int
    max_length_why: str = "as set"
    long_text: str = "truncate"
    long_text_why: str = "truncate"
    text_pair: bool = False
    # split name -> length statistics (p50, p95, max, truncated, fraction_truncated, and the task type's window counts)
    lengths: dict[str, dict[str, Any]]
    # split name -> chunked texts and their windows (train.long_text=chunk only)
    windows: dict[str, dict[str, int]] = field(default_factory=dict)
    # the task type's own encoding figures (question answering: doc_stride)
    encoding: dict[str, Any] = field(default_factory=dict)

    @property
    def texts_truncated(self) -> int:
        """Texts longer than max_length, over all splits."""
        return sum(stats["truncated"] for stats in self.lengths.values())


@dataclass(frozen=True, kw_only=True)
class ReportResult(CachedStepResult):
    """report: the folder holding data_report.json, data_report.md and token_lengths.png."""

    path: str
    texts_truncated: int


@dataclass(frozen=True, kw_only=True)
class BaselineResult(CachedStepResult):
    """baseline: the classical model's metrics, split name -> metric name -> value (validation and test)."""

    metrics: dict[str, dict[str, float]]


@dataclass(frozen=True, kw_only=True)
class TrainResult(CachedStepResult):
    """fine_tune: the saved model, what it was trained for and how the training went."""

    # the saved model folder and what it was trained for
    path: str
    task: str
    labels: list[str]
    max_length: int
    long_text: str = "truncate"
    trust_remote_code: bool = False
    # where and how it trained
    device: str
    precision: str
    nproc: int = 1  # processes that trained it (torchrun's train.nproc or Ray's train.workers)
    runner: str = "local"  # train.runner: local (one process or torchrun) or ray
    frozen_parameters: int = 0
    # the peak learning rate it trained at (train.learning_rate=auto: the range test's pick), why, the range test's seconds,
    # and the layer-wise decay (train.layer_lr_decay=auto: the task type's)
    learning_rate: float | None = None
    learning_rate_why: str = ""
    lr_range_seconds: float | None = None
    layer_lr_decay: float = 1.0
    # the batch per process it trained at (train.batch_size=auto: the largest that fits a GPU) and why
    batch_size: int | None = None
    batch_size_why: str = ""
    loss_weights: dict[str, float] | None = None
    # how long, from which checkpoint, and the chosen number of epochs with the reason
    resumed_from: str | None
    train_seconds: float | None
    train_samples_per_second: float | None
    train_loss: float | None = None
    epochs_run: float | None
    epochs_planned: float | None = None
    epochs_why: str = ""
    # the best epoch: its checkpoint, the metric that picked it and its validation value
    best_checkpoint: str | None = None
    best_metric_name: str
    best_val_metric: float | None
    # the Trainer's log history (learning curves), one dict per logged step
    history: list[dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class EvaluationResult(CachedStepResult):
    """evaluate: the model's metrics per split and the output rule fixed on validation."""

    task: str
    # split name -> metric name -> value (or the task type's nested per-class tables)
    metrics: dict[str, dict[str, Any]]
    # the output rule tuned on validation (temperature, thresholds), {} where the task type has none
    decision: dict[str, Any]
    # explained validation rows: {"metrics": explain_*, "top_words", "rows", "seconds_per_row"}; {} when none were
    explanations: dict[str, Any] = field(default_factory=dict)
    # the folder of metrics.json, decision.json and the plots
    artifacts: str


@dataclass(frozen=True, kw_only=True)
class ScoreResult(CachedStepResult):
    """score: a registered version's metrics on new labelled rows (flows/evaluate.py)."""

    model_uri: str
    rows: int
    # metric name -> value (and the task type's nested tables), as the evaluate step writes them
    metrics: dict[str, Any]
    # the folder of metrics.json and the plots
    artifacts: str


@dataclass(frozen=True, kw_only=True)
class LogRunResult(StepResult):
    """log_run: how many metric points went onto the run."""

    metrics_logged: int


@dataclass(frozen=True, kw_only=True)
class RegisterResult(StepResult):
    """register: the registered version and the gate's decision."""

    model_name: str
    model_version: int
    promoted: bool
    alias: str | None  # the alias moved to this version (also set when it holds it already), else None
    reasons: list[str]

    def outcome(self) -> dict:
        """The registration as the run summaries show it (--summary-json): name, version, promoted, alias, reasons."""
        return {k: v for k, v in asdict(self).items() if k != "seconds"}


@dataclass(frozen=True, kw_only=True)
class LogSweepResult(StepResult):
    """log_sweep: how many trials went onto the sweep's parent run."""

    trials_logged: int


@dataclass(frozen=True, kw_only=True)
class DataSteps:
    """The data steps every run and every sweep shares, in the order they run."""

    ingest: IngestResult
    clean: CleanResult
    split: SplitResult
    tokenize: TokenizeResult
    report: ReportResult
    baseline: BaselineResult

    def by_name(self) -> dict[str, CachedStepResult]:
        """Each step's result under its step name, in the order the steps ran."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, kw_only=True)
class RunSteps(DataSteps):
    """The cached steps of one run: the data steps, then fine-tune and evaluate."""

    fine_tune: TrainResult
    evaluate: EvaluationResult
