"""task=token_classification end to end: the real flow, Prefect, MLflow and flows/predict.py with a tiny random BERT.

A synthetic CoNLL file (IOB2, PER/LOC, bad sentences, one sentence longer than train.max_length) trains,
registers, gates and predicts spans; then a POS-style run (plain tags from JSONL lists) needs no NER option.
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

PEOPLE = [["john"], ["mary", "smith"], ["ahmed"], ["li", "wei"]]
PLACES = [["paris"], ["new", "york"], ["tokyo"], ["lagos"]]
FILLER = ["visited", "left", "loves", "saw", "today", "again", "with", "friends"]


def sentence(rng: random.Random, i: int) -> list[tuple[str, str]]:
    person, place = rng.choice(PEOPLE), rng.choice(PLACES)
    words = [(w, ("B-PER" if k == 0 else "I-PER")) for k, w in enumerate(person)]
    words += [(rng.choice(FILLER), "O")]
    words += [(w, ("B-LOC" if k == 0 else "I-LOC")) for k, w in enumerate(place)]
    words += [(rng.choice(FILLER), "O"), (str(i), "O")]
    return words


def conll_text(n: int = 60, seed: int = 0) -> str:
    rng = random.Random(seed)
    blocks = ["-DOCSTART-\tO"]
    for i in range(n):
        blocks.append("\n".join(f"{w}\t{t}" for w, t in sentence(rng, i)))
    long = [pair for j in range(12) for pair in sentence(rng, 1000 + j)]  # ~70 words: longer than max_length 32
    blocks.append("\n".join(f"{w}\t{t}" for w, t in long))
    blocks.append("mary\tI-PER\nleft\tO")  # an I- that starts an entity: invalid_tag_sequence
    blocks.append("john\tB-PER\nsaw")  # no tag column on a line: token_tag_mismatch
    return "\n\t\n".join(blocks) + "\n"  # WNUT style: a line holding only a tab between sentences


POS = {"the": "DET", "a": "DET", "dog": "NOUN", "cat": "NOUN", "runs": "VERB", "sleeps": "VERB", "quickly": "ADV", "here": "ADV"}


def pos_rows(n: int = 60, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [
            rng.choice(["the", "a"]),
            rng.choice(["dog", "cat"]),
            rng.choice(["runs", "sleeps"]),
            rng.choice(["quickly", "here"]),
            str(i),
        ]
        rows.append({"tokens": words, "pos": [POS.get(w, "NUM") for w in words]})
    return rows


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir, prefect_server, empty_store):
    import shutil

    root = tmp_path_factory.mktemp("tokens")
    (root / "mlruns").mkdir()
    shutil.copy(empty_store, root / "mlruns" / "mlflow.db")
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    (root / "ner.conll").write_text(conll_text())
    (root / "ner2.conll").write_text(conll_text(n=40, seed=7))
    pd.DataFrame(pos_rows()).to_json(root / "pos.jsonl", orient="records", lines=True)

    def config(**tree) -> FinetuneConfig:
        base = {
            "model": {"name_or_path": str(tiny_model_dir)},
            "tracking": {"uri": uri},
            "cache": {"dir": str(root / "cache")},
            "train": {"epochs": 3, "batch_size": 8, "learning_rate": 3e-3, "max_length": 32, "precision": "fp32"},
        }
        for key, value in tree.items():
            base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
        return FinetuneConfig.model_validate(base)

    ner = finetune(
        config(
            task="token_classification",
            data={"path": str(root / "ner.conll")},
            registry={"model_name": "tiny-ner", "gates": {"entity_f1": 0.0, "token_accuracy": 0.0}, "beat_baseline": False},
        )
    )
    ner2 = finetune(
        config(
            task="token_classification",
            data={"path": str(root / "ner2.conll")},
            registry={
                "model_name": "tiny-ner",
                "gates": {"entity_f1": 0.0, "token_accuracy": 0.0},
                "min_delta": 1.0,
                "beat_baseline": False,
            },
        )
    )
    pos = finetune(
        config(
            task="token_classification",
            data={"path": str(root / "pos.jsonl"), "text_column": "tokens", "label_column": "pos"},
            registry={"model_name": "tiny-pos", "gates": {"token_accuracy": 0.0}, "beat_baseline": False},
        )
    )
    return {"root": root, "uri": uri, "ner": ner, "ner2": ner2, "pos": pos}


def _predict(runs, tmp_path, frame, name, suffix=".csv", *args):
    source, out = tmp_path / f"in{suffix}", tmp_path / "out.jsonl"
    frame.to_csv(source, index=False) if suffix == ".csv" else frame.to_json(source, orient="records", lines=True)
    done = subprocess.run(
        [sys.executable, "flows/predict.py", str(source), str(out), "--name", name, "--tracking-uri", runs["uri"], *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return pd.read_json(out, lines=True, dtype=False)


def test_ner_trains_registers_gates_and_reports(runs):
    summary, client = runs["ner"], MlflowClient(runs["uri"], runs["uri"])
    assert summary["task"] == "token_classification" and summary["promoted"]
    assert (summary["rows_in"], summary["rows_kept"], summary["rows_quarantined"]) == (63, 61, 2)
    assert summary["quarantine_reasons"] == {"invalid_tag_sequence": 1, "token_tag_mismatch": 1}
    assert {"entity_f1", "entity_precision", "entity_recall", "token_accuracy", "token_f1_macro"} <= set(summary["val_metrics"])
    assert 0 <= summary["test_metrics"]["entity_f1"] <= 1 and summary["texts_truncated"] == 0
    assert any(r.startswith("val_entity_f1") for r in summary["reasons"])
    assert "entity_f1" in format_summary(summary, runs["uri"])
    run = client.get_run(summary["run_id"])
    assert {"val_entity_f1", "test_token_accuracy", "val_f1_PER", "val_f1_LOC"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(summary["run_id"], "evaluation")}
    assert {"evaluation/per_type_f1_validation.png", "evaluation/per_type_test.csv", "evaluation/decision.json"} <= artifacts
    report = json.loads(open(client.download_artifacts(summary["run_id"], "data/data_report.json")).read())
    tagging = report["tagging"]
    assert tagging["scheme"] == "IOB2" and tagging["entity_types"] == ["LOC", "PER"]
    assert sum(tagging["sentences_windowed"].values()) == 1  # the long sentence: windows, not truncation
    assert set(report["labels"]) == {"B-LOC", "B-PER", "I-LOC", "I-PER", "O"}
    version = client.get_model_version("tiny-ner", "1")
    assert version.tags["task"] == "token_classification" and version.tags["outputs"] == "words, tags, entities"
    assert "scheme **IOB2**" in version.description and "F1 per entity type" in version.description
    assert "uncased" in version.description and "constrained decode" in version.description
    signature = mlflow.models.get_model_info(f"runs:/{summary['run_id']}/model").signature
    assert [c.name for c in signature.outputs.inputs] == ["words", "tags", "entities", "predict_error"]


@pytest.mark.slow  # minutes of CPU on 2 cores: `make test-slow`
def test_ner_predicts_words_tags_and_spans_through_predict(runs, tmp_path):
    text = "mary smith visited new york , and mary smith loves lagos"
    frame = pd.DataFrame({"text": [text, "", "john " * 60]})
    result = _predict(runs, tmp_path, frame, "tiny-ner")
    words = json.loads(result.loc[0, "words"])
    tags = json.loads(result.loc[0, "tags"])
    assert words == text.split() and len(tags) == len(words)
    assert all(not (t.startswith("I-") and (i == 0 or tags[i - 1][2:] != t[2:] or tags[i - 1] == "O")) for i, t in enumerate(tags))
    for span in json.loads(result.loc[0, "entities"]):
        assert set(span) == {"type", "text", "start", "end", "score"} and text[span["start"] : span["end"]] == span["text"]
    assert result.loc[1, "predict_error"] == "null or empty text"
    assert len(json.loads(result.loc[2, "tags"])) == 60  # a text longer than the window: every word tagged
    pre = _predict(runs, tmp_path, pd.DataFrame({"text": [["mary", "smith", "visited", "tokyo"]]}), "tiny-ner", ".jsonl")
    assert json.loads(pre.loc[0, "words"]) == ["mary", "smith", "visited", "tokyo"]


def test_a_champion_trained_on_other_sentences_is_rescored_word_by_word(runs):
    summary = runs["ner2"]
    assert summary["model_version"] == 2 and not summary["promoted"]  # min_delta 1.0: it cannot beat the champion
    note = next(r for r in summary["reasons"] if "re-evaluated on this run's validation split" in r)
    assert "champion v1" in note and "entity_f1" in note


def test_pos_style_run_needs_no_ner_option(runs, tmp_path):
    summary, client = runs["pos"], MlflowClient(runs["uri"], runs["uri"])
    assert summary["promoted"] and set(summary["val_metrics"]) == {"token_accuracy", "token_f1_macro"}
    assert any("no version holds @champion yet" in r for r in summary["reasons"])
    artifacts = {a.path for a in client.list_artifacts(summary["run_id"], "evaluation")}
    assert {"evaluation/confusion_validation.png", "evaluation/per_tag_test.csv"} <= artifacts
    version = client.get_model_version("tiny-pos", "1")
    assert version.tags["outputs"] == "words, tags" and "plain tags" in version.description
    result = _predict(runs, tmp_path, pd.DataFrame({"tokens": ["the dog runs here"]}), "tiny-pos")  # the column it was trained on
    assert len(json.loads(result.loc[0, "tags"])) == 4 and "entities" not in result.columns


def test_mlflow_serving_and_pyfunc_answer_as_predict_does_word_by_word(runs, tmp_path):
    from tests.flows.serving import serve_matches_predict

    frame = pd.DataFrame({"text": ["Mary Smith visited Tokyo", "nothing here", ""]})
    answers = serve_matches_predict(tmp_path, runs["uri"], "models:/tiny-ner/1", frame)
    assert {"words", "tags", "entities"} <= set(answers.columns)


def test_ner_runs_explain_entities_and_predict_explains_them(runs, tmp_path, cli_env, request):
    from tests.flows.explaining import assert_run_explains, predict_explained

    assert_run_explains(runs["uri"], runs["ner"]["run_id"], faithfulness=False)
    result = predict_explained(
        request.config.rootpath, cli_env, runs["uri"], "models:/tiny-ner/1", pd.DataFrame({"text": ["mary smith visited tokyo"]}), tmp_path
    )
    explanation, entities = result["explanation"][0], json.loads(result["entities"][0])
    assert isinstance(explanation, (dict, list)) and len(explanation) == len(entities)  # one word list per predicted entity
