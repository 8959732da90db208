"""The task-type protocol and the helpers every task type shares.

A task type owns everything that depends on the shape of its inputs and outputs. The steps ask the run's
type, in the order the flow runs them:

  config    options (pydantic mixins composed into the config's sections), check_config, gates, compare_on
  ingest    formats it reads itself (read_source), which source columns make text/text_pair/label (fields),
            and how a cell becomes the raw frame's string (raw_text, raw_label)
  clean     clean_rows (canonical inputs and target, or the quarantine reason), clean_options, clean_summary,
            check_usable; its reasons are declared in `reasons`
  split     strata, group_key (rows that must share a split), target_spec, target_summary
  tokenize  plan_encoding (max_length, how long inputs are read), encode_split (columns for the model)
  train     model_class, head_config, collator, loss_weights, initial_bias, weighted_loss, training_metrics_fn
  evaluate  run_features (the model over a tokenized split), calibrate, outputs, fit_decision, score, evaluate
  baseline  baseline (its classical model on the same split)
  predict   predict_inputs (the input columns), unusable (rows that get no prediction), run_rows, predict_columns,
            output_schema; rescore (a champion on the candidate's validation rows)
  serving   onnx_outputs
  report    report_facts, report_lines; the card: card_section, card_metrics, card_limits, card_input_limits

Every method is a declared hook with a default here or in the shared sequence-level base (task_types/sequence.py):
no step asks for a type by name or probes for a method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from schemas.errors import ConfigError, DataError

# Metrics where lower is better: their gate is a ceiling, and beating the champion means going lower.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "hamming_loss", "ece", "loss"})


class Options(BaseModel):
    """A task type's own config keys, composed into one section of the config (schemas/config.py): the same rules as
    every section (unknown keys and non-finite numbers refused)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


@dataclass(frozen=True)
class Gate:
    """One gate: a validation metric, its bound (floor, or ceiling when lower is better) and the option that sets it."""

    metric: str
    bound: float
    option: str

    @property
    def ceiling(self) -> bool:
        return self.metric in LOWER_IS_BETTER


@dataclass(frozen=True)
class Fields:
    """Which source columns make the raw frame's text, text pair and label, and the option naming each (for errors)."""

    text: list[str]
    text_option: str
    label: list[str]
    label_option: str
    text_pair: str | None = None
    text_pair_option: str = "data.text_pair_column"


@dataclass(frozen=True)
class Runner:
    """Where and how a model runs for evaluation, re-scoring and predict."""

    batch_size: int = 128
    device: str = "cpu"
    bf16: bool = False


@dataclass
class Encoded:
    """One split as model inputs: Arrow columns (a row per model input), each input's full length in tokens, and
    the figures the data report shows (truncated, windows, ...)."""

    columns: dict[str, list]
    lengths: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)


class TaskType:
    """What one kind of task needs from the pipeline. Methods are pure where they can be: frames and arrays in, values out.

    `spec` is the target's encoding fixed by the split step (label order, the regression scaling) and `decision` the
    output rule fixed on validation (multi-label thresholds); both travel with the model.
    """

    name: str = ""
    title: str = ""  # one line for the model card and --help
    help: str = ""  # what `task=<name>` means, for --help
    problem_type: str = ""  # transformers' config.problem_type: picks the head's loss
    training_revision = 1  # bump when the type changes how it trains (a new head start, loss): the fine-tune cache key follows
    compare_on: str = ""  # default registry.compare_on: picks the best epoch and beats the champion
    headline: tuple[str, ...] = ()  # the metrics a person reads first (summary, card, gate artifact)
    metric_names: tuple[str, ...] = ()  # every validation metric a gate or registry.compare_on may name
    training_metric_names: tuple[str, ...] = ()  # those computed at each evaluation during training
    reasons: tuple[str, ...] = ()  # quarantine reasons this type can give for a row
    strict_strata: bool = False  # a stratum too small to split is an error (classes) rather than merged (bins)
    baseline_name: str = "TF-IDF baseline"  # what `baseline` fits, as the summary, the gate and the card name it
    summary_f1: str | None = None  # the metric the run summary's legacy val_f1/test_f1 fields carry (None: they are null)
    auto_model: str = "AutoModelForSequenceClassification"  # the transformers class that builds and loads the model
    formats: tuple[str, ...] = ()  # data.format values this type reads itself (read_source)
    extensions: ClassVar[dict[str, str]] = {}  # file extensions of those formats, e.g. {".conll": "conll"}
    feature_columns: tuple[str, ...] = ("row_id",)  # bookkeeping columns of the tokenized data the model never sees
    onnx_outputs: ClassVar[dict[str, dict[int, str]]] = {"logits": {0: "batch"}}  # ONNX output names and their dynamic axes
    default_layer_lr_decay = 1.0  # train.layer_lr_decay=auto
    lr_pick_divisor = 10.0  # train.learning_rate=auto: the rate at the range test's lowest (steady) loss divided by this
    encoding_options: tuple[str, ...] = ()  # train.* keys of this type that change the encoding (tokenize's cache key)
    # Per config section, the pydantic mixin holding this type's own keys (composed into that section).
    options: ClassVar[dict[str, type[Options]]] = {}

    def for_target(self, spec: dict) -> TaskType:
        """The type as it applies to one target encoding (token_classification on plain tags has other gates)."""
        return self

    def model_class(self):
        import transformers

        return getattr(transformers, self.auto_model)

    def collator(self, tokenizer, pad_to_multiple_of: int | None = None):
        """Pads each batch to its own longest input (rounded up to a multiple of pad_to_multiple_of when given)."""
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    # ---- config ------------------------------------------------------------------------------------
    def check_config(self, cfg) -> None:
        """Raise ValueError for options that do not fit this task type (the type's own options are checked by their owner)."""
        registry = cfg.registry
        named = [*(registry.gates or {}), *([registry.compare_on] if registry.compare_on else [])]
        unknown = sorted({m for m in named if m not in self.metric_names})
        if unknown:
            raise ValueError(
                f"registry.gates / registry.compare_on name {unknown}, not metrics of task={self.name}; "
                f"choose from {list(self.metric_names)}"
            )

    def default_gates(self, registry) -> list[Gate]:
        raise NotImplementedError

    def gates(self, registry) -> list[Gate]:
        """registry.gates when set, else this type's defaults."""
        if registry.gates:
            return [Gate(metric, float(bound), f"registry.gates.{metric}") for metric, bound in registry.gates.items()]
        return self.default_gates(registry)

    # ---- ingest --------------------------------------------------------------------------------------
    def fields(self, data) -> Fields:
        """The source columns of the raw frame: data.text_column (one or several, joined), data.text_pair_column, data.label_column."""
        return Fields(
            text=data.text_columns(),
            text_option="data.text_column",
            label=[str(data.label_column)],
            label_option="data.label_column",
            text_pair=None if data.text_pair_column is None else str(data.text_pair_column),
        )

    def nested_fields(self) -> frozenset[str]:
        """Raw fields whose cells may hold lists or structs (turned into JSON by raw_text / raw_label)."""
        return frozenset()

    def detect_format(self, path: Path, fmt: str) -> str:
        """The format a file is read as, given the one told from its extension (a type may recognise its own shape)."""
        return fmt

    def read_source(self, path: Path, fmt: str, data, encoding: str, errors: str) -> pd.DataFrame:
        """A frame of the source for a format in `formats`; its columns are those `fields` names for that format."""
        raise DataError(f"data.format={fmt} is not read by task={self.name}")

    def format_fields(self, fmt: str, data) -> Fields:
        """The fields of a frame read by read_source (default: as for any table)."""
        return self.fields(data)

    def raw_text(self, cells: list[pd.Series], source_name: str) -> pd.Series:
        """The raw text of each row from the text columns: one column's cells as strings, or several joined one per line."""
        if len(cells) == 1:
            return as_text(cells[0])
        parts = [[None if pd.isna(v) else v for v in as_text(c)] for c in cells]
        return pd.Series(
            [None if all(p is None for p in row) else "\n".join(p for p in row if p) for row in zip(*parts)],
            index=cells[0].index,
            dtype=object,
        )

    def raw_label(self, frame: pd.DataFrame, columns: list[str], data, source_name: str) -> pd.Series:
        """The raw target of each row as a string (None when missing): the one label column's cells."""
        column = frame[columns[0]]
        if column.dtype == object and column.map(lambda v: isinstance(v, dict)).any():
            example = str(column[column.map(lambda v: isinstance(v, dict))].iloc[0])[:60]
            raise DataError(
                f"column '{columns[0]}' in '{source_name}' holds nested values (structs, e.g. {example}), not plain values: "
                "flatten it in the file or set data.label_column to another column"
            )
        if column.dtype == object and column.map(is_nested).any():
            raise DataError(f"column '{columns[0]}' in '{source_name}' holds lists of labels: {self.nested_label_hint()}")
        return as_text(column)

    def nested_label_hint(self) -> str:
        """What to change when the label column holds lists and this type takes one label per row."""
        return "set task=multi_label, or point data.label_column at a column with one label per row"

    # ---- clean ----------------------------------------------------------------------------------------
    def clean_rows(self, frame: pd.DataFrame, data) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
        """(canonical inputs: text and text_pair columns; canonical target string or None; quarantine reason or None) per row.

        frame holds raw_text (and raw_text_pair) and label (stripped) for rows no generic check has quarantined."""
        raise NotImplementedError

    def clean_options(self, data) -> dict:
        """This type's options that change what clean keeps (part of the clean step's cache key)."""
        return {}

    def clean_summary(self, raw: pd.DataFrame, kept: pd.DataFrame) -> dict:
        """Facts about the kept rows the data report shows (e.g. the detected tag scheme); checks their contract."""
        return {}

    def duplicate_key(self, kept: pd.DataFrame) -> pd.Series:
        """What makes two rows the same input (repeats are duplicates, or conflicts when their targets differ)."""
        if "text_pair" in kept:
            return kept["text"].astype(object) + "\x1f" + kept["text_pair"].astype(object)
        return kept["text"]

    reads_plain_text: bool = False  # its inputs are texts the tokenizer reads as they are (data.unknown_only applies)

    def unknown_only(self, tokenizer, kept: pd.DataFrame) -> pd.Series:
        """Kept rows whose text (or pair text) the tokenizer reads as unknown tokens only (for reads_plain_text types)."""
        return pd.Series(False, index=kept.index)

    def check_usable(self, labels: pd.Series, data) -> None:
        """Raise DataError when the kept targets cannot train this task type."""

    # ---- split -----------------------------------------------------------------------------------------
    def strata(self, labels: pd.Series) -> pd.Series:
        """The key splits are stratified by."""
        raise NotImplementedError

    group_name: str = ""  # what group_key keeps together, as the data report says it

    def group_key(self, frame: pd.DataFrame) -> pd.Series | None:
        """Rows sharing a key always fall in the same split (None: each row on its own). data.group_column wins."""
        return None

    def target_spec(self, labels: pd.Series, train_labels: pd.Series, data) -> dict:
        """The target encoding, fixed from the sampled rows and the train split."""
        raise NotImplementedError

    def target_summary(self, labels: pd.Series, spec: dict) -> dict:
        """What the data report shows of one split's targets."""
        raise NotImplementedError

    # ---- tokenize --------------------------------------------------------------------------------------
    def plan_encoding(self, tokenizer, train: pd.DataFrame, train_cfg) -> dict:
        """How inputs are encoded, fixed on the train split: {"max_length", "max_length_why", "long_text", "long_text_why", ...}."""
        raise NotImplementedError

    def encode_split(self, tokenizer, frame: pd.DataFrame, spec: dict, plan: dict, split: str) -> Encoded:
        """One split as model inputs and training targets."""
        raise NotImplementedError

    def encode(self, labels: pd.Series, spec: dict) -> list:
        """Training targets for the `labels` column of the tokenized data."""
        raise NotImplementedError

    def decode_truth(self, encoded, spec: dict) -> np.ndarray:
        """The tokenized `labels` column back in the units metrics are computed in."""
        return np.asarray(encoded)

    # ---- model and training ------------------------------------------------------------------------------
    def head_config(self, spec: dict) -> dict:
        """Keyword arguments for the model class: outputs, loss, label names."""
        raise NotImplementedError

    def initial_bias(self, encoded: list, weights: list[float] | None) -> list[float] | None:
        """Starting values of the head's output biases (None: the library's zeros)."""
        return None

    def loss_weights(self, encoded: list, spec: dict, setting) -> list[float] | None:
        """Per-output loss weights from train.class_weights (None: an unweighted loss)."""
        if setting not in ("auto", "none"):
            raise ConfigError(f"train.class_weights={setting!r} is for classification and multi_label; task={self.name} takes auto or none")
        return None

    def weighted_loss(self, logits, labels, weights):
        """The loss with per-class weights (cross-entropy; multi-label overrides with binary cross-entropy and pos_weight)."""
        import torch

        return torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), weight=weights)

    def training_metrics(self, logits, label_ids, spec: dict) -> dict:
        """Metrics computed at each evaluation during training; holds compare_on for the best epoch."""
        raise NotImplementedError

    def trainer_mixins(self) -> tuple[type, ...]:
        """Classes mixed into the Trainer before the recipe's own (a type whose evaluation needs the examples in order)."""
        return ()

    def training_metrics_fn(self, spec: dict, features, frame: pd.DataFrame):
        """The Trainer's compute_metrics for the validation features (frame: the validation split's rows)."""
        return lambda prediction: self.training_metrics(prediction.predictions, prediction.label_ids, spec)

    # ---- evaluation ------------------------------------------------------------------------------------------
    def eval_settings(self, eval_cfg) -> dict:
        """This type's evaluation options that shape its outputs; they travel with the model in its decision."""
        return {}

    def run_features(
        self, model, tokenizer, features, frame: pd.DataFrame, spec: dict, runner: Runner, settings: dict | None = None
    ) -> tuple[Any, Any]:
        """(truth in metric units, raw outputs such as logits) of one tokenized split (frame: its rows; settings: eval_settings)."""
        raise NotImplementedError

    def outputs(self, raw, spec: dict, decision: dict | None = None):
        """Raw outputs (logits) to what metrics and predict use (probabilities, values); decision may hold a temperature."""
        raise NotImplementedError

    def calibrate(self, truth, raw, spec: dict) -> dict:
        """Temperature scaling fitted on validation ({} where outputs are not probabilities)."""
        return {}

    def fit_decision(self, truth, outputs, spec: dict) -> dict:
        """The output rule tuned on validation (nothing to tune by default)."""
        return {}

    def score(self, truth, outputs, spec: dict, decision: dict) -> dict:
        """Every metric of one split (pure)."""
        raise NotImplementedError

    def evaluate(self, truth, outputs, spec: dict, decision: dict, split: str, folder: Path) -> dict:
        """score, plus this type's plots and tables written into folder."""
        raise NotImplementedError

    def truth_from_labels(self, labels: pd.Series, spec: dict):
        """Canonical targets (the clean step's strings) in the metric units of a model with this spec."""
        return self.decode_truth(self.encode(labels, spec), spec)

    # ---- baseline ----------------------------------------------------------------------------------------------
    def baseline(self, parts: dict[str, pd.DataFrame], spec: dict) -> dict:
        """Fit this type's classical model on parts["train"]; its outputs (same form as `outputs`) per split."""
        raise NotImplementedError

    # ---- predict -----------------------------------------------------------------------------------------------
    def predict_inputs(self, info: dict, given: dict[str, str | None]) -> dict[str, str]:
        """Input role -> column of the file to predict: as given on the command line, else as the model was trained."""
        raise NotImplementedError

    def trained_inputs(self, params: dict[str, str]) -> dict[str, str | None]:
        """The source columns the model was trained on, from the run's params: predict's default input columns."""

        def one(key: str) -> str | None:
            value = params.get(key)
            return None if value in (None, "None") or value.startswith("[") else value  # a joined list names no one column

        return {"text_column": one("data.text_column"), "text_pair_column": one("data.text_pair_column")}

    def predict_params(self) -> list[tuple[str, str, object]]:
        """(name, MLflow type, default) of this type's own predict options (predict's --top-k, the pyfunc's params)."""
        return []

    def input_options(self) -> dict[str, str]:
        """Input role -> the predict option that names its column."""
        return {"text": "--text-column", "text_pair": "--text-pair-column"}

    def unusable(self, rows: pd.DataFrame) -> tuple[pd.Series, str]:
        """(rows that get no prediction, why): rows with a null or empty input, as training's empty_text."""
        from task_types.text import no_content

        bad = pd.Series(False, index=rows.index)
        for column in rows.columns:
            bad |= no_content(rows[column].map(lambda v: None if not isinstance(v, (list, tuple, np.ndarray)) and pd.isna(v) else str(v)))
        return bad, "null or empty " + " or ".join(c.replace("_", " ") for c in rows.columns)

    def run_rows(self, model, tokenizer, rows: pd.DataFrame, info: dict, runner: Runner, options: dict | None = None):
        """The outputs predict_columns reads for rows of raw inputs (columns named by role: text, text_pair, ...)."""
        raise NotImplementedError

    def predict_columns(self, outputs, spec: dict, decision: dict, options: dict | None = None) -> dict[str, list]:
        """Output columns of flows/predict.py for predicted rows."""
        raise NotImplementedError

    def output_schema(self, spec: dict, options: dict | None = None) -> list[tuple[str, str]]:
        """(column, kind) of predict_columns, kind "string" or "double": the empty columns of unpredicted rows and the signature."""
        raise NotImplementedError

    def empty_columns(self, spec: dict) -> list[str]:
        """The names predict_columns gives."""
        return [name for name, _ in self.output_schema(spec)]

    def score_rows(self, model, tokenizer, frame: pd.DataFrame, info: dict, runner: Runner) -> tuple[Any, Any]:
        """(truth, outputs in the form score reads) of a registered model (info: its task, target and rule) on canonical
        rows (a split's, or a new labelled file's clean rows)."""
        outputs = self.run_rows(model, tokenizer, self.rows_for_rescoring(frame), info, runner)
        # The rows' targets in the model's encoding: labels the model does not know are never predicted.
        return self.truth_from_labels(frame["label"], info["target"]), outputs

    def rescore(self, model, tokenizer, frame: pd.DataFrame, info: dict, spec: dict, runner: Runner) -> dict:
        """Metrics of a registered model (info: its task, target and rule) on a candidate's validation rows (spec: theirs)."""
        truth, outputs = self.score_rows(model, tokenizer, frame, info, runner)
        return scalar_metrics(self.score(truth, outputs, info["target"], info["decision"]))

    def rows_for_rescoring(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A split's canonical rows as the input columns run_rows reads."""
        return frame[[c for c in ("text", "text_pair") if c in frame]]

    # ---- explanations (task_types/explain.py) ---------------------------------------------------------------------
    explain_batchable: bool = True  # its attribution targets do not depend on the input's length: rows batch together

    def explain_requests(self, tokenizer, rows: pd.DataFrame, outputs, info: dict) -> list:
        """The attributions to compute for rows of raw inputs and their outputs (run_rows'): one per predicted label,
        entity, value or answer boundary (task_types.explain.Request)."""
        raise NotImplementedError(f"task={self.name} has no explanations")

    def explain_output(self, model_output):
        """The model's output as one (batch, K) tensor the requests' selectors weigh."""
        return model_output.logits

    def explanation(self, attributions: list, top: int | None = None):
        """A row's explanation (JSON-able): [[word, score], ...] for one target, {name: [[word, score], ...]} for several."""
        if len(attributions) == 1 and attributions[0].request.name == "":
            return attributions[0].pairs(top)
        return {a.request.name: a.pairs(top) for a in attributions}

    def pick_explained(self, truth, outputs, spec: dict, decision: dict, n: int) -> tuple[list[int], list[int]]:
        """(the n most confident validation errors, n correct rows) to explain in every run."""
        return [], []

    def faithfulness(self, model, tokenizer, rows: pd.DataFrame, attributions: list, info: dict, runner: Runner, seed: int) -> dict:
        """ERASER's comprehensiveness (top 20% words removed), the same for random words, and sufficiency (only they kept),
        averaged over the attributions; {} where the type does not measure them."""
        return {}

    def describe(self, output, spec: dict, decision: dict) -> str:
        """One row's prediction, as a person reads it (the explanation page)."""
        return str(output)

    # ---- the data report and the model card --------------------------------------------------------------------
    def report_facts(self, clean, split, tokens) -> dict:
        """This type's part of the data report (JSON)."""
        return {}

    def report_lines(self, report: dict) -> list[str]:
        """This type's lines of the data report's markdown."""
        return []

    def card_section(self, spec: dict, decision: dict) -> str:
        """This type's part of the model card: what it predicts and how outputs are decided."""
        raise NotImplementedError

    def card_metrics(self, metrics: dict) -> str:
        """Extra metric tables for the card (per type or per tag)."""
        return ""

    def card_data_notes(self, facts: dict) -> list[str]:
        """What the card's Data section adds (a data set's licence and how to attribute it)."""
        return []

    def card_input_limits(self, facts: dict) -> list[str]:
        """What the card says about inputs longer than the model reads."""
        return []

    def card_limits(self) -> list[str]:
        return []


def label_head(spec: dict, problem_type: str) -> dict:
    """A head with one output per label of spec["labels"], their names in the model config."""
    labels = spec["labels"]
    return {
        "num_labels": len(labels),
        "problem_type": problem_type,
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }


def scalar_metrics(metrics: dict) -> dict[str, float]:
    """The numbers of a metrics dict (per-class tables and matrices left out)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)}


def as_text(column: pd.Series) -> pd.Series:
    """Cells as strings, nulls kept null; integral floats (JSON 1.0) read as integers ("1")."""

    def one(v):
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return None
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)

    if isinstance(column.dtype, pd.StringDtype):  # CSV/TSV cells: already text or null
        return column
    return column.map(one).astype(object)


def is_nested(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20.0), 241))
IMBALANCE_RATIO = 3.0  # train.class_weights=auto weighs classes when the largest is more than this times the smallest


def fit_temperature(nll) -> float:
    """The temperature on a log grid that minimises nll(T), refined once around the best point."""
    losses = [nll(t) for t in TEMPERATURES]
    best = int(np.argmin(losses))
    low, high = TEMPERATURES[max(best - 1, 0)], TEMPERATURES[min(best + 1, len(TEMPERATURES) - 1)]
    fine = np.linspace(low, high, 41)
    return float(fine[int(np.argmin([nll(t) for t in fine]))])


def weights_by_label(setting, labels: list[str]) -> list[float] | None:
    """train.class_weights given as {label: weight}: one weight per label, 1.0 for those not named."""
    unknown = sorted(set(setting) - set(labels))
    if unknown:
        raise ConfigError(f"train.class_weights names {unknown}, not labels of the data; labels are {labels}")
    return [float(setting.get(label, 1.0)) for label in labels]


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def merge_small_strata(keys: pd.Series, minimum: int) -> pd.Series:
    """Strata with fewer than minimum rows are merged into one, so every stratum can be split."""
    counts = keys.value_counts()
    small = counts[counts < minimum].index
    if len(small) == 0:
        return keys
    merged = keys.where(~keys.isin(small), "__rest__")
    if (merged == "__rest__").sum() < minimum:
        largest = counts.index[0]
        merged = merged.where(merged != "__rest__", largest)
    return merged
