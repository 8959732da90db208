"""Helpers for the serving tests: a real `mlflow models serve` on 127.0.0.1, the same rows through flows/predict.py,
and a comparison of the two (same columns; numbers within 1e-5, everything else equal)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from flows.predict import predict
from schemas.predict import PredictConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_serve(tracking_uri: str, model_uri: str, timeout: float = 180):
    """`mlflow models serve --env-manager local` for model_uri on a free port; yields the base URL, stops it after."""
    port = free_port()
    # MLflow starts the server with `uvicorn` from PATH: the venv's, as `make serve` puts it there.
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mlflow models serve did not start:\n{server.stdout.read()[-3000:] if server.stdout else ''}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def invoke(url: str, frame: pd.DataFrame, params: dict | None = None) -> tuple[int, dict]:
    """POST the rows to /invocations; (status, the JSON answer)."""
    body = json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False)), "params": params or {}}).encode()
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def predicted_with_the_cli_flow(tmp_path: Path, tracking_uri: str, model_uri: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows through the predict flow (fp32), read back from its JSONL output."""
    source, out = tmp_path / "serve-in.jsonl", tmp_path / "serve-out.jsonl"
    frame.to_json(source, orient="records", lines=True)
    predict(PredictConfig(input=str(source), output=str(out), model=model_uri, tracking_uri=tracking_uri, precision="fp32"))
    return pd.read_json(out, lines=True, dtype=False)


def assert_same_answers(served: pd.DataFrame, predicted: pd.DataFrame) -> None:
    """Same columns in the same order, numbers within 1e-5, everything else (labels, JSON, errors) equal."""
    assert list(served.columns) == list(predicted.columns), (list(served.columns), list(predicted.columns))
    assert len(served) == len(predicted)
    for column in predicted.columns:
        a, b = served[column], predicted[column]
        numeric = pd.to_numeric(a, errors="coerce"), pd.to_numeric(b, errors="coerce")
        if a.map(lambda v: isinstance(v, (int, float)) or v is None).all() and numeric[1].notna().any():
            assert np.allclose(numeric[0].astype(float), numeric[1].astype(float), atol=1e-5, equal_nan=True), column
        else:
            same = [(None if pd.isna(x) else str(x)) == (None if pd.isna(y) else str(y)) for x, y in zip(a, b)]
            assert all(same), (column, a.tolist(), b.tolist())


def serve_matches_predict(tmp_path: Path, tracking_uri: str, model_uri: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The model's answers through mlflow models serve, mlflow.pyfunc.load_model and flows/predict.py agree; returns them."""
    import mlflow

    predicted = predicted_with_the_cli_flow(tmp_path, tracking_uri, model_uri, frame)
    with mlflow_serve(tracking_uri, model_uri) as url:
        status, answer = invoke(url, frame, {"precision": "fp32"})
        assert status == 200, answer
        served = pd.DataFrame(answer["predictions"])
        missing_status, missing = invoke(url, frame.drop(columns=[frame.columns[0]]), {"precision": "fp32"})
        assert 400 <= missing_status < 500 and frame.columns[0] in json.dumps(missing), (missing_status, missing)
    assert_same_answers(served, predicted)
    mlflow.set_tracking_uri(tracking_uri)
    loaded = mlflow.pyfunc.load_model(model_uri).predict(frame, params={"precision": "fp32"})
    assert_same_answers(loaded.reset_index(drop=True), predicted)
    return predicted
