"""Every task type end to end: the real flow, Prefect, MLflow and flows/predict.py, with a tiny random BERT.

One store holds a multi-label run and then a regression run on text pairs under the same model name:
the second is registered and gated but never replaces a champion of another task type.
"""

import json
import random
import subprocess
import sys

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from flows.finetune import finetune, format_summary
from schemas.config import FinetuneConfig
from tests.conftest import toy_frame

VOCAB = {
    "food": ["bread", "rice", "hungry", "meal"],
    "water": ["thirsty", "drink", "well", "bottle"],
    "shelter": ["tent", "roof", "house", "camp"],
}


def multi_label_frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        on = [label for label in VOCAB if rng.random() < 0.4]
        words = [w for label in on for w in rng.sample(VOCAB[label], 2)] + ["please", "help", str(i)]
        rng.shuffle(words)
        rows.append({"message": " ".join(words), **{label: int(label in on) for label in VOCAB}})
    return pd.DataFrame(rows)


def pair_frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    words = [w for ws in VOCAB.values() for w in ws]
    rows = []
    for i in range(n):
        left = rng.sample(words, 4)
        shared = rng.randint(0, 4)
        right = left[:shared] + rng.sample([w for w in words if w not in left], 4 - shared)
        rows.append({"first": " ".join(left) + f" {i}", "second": " ".join(right), "score": shared / 4})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir, prefect_server, empty_store):
    import shutil

    root = tmp_path_factory.mktemp("task-types")
    (root / "mlruns").mkdir()
    shutil.copy(empty_store, root / "mlruns" / "mlflow.db")
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    labels = multi_label_frame()
    bad = pd.DataFrame(
        [
            {"message": "bread roof 900", "food": 2, "water": 0, "shelter": 1},
            {"message": "tent 901", "food": None, "water": 0, "shelter": 1},
        ]
    )
    pd.concat([labels, bad], ignore_index=True).to_csv(root / "messages.csv", index=False)
    pairs = pair_frame()
    bad = pd.DataFrame([{"first": "rice drink", "second": "tent", "score": "high"}, {"first": "camp", "second": None, "score": 0.5}])
    pd.concat([pairs, bad], ignore_index=True).to_csv(root / "pairs.csv", index=False)

    def config(**tree) -> FinetuneConfig:
        base = {
            "model": {"name_or_path": str(tiny_model_dir)},
            "tracking": {"uri": uri},
            "cache": {"dir": str(root / "cache")},
            "train": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "max_length": 32, "precision": "fp32"},
        }
        for key, value in tree.items():
            base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
        return FinetuneConfig.model_validate(base)

    multi = finetune(
        config(
            task="multi_label",
            data={"path": str(root / "messages.csv"), "text_column": "message", "label_columns": list(VOCAB)},
            registry={"model_name": "tiny", "gates": {"f1_micro": 0.0}, "beat_baseline": False},
        )
    )
    reg = finetune(
        config(
            task="regression",
            data={"path": str(root / "pairs.csv"), "text_column": "first", "text_pair_column": "second", "label_column": "score"},
            registry={"model_name": "tiny", "gates": {"spearman": -1.0, "rmse": 100.0}},
        )
    )
    long = toy_frame(n_per_class=20)
    long["text"] = [f"{t} " + " ".join(["and", "then", "the", "story", "goes", "on"] * 4) for t in long["text"]]  # ~40 tokens
    long.to_csv(root / "long.csv", index=False)
    chunked = finetune(
        config(
            data={"path": str(root / "long.csv")},
            train={"max_length": 16, "long_text": "chunk"},
            registry={"model_name": "tiny-long", "min_accuracy": 0, "min_f1": 0, "beat_baseline": False},
        )
    )
    return {"root": root, "uri": uri, "multi": multi, "reg": reg, "chunked": chunked}


def _predict(runs, tmp_path, frame, *args):
    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    frame.to_csv(source, index=False)
    name = [] if "--name" in args else ["--name", "tiny"]
    done = subprocess.run(
        [sys.executable, "flows/predict.py", str(source), str(out), *name, "--tracking-uri", runs["uri"], *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return pd.read_csv(out)


def test_multi_label_trains_registers_gates_and_predicts(runs, tmp_path):
    summary, client = runs["multi"], MlflowClient(runs["uri"], runs["uri"])
    assert summary["task"] == "multi_label" and summary["promoted"]
    assert (summary["rows_in"], summary["rows_kept"], summary["rows_quarantined"]) == (122, 120, 2)
    assert summary["quarantine_reasons"] == {"bad_indicator_value": 2}
    assert {"f1_micro", "f1_macro", "subset_accuracy", "hamming_loss", "pr_auc_micro"} <= set(summary["val_metrics"])
    assert summary["val_f1"] is None and 0 < summary["test_metrics"]["f1_micro"] <= 1
    assert any(r.startswith("val_f1_micro") and "registry.gates.f1_micro 0.0" in r for r in summary["reasons"])
    assert "f1_micro" in format_summary(summary, runs["uri"])
    run = client.get_run(summary["run_id"])
    assert {"val_f1_micro", "test_hamming_loss", "val_pr_auc_micro"} <= set(run.data.metrics)
    assert run.data.metrics["test_f1_micro"] == pytest.approx(summary["test_metrics"]["f1_micro"])  # one figure everywhere
    artifacts = {a.path for a in client.list_artifacts(summary["run_id"], "evaluation")}
    assert {"evaluation/per_label_f1_validation.png", "evaluation/per_label_validation.csv", "evaluation/decision.json"} <= artifacts
    version = client.get_model_version("tiny", "1")
    assert version.tags["task"] == "multi_label" and json.loads(version.tags["labels"]) == list(VOCAB)
    decision = json.loads(version.tags["decision"])
    assert len(decision["thresholds"]) == 3 and "per-label threshold" in decision["rule"]
    assert "multi-label" in version.description and "| `food` |" in version.description

    result = _predict(runs, tmp_path, pd.DataFrame({"message": ["bread rice meal", "tent roof camp thirsty", ""]}), "--version", "1")
    assert {"predicted_labels", "proba_food", "proba_water", "proba_shelter", "predict_error"} <= set(result.columns)
    predicted = [json.loads(v) for v in result["predicted_labels"][:2]]
    assert all(set(p) <= set(VOCAB) for p in predicted)
    for i, row in result.iloc[:2].iterrows():  # a label is predicted exactly when its probability reaches its threshold
        assert set(predicted[i]) == {label for label, t in zip(VOCAB, decision["thresholds"]) if row[f"proba_{label}"] >= t}
    assert result.loc[2, "predict_error"] == "null or empty text" and pd.isna(result.loc[2, "predicted_labels"])


def test_regression_on_pairs_trains_registers_is_gated_and_predicts_in_data_units(runs, tmp_path):
    summary, client = runs["reg"], MlflowClient(runs["uri"], runs["uri"])
    assert summary["task"] == "regression" and summary["model_version"] == 2
    assert summary["quarantine_reasons"] == {"non_numeric_target": 1, "null_text_pair": 1}
    assert summary["rows_in"] == summary["rows_kept"] + summary["rows_quarantined"] == 122
    assert set(summary["val_metrics"]) == {"rmse", "mae", "r2", "spearman", "pearson"}
    # a champion of another task type is never compared against, nor replaced
    assert not summary["promoted"] and any("@champion v1 is a multi_label model" in r for r in summary["reasons"])
    assert str(client.get_model_version_by_alias("tiny", "champion").version) == "1"
    artifacts = {a.path for a in client.list_artifacts(summary["run_id"], "evaluation")}
    assert {"evaluation/scatter_test.png", "evaluation/residuals_validation.png"} <= artifacts
    version = client.get_model_version("tiny", "2")
    assert (version.tags["task"], version.tags["inputs"], version.tags["outputs"]) == ("regression", "text, text_pair", "predicted_value")
    assert "standardised for training" in version.description
    signature = mlflow.models.get_model_info(f"runs:/{summary['run_id']}/model").signature
    # the logged model reads the columns it was trained on and answers as predict does (predict_error on unusable rows)
    assert [c.name for c in signature.inputs.inputs] == ["first", "second"]
    assert [c.name for c in signature.outputs.inputs] == ["predicted_value", "predict_error"]
    report = json.loads(open(client.download_artifacts(summary["run_id"], "data/data_report.json")).read())
    assert report["text_pair"] and set(report["target_stats"]) == {"train", "validation", "test"}

    frame = pd.DataFrame({"first": ["bread rice", "tent camp"], "second": ["bread rice", ""]})
    result = _predict(runs, tmp_path, frame, "--version", "2")
    assert result.loc[0, "predicted_value"] == pytest.approx(result.loc[0, "predicted_value"])  # a number, not NaN
    # standardisation is undone: predictions live on the training target's scale (0..1 here), not around 0 +- 1
    assert -1.0 < result.loc[0, "predicted_value"] < 2.0
    assert result.loc[1, "predict_error"] == "null or empty text or text pair"


@pytest.mark.slow  # minutes of CPU on 2 cores: `make test-slow`
def test_long_texts_are_read_in_windows_and_get_one_prediction_each(runs, tmp_path):
    summary, client = runs["chunked"], MlflowClient(runs["uri"], runs["uri"])
    report = json.loads(open(client.download_artifacts(summary["run_id"], "data/data_report.json")).read())
    assert report["long_text"] == "chunk" and report["windows"]["test"]["documents_chunked"] == report["windows"]["test"]["documents"]
    assert report["windows"]["test"]["windows"] > report["windows"]["test"]["documents"]
    metrics = json.loads(open(client.download_artifacts(summary["run_id"], "evaluation/metrics.json")).read())
    # one prediction per text, not per window: the support is the number of test texts
    assert sum(c["support"] for c in metrics["test"]["per_class"].values()) == report["rows"]["in_test"]
    assert "read in overlapping windows" in client.get_model_version("tiny-long", "1").description
    frame = pd.DataFrame({"text": ["great superb " + "and then the story goes on " * 6, "awful"]})
    result = _predict(runs, tmp_path, frame, "--name", "tiny-long", "--version", "1")
    assert len(result) == 2 and set(result["predicted_label"]) <= {"neg", "pos"}


def test_mlflow_serving_and_pyfunc_answer_as_predict_does_for_labels_and_pairs(runs, tmp_path):
    from tests.flows.serving import serve_matches_predict

    labels = serve_matches_predict(tmp_path, runs["uri"], "models:/tiny/1", pd.DataFrame({"message": ["bread rice meal", "tent roof", ""]}))
    assert all(isinstance(json.loads(v), list) for v in labels["predicted_labels"].iloc[:2])
    frame = pd.DataFrame({"first": ["rice drink well", "tent camp"], "second": ["rice drink tent", "roof house"]})
    values = serve_matches_predict(tmp_path, runs["uri"], "models:/tiny/2", frame)
    assert values["predicted_value"].notna().all()  # in the data's units: the standardisation is undone in serving too


def test_multi_label_and_regression_runs_explain_and_predict_explains(runs, tmp_path, cli_env, request):
    from tests.flows.explaining import assert_run_explains, predict_explained

    assert_run_explains(runs["uri"], runs["multi"]["run_id"])
    found = assert_run_explains(runs["uri"], runs["reg"]["run_id"])
    assert all(isinstance(row["explanations"][""], list) for row in found["explained"])  # one value: one word list
    labels = predict_explained(
        request.config.rootpath, cli_env, runs["uri"], "models:/tiny/1", pd.DataFrame({"message": ["bread rice meal thirsty"]}), tmp_path
    )
    explanation, predicted = labels["explanation"][0], json.loads(labels["predicted_labels"][0])
    assert isinstance(explanation, dict) and sorted(explanation) == sorted(predicted)  # one word list per predicted label
    pairs = pd.DataFrame({"first": ["rice drink well"], "second": ["rice drink tent"]})
    values = predict_explained(request.config.rootpath, cli_env, runs["uri"], "models:/tiny/2", pairs, tmp_path)
    assert [w for w, _ in values["explanation"][0]] == ["rice", "drink", "well", "rice", "drink", "tent"]  # both texts, in order
