"""task=question_answering end to end with a tiny random BERT on the 10-question SQuAD file: the real flow, Prefect,
MLflow, flows/predict.py (torch and ONNX) and flows/export.py."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from flows.finetune import finetune
from flows.predict import predict
from schemas.config import FinetuneConfig
from schemas.predict import PredictConfig

SQUAD = Path(__file__).resolve().parents[1] / "data" / "squad-10.json"


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory, tiny_model_dir, prefect_server, empty_store):
    import shutil

    root = tmp_path_factory.mktemp("qa")
    (root / "mlruns").mkdir()
    shutil.copy(empty_store, root / "mlruns" / "mlflow.db")
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    cfg = FinetuneConfig.model_validate(
        {
            "task": "question_answering",
            "data": {"path": str(SQUAD)},
            "model": {"name_or_path": str(tiny_model_dir)},
            "train": {"epochs": 1, "batch_size": 4, "learning_rate": 1e-3, "max_length": 96, "doc_stride": 32, "precision": "fp32"},
            "registry": {"model_name": "tiny-qa", "gates": {"f1": 0.0, "exact_match": 0.0}, "beat_baseline": False},
            "tracking": {"uri": uri},
            "cache": {"dir": str(root / "cache")},
        }
    )
    return {"root": root, "uri": uri, "summary": finetune(cfg)}


def _rows() -> pd.DataFrame:
    document = json.loads(SQUAD.read_text())
    rows = [
        {"question": qa["question"], "context": paragraph["context"]}
        for article in document["data"]
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]
    return pd.DataFrame(rows + [{"question": "   ", "context": "nothing to ask"}])


def test_it_trains_registers_gates_and_reports_the_windows(qa_run):
    summary, client = qa_run["summary"], MlflowClient(qa_run["uri"], qa_run["uri"])
    assert summary["task"] == "question_answering" and summary["promoted"] and summary["model_version"] == 1
    assert {"f1", "exact_match"} <= set(summary["val_metrics"]) and 0.0 <= summary["test_metrics"]["f1"] <= 1.0
    assert set(summary["baseline_val_metrics"]) >= {"f1", "exact_match"} and "word-overlap baseline" in summary["baseline_verdict"]
    assert (summary["rows_in"], summary["rows_kept"]) == (10, 10) and summary["val_f1"] is None
    report = Path(summary["data_report"]).read_text()
    assert "always fall in the same split" in report and "answers no window holds whole: train 0" in report
    run = client.get_run(summary["run_id"])
    assert {"val_f1", "val_exact_match", "test_f1", "baseline_val_f1"} <= set(run.data.metrics)
    artifacts = [a.path for a in client.list_artifacts(summary["run_id"], "evaluation")]
    assert "evaluation/worst_questions_validation.csv" in artifacts
    version = client.get_model_version("tiny-qa", "1")
    assert version.tags["task"] == "question_answering" and "extractive question answering" in version.description
    assert "CC BY-SA 4.0" in version.description  # SQuAD data: the card says how to attribute it


def test_predict_answers_with_offsets_that_slice_the_context_and_the_top_k(qa_run, tmp_path, cli_env, request):
    source, out = tmp_path / "in.csv", tmp_path / "out.jsonl"
    _rows().to_csv(source, index=False)
    done = subprocess.run(
        [sys.executable, "flows/predict.py", str(source), str(out), "--name", "tiny-qa", "--version", "1"]
        + ["--tracking-uri", qa_run["uri"], "--top-k", "3", "--precision", "fp32"],
        cwd=request.config.rootpath,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = pd.read_json(out, lines=True)
    answered = result[result["predict_error"].isna()]
    assert len(answered) == 10 and result["predict_error"].iloc[-1] == "null or empty question or context"
    assert all(c[int(s) : int(e)] == a for c, s, e, a in zip(answered["context"], answered["start"], answered["end"], answered["answer"]))
    top = [json.loads(v) for v in answered["top_answers"]]
    assert all(len(t) == 3 and t[0]["text"] == a for t, a in zip(top, answered["answer"]))
    assert all(c[x["start"] : x["end"]] == x["text"] for t, c in zip(top, answered["context"]) for x in t)


def test_export_writes_start_and_end_logits_and_onnx_predicts_the_same_answers(qa_run, tmp_path, cli_env, request):
    source = tmp_path / "in.csv"
    _rows().head(4).to_csv(source, index=False)
    root, common = request.config.rootpath, ["--name", "tiny-qa", "--version", "1", "--tracking-uri", qa_run["uri"]]
    exported = subprocess.run(
        [sys.executable, "flows/export.py", "--out", str(tmp_path / "export"), "--quantize", "none", *common],
        cwd=root,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert exported.returncode == 0, exported.stderr[-3000:]
    import onnx

    graph = onnx.load(str(tmp_path / "export" / "model.onnx")).graph
    assert [o.name for o in graph.output] == ["start_logits", "end_logits"]
    answers = {}
    for runtime in ("torch", "onnx"):
        out = tmp_path / f"{runtime}.csv"
        cfg = PredictConfig(
            input=str(source),
            output=str(out),
            name="tiny-qa",
            version=1,
            tracking_uri=qa_run["uri"],
            runtime=runtime,
            quantize="none" if runtime == "onnx" else "int8",
            precision="fp32",
            cache_dir=str(tmp_path / "cache"),
        )
        assert predict(cfg)["rows_predicted"] == 4
        answers[runtime] = pd.read_csv(out)[["answer", "start", "end"]]
    assert answers["torch"].equals(answers["onnx"])


def test_mlflow_serving_and_pyfunc_answer_as_predict_does_with_offsets(qa_run, tmp_path):
    from tests.flows.serving import serve_matches_predict

    answers = serve_matches_predict(tmp_path, qa_run["uri"], "models:/tiny-qa/1", _rows().head(4))
    assert {"answer", "start", "end", "score"} <= set(answers.columns)


def test_bad_question_answering_rows_are_quarantined_and_counted_through_the_cli(tmp_path, tiny_model_dir, new_store, cli_env, request):
    good = _rows().head(10).assign(answers=[json.loads(a) for a in _answers_of_file()])
    context = good["context"].iloc[0]
    bad = [
        {"question": "Where?", "context": context, "answers": {"text": ["Zanzibar"], "answer_start": [3]}},  # not in the context
        {"question": "Empty?", "context": "", "answers": {"text": ["x"], "answer_start": [0]}},  # empty context
        {"question": "Too long?", "context": "short", "answers": {"text": ["short and much more"], "answer_start": [0]}},
        {"question": "Twice?", "context": "the cat and the cat", "answers": {"text": ["cat"], "answer_start": [1]}},  # ambiguous
    ]
    path = tmp_path / "qa.jsonl"
    pd.concat([good, pd.DataFrame(bad)], ignore_index=True).to_json(path, orient="records", lines=True)
    uri = new_store(tmp_path / "mlruns")
    done = subprocess.run(
        [sys.executable, "flows/finetune.py", "task=question_answering", f"data.path={path}", f"model.name_or_path={tiny_model_dir}"]
        + [f"tracking.uri={uri}", f"cache.dir={tmp_path / 'cache'}", "train.epochs=1", "train.max_length=96", "train.doc_stride=32"]
        + ["train.precision=fp32", "registry.beat_baseline=false", f"--summary-json={tmp_path / 's.json'}"],
        cwd=request.config.rootpath,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["quarantine_reasons"] == {"answer_not_in_context": 2, "empty_text_pair": 1, "ambiguous_answer_start": 1}
    assert summary["rows_in"] == 14 and summary["rows_kept"] == 10


def _answers_of_file() -> list[str]:
    document = json.loads(SQUAD.read_text())
    return [
        json.dumps({"text": [a["text"] for a in qa["answers"]], "answer_start": [a["answer_start"] for a in qa["answers"]]})
        for article in document["data"]
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]


def test_the_run_explains_answers_and_predict_explains_start_and_end(qa_run, tmp_path, cli_env, request):
    from tests.flows.explaining import predict_explained

    result = predict_explained(request.config.rootpath, cli_env, qa_run["uri"], "models:/tiny-qa/1", _rows().head(2), tmp_path)
    for explanation, answer in zip(result["explanation"], result["answer"]):
        assert (sorted(explanation) == ["end", "start"]) if answer else explanation == []
