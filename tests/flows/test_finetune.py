"""End-to-end: the real flow on the real Prefect and MLflow stack, with a tiny random BERT."""

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from flows.finetune import finetune, format_summary
from tests.conftest import toy_frame

# The --summary-json contract, key for key and in order: scripts and benches read it.
SUMMARY_KEYS = [
    "run_id",
    "task",
    "model_name",
    "model_version",
    "promoted",
    "alias",
    "reasons",
    "val_metrics",
    "test_metrics",
    "baseline_val_metrics",
    "baseline_test_metrics",
    "baseline_verdict",
    "next_steps",
    "val_accuracy",
    "val_f1",
    "test_accuracy",
    "test_f1",
    "rows_in",
    "rows_kept",
    "rows_quarantined",
    "quarantine_file",
    "rows_not_data",
    "quarantine_reasons",
    "texts_truncated",
    "data_report",
    "reused_steps",
    "resumed_from",
    "learning_rate",
    "learning_rate_why",
    "lr_range_seconds",
    "step_seconds",
    "wall_seconds",
]
STEPS = ["ingest", "clean", "split", "tokenize", "report", "baseline", "fine_tune", "evaluate", "log_run", "register"]


@pytest.fixture
def messy_csv(tmp_path):
    frame = toy_frame(n_per_class=40)
    extra = pd.DataFrame(
        {"text": [None, "   ", frame["text"][0], "contested", "contested"], "label": ["pos", "neg", frame["label"][0], "pos", "neg"]}
    )
    path = tmp_path / "messy.csv"
    pd.concat([frame, extra], ignore_index=True).to_csv(path, index=False)
    return path


def test_gate_passes_registers_and_promotes(prefect_server, make_config, messy_csv):
    cfg = make_config(data={"path": str(messy_csv)}, train={"epochs": 2})
    summary = finetune(cfg)
    assert list(summary) == SUMMARY_KEYS and json.loads(json.dumps(summary)) == summary  # plain JSON values only
    assert list(summary["step_seconds"]) == STEPS and all(isinstance(s, float) for s in summary["step_seconds"].values())
    assert (summary["rows_in"], summary["rows_kept"], summary["rows_quarantined"]) == (85, 80, 5)
    assert summary["promoted"] and summary["alias"] == "champion" and summary["model_version"] == 1
    assert summary["task"] == "classification" and summary["val_f1"] == summary["val_metrics"]["f1_macro"]
    assert summary["quarantine_reasons"] == {"null_text": 1, "empty_text": 1, "duplicate": 1, "conflicting_labels": 2}
    assert summary["quarantine_file"].endswith("quarantine.csv") and summary["data_report"].endswith("data_report.md")
    assert (summary["rows_not_data"], summary["texts_truncated"], summary["reused_steps"], summary["resumed_from"]) == (0, 0, [], None)

    client = MlflowClient(cfg.tracking.resolved_uri(), cfg.tracking.resolved_uri())
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "2.0" and run.data.params["data.path"] == str(messy_csv)
    for name in ("val_accuracy", "val_f1_macro", "test_accuracy", "test_f1_macro", "rows_quarantined"):
        assert name in run.data.metrics
    assert run.data.metrics["rows_quarantined_conflicting_labels"] == 2
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/confusion_validation.png", "evaluation/confusion_test.png", "evaluation/metrics.json"} <= artifacts
    data_artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "data")}
    assert {"data/quarantine.csv", "data/data_report.json", "data/data_report.md", "data/token_lengths.png"} <= data_artifacts
    report = json.loads(open(client.download_artifacts(run.info.run_id, "data/data_report.json")).read())
    assert report["rows"]["clean_in"] == report["rows"]["kept"] + report["rows"]["quarantined"] == 85
    assert report["quarantined_by_reason"] == {"null_text": 1, "empty_text": 1, "duplicate": 1, "conflicting_labels": 2}
    assert report["duplicates_dropped"] == 1
    assert sum(sum(c.values()) for c in report["class_balance"].values()) == 80
    assert set(report["tokens"]) == {"train", "validation", "test"} and report["tokens"]["train"]["max"] >= report["tokens"]["train"]["p95"]

    version = client.get_model_version_by_alias("tiny", "champion")
    assert str(version.version) == "1" and version.tags["gate_passed"] == "true"
    # the TF-IDF baseline ran on the same split: in the summary, MLflow and the card
    assert set(summary["baseline_val_metrics"]) >= {"accuracy", "f1_macro"} and "TF-IDF baseline" in summary["baseline_verdict"]
    assert {"baseline_val_f1_macro", "baseline_test_accuracy"} <= set(run.data.metrics)
    assert "(TF-IDF baseline)" in version.description

    mlflow.set_tracking_uri(cfg.tracking.resolved_uri())
    classifier = mlflow.pyfunc.load_model("models:/tiny@champion")
    predictions = classifier.predict(pd.DataFrame({"text": ["great superb film", "awful dull film"]}))
    assert set(predictions["predicted_label"]) <= {"neg", "pos"} and len(predictions) == 2
    assert "promoted to @champion" in format_summary(summary, cfg.tracking.resolved_uri())


def test_gate_fails_keeps_champion_and_records_reasons(prefect_server, make_config, toy_csv):
    first = finetune(make_config(data={"path": str(toy_csv)}))
    assert first["promoted"]
    cfg = make_config(data={"path": str(toy_csv)}, seed=7, registry={"min_accuracy": 0.999, "min_f1": 0.999})
    second = finetune(cfg)
    assert not second["promoted"] and second["alias"] is None
    assert second["model_version"] == 2
    assert any("< registry.min_accuracy 0.999" in r for r in second["reasons"])
    assert any("< registry.min_f1 0.999" in r for r in second["reasons"])
    client = MlflowClient(cfg.tracking.resolved_uri(), cfg.tracking.resolved_uri())
    assert str(client.get_model_version_by_alias("tiny", "champion").version) == "1"
    tags = client.get_model_version("tiny", "2").tags
    assert tags["gate_passed"] == "false"
    assert json.loads(tags["gate_reasons"]) == second["reasons"]


def test_a_model_that_does_not_beat_its_baseline_is_registered_not_promoted(prefect_server, make_config, toy_csv):
    # Each toy class has words of its own: TF-IDF + logistic regression separates them perfectly, and a tiny
    # random BERT after one epoch cannot do better than a tie.
    summary = finetune(make_config(data={"path": str(toy_csv)}, registry={"beat_baseline": True}))
    assert summary["baseline_val_metrics"]["f1_macro"] == 1.0
    assert not summary["promoted"] and summary["model_version"] == 1
    assert any("does NOT beat the TF-IDF baseline (1.0000)" in r and "registry.beat_baseline" in r for r in summary["reasons"])
    assert summary["baseline_verdict"].startswith("does NOT beat the TF-IDF baseline")


def test_failed_flow_marks_the_run_failed(prefect_server, make_config, tmp_path):
    bad = tmp_path / "one_class.csv"
    pd.DataFrame({"text": [f"t {i}" for i in range(10)], "label": ["a"] * 10}).to_csv(bad, index=False)
    cfg = make_config(data={"path": str(bad)})
    with pytest.raises(Exception, match="only one class"):
        finetune(cfg)
    client = MlflowClient(cfg.tracking.resolved_uri(), cfg.tracking.resolved_uri())
    runs = client.search_runs([client.get_experiment_by_name("finetune-flow").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert "only one class" in runs[0].data.tags["failure"]


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "flows/finetune.py", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cli_help_lists_every_option(request):
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "flows/finetune.py", "--help"],
        cwd=request.config.rootpath,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0
    loaded = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "schemas.config" in loaded and not loaded & {"prefect", "mlflow", "torch", "transformers"}  # --help waits for none
    for key in (
        "data.path",
        "data.max_rows",
        "model.name_or_path",
        "train.learning_rate",
        "registry.min_f1",
        "tracking.uri",
        "--summary-json",
    ):
        assert key in result.stdout


def test_cli_bad_config_is_one_line_and_nonzero(request):
    result = _cli("train.epoch=1", cwd=request.config.rootpath)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: invalid config: train.epoch: Extra inputs are not permitted")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_cli_bad_input_is_one_line_no_trace_nothing_registered(request, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = _cli(
        f"data.path={tmp_path / 'missing.csv'}", f"tracking.uri={uri}", f"cache.dir={tmp_path / 'c'}", cwd=request.config.rootpath
    )
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: data file '{tmp_path / 'missing.csv'}' not found: set data.path to an existing CSV/TSV/JSONL/Parquet file or folder"
    ]
    assert "Traceback" not in result.stderr + result.stdout
    # What Prefect persisted about the failure is JSON, not a pickle.
    stored = list((Path(os.environ["PREFECT_HOME"]) / "storage").glob("*"))
    assert stored and all(json.loads(path.read_text()) for path in stored)
    client = MlflowClient(uri, uri)
    assert client.search_registered_models() == []
    runs = client.search_runs([client.get_experiment_by_name("finetune-flow").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_many_classes_train_evaluate_and_register_with_plots_of_one_size(prefect_server, make_config, tmp_path):
    import struct

    from task_types.classification import PLOT_MAX_INCHES

    n_classes = 150
    frame = pd.DataFrame(
        {
            "text": [f"item {c} sample {i}" for c in range(n_classes) for i in range(3)],
            "label": [f"class_{c:03d}" for c in range(n_classes) for _ in range(3)],
        }
    )
    frame.to_csv(tmp_path / "many.csv", index=False)
    cfg = make_config(data={"path": str(tmp_path / "many.csv")})
    summary = finetune(cfg)
    assert summary["rows_kept"] == 3 * n_classes and summary["model_version"] == 1
    client = MlflowClient(cfg.tracking.resolved_uri(), cfg.tracking.resolved_uri())
    folder = Path(client.download_artifacts(summary["run_id"], "evaluation", str(tmp_path / "artifacts")))
    pngs = list(folder.glob("*.png"))
    assert len(pngs) == 10  # per split: confusion (counts, normalised), ROC, PR, reliability
    for png in pngs:
        width, height = struct.unpack(">II", png.read_bytes()[16:24])
        assert max(width, height) <= PLOT_MAX_INCHES * 110, (png.name, width, height)
