"""The task-type protocol and the helpers every task type shares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from schemas.errors import ConfigError

# Metrics where lower is better: their gate is a ceiling, and beating the champion means going lower.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "hamming_loss", "ece", "loss"})


@dataclass(frozen=True)
class Gate:
    """One gate: a validation metric, its bound (floor, or ceiling when lower is better) and the option that sets it."""

    metric: str
    bound: float
    option: str

    @property
    def ceiling(self) -> bool:
        return self.metric in LOWER_IS_BETTER


class TaskType:
    """What one kind of target needs from the pipeline. Methods are pure: frames and arrays in, values out.

    `spec` is the target's encoding fixed by the split step (label order, or the regression scaling) and
    `decision` the output rule fixed on validation (multi-label thresholds); both travel with the model.
    """

    name: str = ""
    title: str = ""  # one line for the model card and --help
    problem_type: str = ""  # transformers' config.problem_type: picks the head's loss
    training_revision = 1  # bump when the type changes how it trains (a new head start, loss): the fine-tune cache key follows
    compare_on: str = ""  # default registry.compare_on: picks the best epoch and beats the champion
    headline: tuple[str, ...] = ()  # the metrics a person reads first (summary, card, gate artifact)
    metric_names: tuple[str, ...] = ()  # every validation metric a gate or registry.compare_on may name
    training_metric_names: tuple[str, ...] = ()  # those computed at each evaluation during training
    reasons: tuple[str, ...] = ()  # quarantine reasons this type can give for a target
    strict_strata: bool = False  # a stratum too small to split is an error (classes) rather than merged (bins)
    window_aggregate: str = "mean"  # how a chunked text's window logits become one (train.long_text=chunk)
    baseline_name: str = "TF-IDF baseline"  # what `baseline` fits, as the summary, the gate and the card name it
    # Hooks for word-level types (token_classification); sequence-level types keep these defaults.
    auto_model: str = "AutoModelForSequenceClassification"  # the transformers class that builds and loads the model
    pipeline_task: str = "text-classification"  # the transformers pipeline task the registered model is logged as
    word_level: bool = False  # targets per word: tokenize, evaluate and predict go through the type's word-level hooks
    string_columns: tuple[str, ...] = ()  # predict columns holding text (JSON) rather than numbers, besides predicted_label(s)

    def for_target(self, spec: dict) -> TaskType:
        """The type as it applies to one target encoding (token_classification on plain tags has other gates)."""
        return self

    def model_class(self):
        import transformers

        return getattr(transformers, self.auto_model)

    def collator(self, tokenizer):
        """Pads each batch to its own longest text."""
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    # ---- config and data -------------------------------------------------------------------------
    def check_config(self, cfg) -> None:
        """Raise ValueError for options that do not fit this task type."""
        data, registry = cfg.data, cfg.registry
        if self.name != "multi_label" and (data.label_columns is not None or data.label_separator is not None):
            raise ValueError("data.label_columns and data.label_separator are for task=multi_label")
        if not self.word_level and data.format in ("conll", "conllu"):
            raise ValueError(f"data.format={data.format} holds a tag per word: set task=token_classification")
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

    def validate_targets(self, labels: pd.Series, data) -> tuple[pd.Series, pd.Series]:
        """(canonical target string or None, quarantine reason or None) per row; labels are non-empty strings."""
        raise NotImplementedError

    def check_usable(self, labels: pd.Series, data) -> None:
        """Raise DataError when the kept targets cannot train this task type."""

    def strata(self, labels: pd.Series) -> pd.Series:
        """The key splits are stratified by."""
        raise NotImplementedError

    def target_spec(self, labels: pd.Series, train_labels: pd.Series, data) -> dict:
        """The target encoding, fixed from the sampled rows and the train split."""
        raise NotImplementedError

    def target_summary(self, labels: pd.Series, spec: dict) -> dict:
        """What the data report shows of one split's targets."""
        raise NotImplementedError

    def encode(self, labels: pd.Series, spec: dict) -> list:
        """Training targets for the `labels` column of the tokenized data."""
        raise NotImplementedError

    def decode_truth(self, encoded, spec: dict) -> np.ndarray:
        """The tokenized `labels` column back in the units metrics are computed in."""
        return np.asarray(encoded)

    # ---- model ------------------------------------------------------------------------------------
    def head_config(self, spec: dict) -> dict:
        """Keyword arguments for AutoModelForSequenceClassification: outputs, loss, label names."""
        raise NotImplementedError

    def initial_bias(self, encoded: list, weights: list[float] | None) -> list[float] | None:
        """Starting values of the head's output biases (None: the library's zeros)."""
        return None

    def outputs(self, logits: np.ndarray, spec: dict, decision: dict | None = None) -> np.ndarray:
        """Raw logits to what metrics and predict use (probabilities, values); decision may hold a temperature."""
        raise NotImplementedError

    def calibrate(self, truth: np.ndarray, logits: np.ndarray, spec: dict) -> dict:
        """Temperature scaling fitted on validation ({} where outputs are not probabilities)."""
        return {}

    def loss_weights(self, encoded: list, spec: dict, setting) -> list[float] | None:
        """Per-output loss weights from train.class_weights (None: an unweighted loss)."""
        if setting not in ("auto", "none"):
            raise ConfigError(f"train.class_weights={setting!r} is for classification and multi_label; task={self.name} takes auto or none")
        return None

    def training_metrics(self, logits: np.ndarray, label_ids: np.ndarray, spec: dict) -> dict:
        """Metrics computed at each evaluation during training; holds compare_on for the best epoch."""
        raise NotImplementedError

    # ---- evaluation and prediction ------------------------------------------------------------------
    def fit_decision(self, truth: np.ndarray, outputs: np.ndarray, spec: dict) -> dict:
        """The output rule tuned on validation (nothing to tune by default)."""
        return {}

    def score(self, truth: np.ndarray, outputs: np.ndarray, spec: dict, decision: dict) -> dict:
        """Every metric of one split (pure)."""
        raise NotImplementedError

    def evaluate(self, truth: np.ndarray, outputs: np.ndarray, spec: dict, decision: dict, split: str, folder: Path) -> dict:
        """score, plus this type's plots and tables written into folder."""
        raise NotImplementedError

    def truth_from_labels(self, labels: pd.Series, spec: dict) -> np.ndarray:
        """Canonical targets (the clean step's strings) in the metric units of a model with this spec."""
        return self.decode_truth(self.encode(labels, spec), spec)

    def predict_columns(self, outputs: np.ndarray, spec: dict, decision: dict) -> dict[str, list]:
        """Output columns of flows/predict.py for predicted rows."""
        raise NotImplementedError

    def empty_columns(self, spec: dict) -> list[str]:
        """The names predict_columns gives (for rows without a prediction)."""
        raise NotImplementedError

    def card_section(self, spec: dict, decision: dict) -> str:
        """This type's part of the model card: what it predicts and how outputs are decided."""
        raise NotImplementedError

    def card_limits(self) -> list[str]:
        return []

    # ---- the classical baseline every run is measured against ------------------------------------
    def baseline(self, features: dict, parts: dict[str, pd.DataFrame], spec: dict) -> dict[str, np.ndarray]:
        """Fit this type's classical model on features["train"]; its outputs (same form as `outputs`) per split."""
        raise NotImplementedError


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


def tfidf_features(parts: dict[str, pd.DataFrame]) -> dict:
    """TF-IDF of word 1-2-grams fitted on the train split; for pairs each side, and their elementwise product."""
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer

    pairs = "text_pair" in parts["train"]
    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2), min_df=2 if len(parts["train"]) >= 1000 else 1, sublinear_tf=True, max_features=500_000
    )
    vectorizer.fit(pd.concat([parts["train"]["text"], parts["train"]["text_pair"]]) if pairs else parts["train"]["text"])
    features = {}
    for name, part in parts.items():
        a = vectorizer.transform(part["text"])
        features[name] = sp.hstack([a, b := vectorizer.transform(part["text_pair"]), a.multiply(b)]).tocsr() if pairs else a
    return features


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
