"""Helpers for the explanation checks of the end-to-end tests: the run's artifacts and predict --explain's column."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient


def assert_run_explains(uri: str, run_id: str, faithfulness: bool = True) -> dict:
    """The run logged explanations.html and explanations.json (which parse) and the explain_* metrics; returns the JSON."""
    client = MlflowClient(uri, uri)
    paths = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    assert {"evaluation/explanations.html", "evaluation/explanations.json"} <= paths, paths
    folder = Path(client.download_artifacts(run_id, "evaluation"))
    found = json.loads((folder / "explanations.json").read_text())
    assert found["rows"] == len(found["explained"]) > 0 and "<span" in (folder / "explanations.html").read_text()
    metrics = client.get_run(run_id).data.metrics
    assert "explain_delta" in metrics and (not faithfulness or {"explain_comprehensiveness", "explain_sufficiency"} <= set(metrics))
    return found


def predict_explained(root, env, tracking_uri: str, model_uri: str, frame: pd.DataFrame, tmp: Path, *extra: str) -> pd.DataFrame:
    """flows/predict.py --explain on the rows; the output with its explanation column parsed."""
    source, out = tmp / "explain-in.jsonl", tmp / "explain-out.jsonl"
    frame.to_json(source, orient="records", lines=True)
    done = subprocess.run(
        [
            sys.executable,
            "flows/predict.py",
            str(source),
            str(out),
            "--model",
            model_uri,
            "--tracking-uri",
            tracking_uri,
            "--explain",
            *extra,
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "s a row" in done.stdout  # the cost per row is printed
    result = pd.read_json(out, lines=True, dtype=False)
    result["explanation"] = result["explanation"].map(lambda v: json.loads(v) if isinstance(v, str) else v)
    return result


def words_in_order(text: str, pairs: list) -> bool:
    """The explanation's words appear in the text in their order."""
    position = 0
    for word, _ in pairs:
        found = text.find(word, position)
        if found < 0:
            return False
        position = found + len(word)
    return True
