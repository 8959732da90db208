"""A new task type is one class and one registration: an ordinal rating type defined here, in the test file, runs the
real flow end to end (ingest through register and predict) with the tiny model, and no file outside this test changes.

The rating (1..5) is learnt as one number and read back as the nearest rating; its own metric is `within_one` (the
share of ratings off by at most one star), which its gate, its best epoch and the champion comparison use.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from flows.finetune import finetune
from flows.predict import predict
from schemas.config import FinetuneConfig
from schemas.predict import PredictConfig
from task_types import TASK_TYPES, register
from task_types.base import Gate
from task_types.sequence import SequenceTask

RATINGS = (1, 2, 3, 4, 5)


def ordinal_metrics(truth, predicted) -> dict:
    truth, predicted = np.asarray(truth, dtype=float), np.asarray(predicted, dtype=float)
    return {"within_one": float((np.abs(truth - predicted) <= 1).mean()), "exact": float((truth == predicted).mean())}


class OrdinalRating(SequenceTask):
    name = "ordinal_rating"
    title = "ordinal rating (1 to 5 stars)"
    help = "a star rating per text, learnt as one ordered number"
    problem_type = "regression"
    compare_on = "within_one"
    headline = ("within_one", "exact")
    metric_names = headline
    training_metric_names = headline
    reasons = ("not_a_rating",)
    baseline_name = "median-rating baseline"

    def default_gates(self, registry):
        return [Gate("within_one", 0.0, "registry.gates")]

    def validate_targets(self, labels, data):
        ok = labels.isin([str(r) for r in RATINGS])
        return labels.where(ok, None), pd.Series(np.where(ok, None, "not_a_rating"), index=labels.index, dtype=object)

    def strata(self, labels):
        return labels

    def target_spec(self, labels, train_labels, data):
        return {"ratings": list(RATINGS)}

    def target_summary(self, labels, spec):
        return {"per_class": {str(r): int((labels == str(r)).sum()) for r in RATINGS}}

    def encode(self, labels, spec):
        return [float(v) for v in labels]

    def decode_truth(self, encoded, spec):
        return np.asarray(encoded, dtype=float)

    def head_config(self, spec):
        return {"num_labels": 1, "problem_type": self.problem_type}

    def outputs(self, logits, spec, decision=None):
        return np.clip(np.rint(np.asarray(logits, dtype=float).reshape(len(logits), -1)[:, 0]), 1, 5)

    def training_metrics(self, logits, label_ids, spec):
        return ordinal_metrics(label_ids, self.outputs(logits, spec))

    def score(self, truth, outputs, spec, decision):
        return ordinal_metrics(truth, outputs)

    def evaluate(self, truth, outputs, spec, decision, split, folder: Path):
        (folder / f"ratings_{split}.csv").write_text(pd.DataFrame({"true": truth, "predicted": outputs}).to_csv(index=False))
        return self.score(truth, outputs, spec, decision)

    def linear_baseline(self, features, parts, spec):
        median = float(np.median(parts["train"]["label"].astype(float)))
        return {name: np.full(x.shape[0], median) for name, x in features.items()}

    def predict_columns(self, outputs, spec, decision, options=None):
        return {"predicted_rating": [int(v) for v in outputs]}

    def output_schema(self, spec, options=None):
        return [("predicted_rating", "long")]

    def card_section(self, spec, decision):
        return "- Task: a star rating per text, 1 to 5, read as the nearest whole rating"


@pytest.fixture
def ordinal_type():
    registered = register(OrdinalRating())
    yield registered
    TASK_TYPES.pop(registered.name)


def test_a_task_type_defined_in_a_test_runs_the_whole_flow_and_predicts(ordinal_type, tmp_path, tiny_model_dir, new_store, prefect_server):
    words = {1: "dreadful awful", 2: "weak dull", 3: "fine okay", 4: "good nice", 5: "superb brilliant"}
    rows = [{"review": f"{words[r]} film number {i}", "stars": str(r)} for i in range(30) for r in RATINGS]
    rows += [{"review": "no stars here", "stars": "seven"}]
    pd.DataFrame(rows).to_csv(tmp_path / "reviews.csv", index=False)
    uri = new_store(tmp_path / "mlruns")
    cfg = FinetuneConfig.model_validate(
        {
            "task": "ordinal_rating",
            "data": {"path": str(tmp_path / "reviews.csv"), "text_column": "review", "label_column": "stars"},
            "model": {"name_or_path": str(tiny_model_dir)},
            "train": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "max_length": 32, "precision": "fp32"},
            "registry": {"model_name": "stars", "beat_baseline": False},
            "tracking": {"uri": uri},
            "cache": {"dir": str(tmp_path / "cache")},
        }
    )
    summary = finetune(cfg)
    assert summary["task"] == "ordinal_rating" and summary["promoted"] and summary["quarantine_reasons"] == {"not_a_rating": 1}
    assert set(summary["val_metrics"]) == {"within_one", "exact"} and summary["rows_in"] == 151
    assert "median-rating baseline" in summary["baseline_verdict"]
    version = MlflowClient(uri, uri).get_model_version("stars", "1")
    assert version.tags["task"] == "ordinal_rating" and "a star rating per text" in version.description

    pd.DataFrame({"review": ["superb brilliant film", "", "dreadful awful film"]}).to_csv(tmp_path / "in.csv", index=False)
    done = predict(PredictConfig(input=str(tmp_path / "in.csv"), output=str(tmp_path / "out.csv"), name="stars", tracking_uri=uri))
    out = pd.read_csv(tmp_path / "out.csv")
    assert done["task"] == "ordinal_rating" and (done["rows_predicted"], done["rows_not_predicted"]) == (2, 1)
    assert out["predicted_rating"].dropna().between(1, 5).all() and out["predict_error"].tolist()[1] == "null or empty text"
