"""The registry a platform team can trust: tags, model card, manual promote/rollback, the alias race,
a crash before the alias moves, batch prediction on the champion, and the real MLflow server's view."""

import json
import shutil
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
from mlflow import MlflowClient

import tasks.register
from flows.finetune import finetune
from flows.predict import predict
from flows.ui_check import check_ui, mlflow_server
from schemas.config import FinetuneConfig, RegistryConfig, TrackingConfig
from schemas.predict import PredictConfig
from schemas.results import EvaluationResult, SplitResult, TrainResult
from tasks.register import register_model
from tests.conftest import toy_frame


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model_dir, prefect_server, empty_store):
    """Two real flow runs into one store: v1 promoted, v2 registered with registry.promote=false."""
    root = tmp_path_factory.mktemp("registry")
    data = root / "toy.csv"
    toy_frame().to_csv(data, index=False)
    (root / "mlruns").mkdir()
    shutil.copy(empty_store, root / "mlruns" / "mlflow.db")
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"

    def config(**registry):
        return FinetuneConfig.model_validate(
            {
                "data": {"path": str(data)},
                "model": {"name_or_path": str(tiny_model_dir)},
                "train": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "max_length": 32, "precision": "fp32"},
                "registry": {"model_name": "tiny", "min_accuracy": 0.0, "min_f1": 0.0, "beat_baseline": False, **registry},
                "tracking": {"uri": uri},
                "cache": {"dir": str(root / "cache")},
            }
        )

    first = finetune(config())
    second = finetune(config(promote=False).model_copy(update={"seed": 3}))
    return {"root": root, "uri": uri, "data": data, "first": first, "second": second}


def _client(uri):
    return MlflowClient(uri, uri)


def test_versions_carry_gate_fingerprints_revision_link_and_model_card(store):
    assert store["first"]["promoted"] and not store["second"]["promoted"]
    assert store["second"]["alias"] is None
    client = _client(store["uri"])
    # TF-IDF separates the toy vocabulary perfectly (1.0): the tiny model cannot beat it, and every surface says what to try
    assert "does NOT beat" in store["first"]["baseline_verdict"] and any("flows/sweep.py" in s for s in store["first"]["next_steps"])
    assert "It does not beat its run's TF-IDF baseline" in client.get_model_version("tiny", "1").description
    v1, v2 = client.get_model_version("tiny", "1"), client.get_model_version("tiny", "2")
    for key in (
        "gate_passed",
        "gate_reasons",
        "gate_reason_1",
        "val_accuracy",
        "val_f1_macro",
        "val_f1_weighted",
        "val_roc_auc",
        "val_ece",
        "test_accuracy",
        "test_f1_macro",
        "data_fingerprint",
        "config_fingerprint",
        "git_revision",
        "run_id",
        "run_link",
        "labels",
    ):
        assert v1.tags.get(key), key
    assert v1.tags["run_link"].endswith(f"/runs/{v1.run_id}")
    assert v1.tags["champion_promoted_by"] == f"finetune-flow run {v1.run_id}" and v1.tags["champion_replaced_version"] == ""
    assert json.loads(v2.tags["gate_reasons"]) == store["second"]["reasons"]
    # seed 3 splits differently: the champion was re-scored on v2's validation rows, and the reasons say so
    assert v1.tags["data_fingerprint"] != v2.tags["data_fingerprint"]
    assert any("trained on different data" in r and "re-evaluated on this run's validation split" in r for r in store["second"]["reasons"])
    for version in (v1, v2):
        assert version.description.startswith(f"# tiny v{version.version}")
        for fact in (
            "Base model",
            "Data fingerprint",
            "`neg`",
            "Intended use",
            "Known limits",
            "f1_macro",
            "Task type: `classification`",
            version.tags["data_fingerprint"],
        ):
            assert fact in version.description, fact
        card = client.download_artifacts(version.run_id, "model_card.md")
        assert open(card).read() == version.description
    run = client.get_run(v1.run_id)
    for name in (
        "val_accuracy",
        "val_f1_macro",
        "val_f1_weighted",
        "val_roc_auc",
        "val_pr_auc",
        "val_ece",
        "val_recall_neg",
        "test_support_pos",
    ):
        assert name in run.data.metrics, name
    assert len(client.get_metric_history(v1.run_id, "train_loss")) >= 2


def _registry_cli(store, *args):
    return subprocess.run(
        [sys.executable, "-m", "flows.registry", *args, "--name", "tiny", "--tracking-uri", store["uri"]],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_manual_promote_then_rollback_records_who_and_why(store):
    client = _client(store["uri"])
    assert str(client.get_model_version_by_alias("tiny", "champion").version) == "1"
    done = _registry_cli(store, "promote", "--version", "2", "--why", "A/B test won", "--who", "alice")
    assert done.returncode == 0, done.stderr
    assert "v1 -> v2" in done.stdout
    v2 = client.get_model_version_by_alias("tiny", "champion")
    assert str(v2.version) == "2"
    assert (v2.tags["champion_promoted_by"], v2.tags["champion_promoted_why"], v2.tags["champion_replaced_version"]) == (
        "alice",
        "manual: A/B test won",
        "1",
    )

    back = _registry_cli(store, "rollback", "--why", "complaints", "--who", "bob")
    assert back.returncode == 0, back.stderr
    assert str(client.get_model_version_by_alias("tiny", "champion").version) == "1"
    left = client.get_model_version("tiny", "2")
    assert (left.tags["champion_rolled_back_by"], left.tags["champion_rolled_back_why"]) == ("bob", "complaints")
    assert client.get_model_version("tiny", "1").tags["champion_promoted_why"] == "rollback from v2: complaints"

    listing = _registry_cli(store, "list")
    assert listing.returncode == 0 and "v1" in listing.stdout and "@champion" in listing.stdout
    nothing_before = _registry_cli(store, "rollback", "--why", "again")
    assert nothing_before.returncode == 2 and nothing_before.stderr.startswith("error: @champion (v1) replaced no earlier version")
    missing = _registry_cli(store, "promote", "--version", "9", "--why", "typo")
    assert missing.returncode == 2 and "has no version 9" in missing.stderr


@pytest.mark.parametrize("chunk_rows", [3, 10_000])
@pytest.mark.parametrize("suffix", ["csv", "jsonl", "json", "parquet"])
def test_predict_on_the_champion_writes_input_columns_plus_predictions(store, suffix, chunk_rows, tmp_path):
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            "text": ["great superb moving film", "awful dull boring film", "", "brilliant fun charming", "\u200b\ufeff"],
        }
    )
    source, out = tmp_path / f"in.{suffix}", tmp_path / f"out.{suffix}"
    {
        "csv": lambda: frame.to_csv(source, index=False),
        "jsonl": lambda: frame.to_json(source, orient="records", lines=True),
        "json": lambda: frame.to_json(source, orient="records"),
        "parquet": lambda: frame.to_parquet(source),
    }[suffix]()
    cfg = PredictConfig(input=str(source), output=str(out), model="models:/tiny@champion", tracking_uri=store["uri"], chunk_rows=chunk_rows)
    summary = predict(cfg)  # chunk_rows=3: the rows stream in 2 chunks
    assert (summary["rows_in"], summary["rows_predicted"], summary["rows_not_predicted"]) == (5, 3, 2)
    assert not list(tmp_path.glob(".*partial"))
    result = {"csv": pd.read_csv, "jsonl": lambda p: pd.read_json(p, lines=True), "json": pd.read_json, "parquet": pd.read_parquet}[suffix](
        out
    )
    assert list(result.columns[:2]) == ["id", "text"] and result["id"].tolist() == [1, 2, 3, 4, 5]
    assert {"predicted_label", "confidence", "proba_neg", "proba_pos", "predict_error"} <= set(result.columns)
    predicted = result.drop(index=[2, 4])
    assert set(predicted["predicted_label"]) <= {"neg", "pos"}
    assert ((predicted["proba_neg"] + predicted["proba_pos"]) - 1).abs().max() < 1e-5
    assert (predicted["confidence"] == predicted[["proba_neg", "proba_pos"]].max(axis=1)).all()
    assert result.loc[2, "predict_error"] == result.loc[4, "predict_error"] == "null or empty text" and pd.isna(
        result.loc[4, "predicted_label"]
    )


def test_predict_cli_by_version_and_unknown_model(store, tmp_path, cli_env):
    source = tmp_path / "in.csv"
    pd.DataFrame({"review": ["great superb film", "awful dull film"]}).to_csv(source, index=False)
    cmd = [
        sys.executable,
        "flows/predict.py",
        str(source),
        str(tmp_path / "out.csv"),
        "--text-column",
        "review",
        "--name",
        "tiny",
        "--tracking-uri",
        store["uri"],
    ]
    ok = subprocess.run([*cmd, "--version", "2"], capture_output=True, text=True, timeout=300, env=cli_env)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "models:/tiny/2" in ok.stdout and len(pd.read_csv(tmp_path / "out.csv")) == 2
    bad = subprocess.run([*cmd, "--alias", "nope"], capture_output=True, text=True, timeout=300, env=cli_env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert [line for line in bad.stderr.splitlines() if line.startswith("error:")][0].startswith("error: cannot load models:/tiny@nope")


def test_real_mlflow_server_shows_run_metrics_artifacts_version_and_alias(store):
    with mlflow_server(store["uri"]) as url:
        found = check_ui(url, "tiny", "champion")
    assert found["run_id"] == _client(store["uri"]).get_model_version_by_alias("tiny", "champion").run_id
    assert "champion" in found["aliases"] and found["run_status"] == "FINISHED"
    assert found["metrics_json_splits"] == ["test", "validation"]


# --- the promotion critical section, through the real register step and a real sqlite registry -----------------


def _candidate(client, uri, name, f1, key):
    """A run with a registered version (as a flow leaves it just before the gate) and the step results for it."""
    experiment = client.get_experiment_by_name("race") or client.get_experiment(client.create_experiment("race"))
    run = client.create_run(experiment.experiment_id)
    client.log_param(run.info.run_id, "train.max_length", "32")
    if not client.search_registered_models(f"name='{name}'"):
        client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id, tags={"train_key": key})
    metrics = {"accuracy": f1, "f1_macro": f1, "f1_weighted": f1, "roc_auc": f1, "pr_auc": f1, "ece": 0.1}
    model = TrainResult(
        path="model",
        key=key,
        reused=False,
        task="classification",
        labels=["neg", "pos"],
        max_length=32,
        device="cpu",
        precision="fp32",
        resumed_from=None,
        train_seconds=1.0,
        train_samples_per_second=8.0,
        epochs_run=1.0,
        best_metric_name="f1_macro",
        best_val_metric=f1,
        history=[],
    )
    evaluation = EvaluationResult(
        key=f"eval-{key}", reused=False, task="classification", metrics={"validation": metrics}, decision={}, artifacts="evaluation"
    )
    split = SplitResult(
        paths={},
        key="same-data",
        reused=False,
        rows_in=10,
        labels=["neg", "pos"],
        target={"labels": ["neg", "pos"]},
        splits={"train": {"rows": 8}, "validation": {"rows": 1}, "test": {"rows": 1}},
    )
    return run.info.run_id, model, evaluation, split


def _gate(uri, name, run_id, model, evaluation, split, **registry):
    return register_model.fn(run_id, model, evaluation, split, RegistryConfig(model_name=name, **registry), TrackingConfig(uri=uri))


def test_two_promotions_at_once_are_serialised(tmp_path, monkeypatch, new_store):
    uri = new_store(tmp_path)
    client = _client(uri)
    better, worse = _candidate(client, uri, "race", 0.90, "a"), _candidate(client, uri, "race", 0.85, "b")
    real = tasks.register.current_version

    def slow(*args):  # widen the window between reading the champion and moving the alias
        found = real(*args)
        time.sleep(0.5)
        return found

    monkeypatch.setattr(tasks.register, "current_version", slow)
    results, gate = {}, threading.Barrier(2)

    def run(label, candidate):
        gate.wait()
        results[label] = _gate(uri, "race", *candidate, min_accuracy=0, min_f1=0)

    threads = [threading.Thread(target=run, args=item) for item in (("better", better), ("worse", worse))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert set(results) == {"better", "worse"}
    # Whoever went second compared itself with the first: only one saw no champion, and the better one holds it.
    assert sum("no version holds @champion yet" in r.reasons for r in results.values()) == 1
    assert results["better"].promoted
    assert str(client.get_model_version_by_alias("race", "champion").version) == str(results["better"].model_version)


def test_a_crash_between_register_and_alias_keeps_the_old_champion(tmp_path, monkeypatch, new_store):
    uri = new_store(tmp_path)
    client = _client(uri)
    assert _gate(uri, "crash", *_candidate(client, uri, "crash", 0.80, "old")).promoted
    newer = _candidate(client, uri, "crash", 0.95, "new")

    def crash(self, *args, **kwargs):
        raise RuntimeError("process died before moving the alias")

    monkeypatch.setattr(tasks.register.MlflowClient, "set_registered_model_alias", crash)
    with pytest.raises(RuntimeError, match="before moving the alias"):
        _gate(uri, "crash", *newer)
    assert str(client.get_model_version_by_alias("crash", "champion").version) == "1"
    assert client.get_model_version("crash", "2").tags["gate_passed"] == "true"
    assert not [key for key in client.get_model_version("crash", "2").tags if key.startswith("champion_")], (
        "tagged as promoted without the alias"
    )

    monkeypatch.undo()  # the retry of the same run finishes the promotion, with the same version
    retried = _gate(uri, "crash", *newer)
    assert retried.promoted and retried.model_version == 2
    assert str(client.get_model_version_by_alias("crash", "champion").version) == "2"
    assert len(client.search_model_versions("name='crash'")) == 2


@pytest.mark.parametrize(
    "args, rule",
    [
        (["list", "--name", "it's"], 'model name "it\'s" is not allowed'),
        (["promote", "--version", "1", "--why", "x", "--alias", "v1"], "alias 'v1' is not allowed"),
    ],
)
def test_registry_cli_checks_names_before_querying(tmp_path, new_store, args, rule):
    uri = new_store(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "flows.registry", *args, "--tracking-uri", uri], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and rule in errors[0], done.stderr[-500:]


def test_export_writes_onnx_and_predict_runs_it_like_the_torch_model(store, tmp_path, cli_env):
    out = tmp_path / "export"
    cmd = [sys.executable, "flows/export.py", "--name", "tiny", "--tracking-uri", store["uri"], "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=cli_env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {"model.onnx", "model.int8.onnx", "config.json", "export.json", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "export.json").read_text())["inputs"][:2] == ["input_ids", "attention_mask"]
    assert str(out / "model.int8.onnx") in done.stdout
    missing = subprocess.run([*cmd[:-4], "--version", "9", "--tracking-uri", store["uri"]], capture_output=True, text=True, env=cli_env)
    assert missing.returncode == 2 and missing.stderr.startswith("error: cannot load models:/tiny/9") and "Traceback" not in missing.stderr
    no_version = subprocess.run(
        [*cmd[:2], "--model", "models:/tiny", "--tracking-uri", store["uri"]], capture_output=True, text=True, env=cli_env
    )
    assert no_version.returncode == 2 and no_version.stderr.startswith("error: --model models:/tiny names no version or alias")

    texts = ["great superb moving film", "awful dull boring film", "", "brilliant fun charming but long and a bit slow", "meh"]
    source = tmp_path / "in.csv"
    pd.DataFrame({"text": texts}).to_csv(source, index=False)
    runs = {}
    for runtime, quantize in (("torch", "int8"), ("onnx", "none"), ("onnx", "int8")):
        target = tmp_path / f"{runtime}-{quantize}.csv"
        summary = predict(
            PredictConfig(
                input=str(source),
                output=str(target),
                model="models:/tiny@champion",
                tracking_uri=store["uri"],
                runtime=runtime,
                quantize=quantize,
                cache_dir=str(tmp_path / "cache"),
                precision="fp32",
            )
        )
        assert summary["rows_predicted"] == 4 and summary["runtime"] == ("torch (fp32)" if runtime == "torch" else f"onnx ({quantize})")
        runs[(runtime, quantize)] = pd.read_csv(target)
    torch_out, fp32, int8 = runs[("torch", "int8")], runs[("onnx", "none")], runs[("onnx", "int8")]
    assert (fp32["proba_pos"] - torch_out["proba_pos"]).abs().max() < 1e-4  # the same network
    assert fp32["predicted_label"].tolist()[:2] == torch_out["predicted_label"].tolist()[:2]
    assert (int8["proba_pos"] - torch_out["proba_pos"]).abs().max() < 0.05  # int8 weights: close, not equal
    exports = [p for p in (tmp_path / "cache" / "onnx").iterdir() if p.is_dir()]
    assert len(exports) == 1 and {"model.onnx", "model.int8.onnx"} <= {p.name for p in exports[0].iterdir()}  # one per model


def test_mlflow_serving_and_pyfunc_answer_as_predict_does(store, tmp_path):
    from tests.flows.serving import serve_matches_predict

    frame = pd.DataFrame({"text": ["great superb moving film", "awful dull boring film", "", "brilliant fun charming"]})
    answers = serve_matches_predict(tmp_path, store["uri"], "models:/tiny@champion", frame)
    assert {"predicted_label", "confidence", "proba_neg", "proba_pos", "predict_error"} <= set(answers.columns)


def _evaluate(store, tmp_path, cli_env, root, *args):
    summary = tmp_path / "evaluation.json"
    done = subprocess.run(
        [sys.executable, "flows/evaluate.py", "--name", "tiny", "--tracking-uri", store["uri"], f"--summary-json={summary}"]
        + ["model.name_or_path=unused", f"cache.dir={store['root'] / 'cache'}", *args],
        cwd=root,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    return done, (json.loads(summary.read_text()) if summary.exists() else None)


def test_evaluate_scores_versions_on_new_rows_as_the_run_did_and_counts_bad_rows(store, tmp_path, cli_env, request):
    client, root = _client(store["uri"]), request.config.rootpath
    split_key = client.get_model_version("tiny", "1").tags["data_fingerprint"]
    test_rows = pd.read_parquet(store["root"] / "cache" / "split" / split_key / "test.parquet")[["text", "label"]]
    test_rows.to_csv(tmp_path / "test.csv", index=False)
    done, summary = _evaluate(store, tmp_path, cli_env, root, f"data.path={tmp_path / 'test.csv'}", "--version", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    scored = summary["versions"][0]["metrics"]
    for name in ("accuracy", "f1_macro"):  # the run's own test rows give the run's own test figures
        assert abs(scored[name] - store["first"]["test_metrics"][name]) <= 0.005, (name, scored[name], store["first"]["test_metrics"][name])

    bad = pd.DataFrame({"text": ["", "a fine film", "great superb moving film"], "label": ["pos", "meh", "pos"]})
    pd.concat([test_rows, bad], ignore_index=True).to_csv(tmp_path / "march.csv", index=False)
    done, summary = _evaluate(
        store, tmp_path, cli_env, root, f"data.path={tmp_path / 'march.csv'}", "--version", "1", "--compare-with", "2"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (summary["rows_in"], summary["rows_kept"], summary["rows_quarantined"]) == (len(test_rows) + 3, len(test_rows) + 1, 2)
    assert summary["quarantine_reasons"] == {"null_text": 1, "label_not_in_labels": 1}  # an empty CSV cell is null
    first = summary["versions"][0]
    assert [v["version"] for v in summary["versions"]] == [1, 2] and set(summary["difference"]) >= {"accuracy", "f1_macro"}
    assert set(first["metrics"]) >= {"accuracy", "f1_macro", "roc_auc"} and "v2 - v1" in done.stdout
    run = client.get_run(first["run_id"])
    assert run.data.tags["model_version"] == "1" and "eval_accuracy" in run.data.metrics and run.data.metrics["rows_quarantined"] == 2
    assert "evaluation/confusion_evaluation.png" in {a.path for a in client.list_artifacts(first["run_id"], "evaluation")}


def test_evaluate_refuses_a_version_of_another_task_type_with_one_line(store, tmp_path, cli_env, request):
    done, summary = _evaluate(
        store, tmp_path, cli_env, request.config.rootpath, f"data.path={store['data']}", "task=regression", "--version", "1"
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and summary is None and "Traceback" not in done.stderr
    assert len(errors) == 1 and "tiny v1 is a classification model and the data is read for task=regression" in errors[0], done.stderr[
        -2000:
    ]


def test_every_run_explains_validation_rows_and_predict_explains_each_row(store, tmp_path, cli_env, request):
    from tests.flows.explaining import assert_run_explains, predict_explained, words_in_order

    found = assert_run_explains(store["uri"], store["first"]["run_id"])
    assert {row["kind"] for row in found["explained"]} <= {"error", "correct"}
    card = _client(store["uri"]).get_model_version("tiny", "1").description
    assert "## Why it decides" in card and "explanations.html" in card
    texts = ["a great, superb moving film", "awful dull boring film", ""]
    result = predict_explained(request.config.rootpath, cli_env, store["uri"], "models:/tiny/1", pd.DataFrame({"text": texts}), tmp_path)
    assert all(words_in_order(t, e) and len(e) >= 4 for t, e in zip(texts[:2], result["explanation"][:2]))
    assert not isinstance(result["explanation"][2], list) and result["predict_error"][2] == "null or empty text"
    assert all(d >= 0 for d in result["explanation_delta"][:2]) and pd.isna(result["explanation_delta"][2])  # each row's own gap
    top = predict_explained(
        request.config.rootpath, cli_env, store["uri"], "models:/tiny/1", pd.DataFrame({"text": texts[:1]}), tmp_path, "--explain-top", "2"
    )
    assert len(top["explanation"][0]) == 2 and words_in_order(texts[0], top["explanation"][0])
    onnx = subprocess.run(
        [sys.executable, "flows/predict.py", "x.csv", "y.csv", "--runtime", "onnx", "--explain", "--tracking-uri", store["uri"]],
        cwd=request.config.rootpath,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [line for line in onnx.stderr.splitlines() if line.startswith("error:")]
    assert onnx.returncode == 2 and len(errors) == 1 and "--explain" in errors[0] and "Traceback" not in onnx.stderr
