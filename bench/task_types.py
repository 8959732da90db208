"""Each non-default task type on its real example data against a TF-IDF baseline fitted on the same split.

    python bench/task_types.py [--only multi_label,regression,pairs] [--max-rows N]

For every example (examples/*.yaml, data from examples/prepare_data.py) it runs the real flow
(`python flows/finetune.py --config ...`) into a scratch MLflow store and cache, then fits the
classical baseline on the very train rows the flow used and scores the same test rows:
  multi_label  TF-IDF word 1-2-grams + one-vs-rest logistic regression, thresholds tuned on validation
               by the same per-label rule as the model; metric f1_micro
  regression   TF-IDF + ridge regression; metric spearman
  pairs        TF-IDF of each side and their elementwise product + ridge (and zero-shot TF-IDF cosine); spearman
Prints both side by side with the wall time; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flows import env  # noqa: E402

env.apply()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression, Ridge  # noqa: E402
from sklearn.multiclass import OneVsRestClassifier  # noqa: E402

from examples.prepare_data import prepare  # noqa: E402
from task_types import get_task_type  # noqa: E402
from task_types.multi_label import multi_label_metrics, tune_thresholds  # noqa: E402
from task_types.regression import regression_metrics  # noqa: E402

EXAMPLES = {"multi_label": ("examples/multi_label.yaml", "f1_micro"), "regression": ("examples/regression.yaml", "spearman"),
            "pairs": ("examples/pairs.yaml", "spearman")}


def tfidf() -> TfidfVectorizer:
    return TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)


def baseline_multi_label(parts: dict, spec: dict) -> dict:
    task_type = get_task_type("multi_label")
    vectorizer = tfidf().fit(parts["train"]["text"])
    x = {name: vectorizer.transform(p["text"]) for name, p in parts.items()}
    y = {name: np.asarray(task_type.encode(p["label"], spec), dtype=int) for name, p in parts.items()}
    trainable = y["train"].sum(axis=0) > 0  # a label never positive in training gets probability 0
    model = OneVsRestClassifier(LogisticRegression(max_iter=1000, C=4.0)).fit(x["train"], y["train"][:, trainable])

    def proba(name):
        out = np.zeros(y[name].shape)
        out[:, trainable] = model.predict_proba(x[name])
        return out

    decision = tune_thresholds(y["validation"], proba("validation"))
    return {k: v for k, v in multi_label_metrics(y["test"], proba("test"), decision["thresholds"], spec["labels"]).items() if k != "per_label"}


def baseline_regression(parts: dict, pairs: bool) -> dict:
    if not pairs:
        vectorizer = tfidf().fit(parts["train"]["text"])
        x = {name: vectorizer.transform(p["text"]) for name, p in parts.items()}
    else:
        vectorizer = tfidf().fit(pd.concat([parts["train"]["text"], parts["train"]["text_pair"]]))
        x = {}
        for name, p in parts.items():
            a, b = vectorizer.transform(p["text"]), vectorizer.transform(p["text_pair"])
            x[name] = sp.hstack([a, b, a.multiply(b)]).tocsr()
    y = {name: p["label"].astype(float).to_numpy() for name, p in parts.items()}
    best = max((1.0, 3.0, 10.0, 0.3), key=lambda alpha: regression_metrics(y["validation"], Ridge(alpha=alpha).fit(x["train"], y["train"]).predict(x["validation"]))["spearman"])
    metrics = regression_metrics(y["test"], Ridge(alpha=best).fit(x["train"], y["train"]).predict(x["test"]))
    if pairs:  # zero-shot: cosine of the two TF-IDF vectors
        a, b = vectorizer.transform(parts["test"]["text"]), vectorizer.transform(parts["test"]["text_pair"])
        metrics["zero_shot_cosine_spearman"] = regression_metrics(y["test"], np.asarray(a.multiply(b).sum(axis=1)).ravel())["spearman"]
    return metrics


def run_example(name: str, scratch: Path, max_rows: int | None) -> dict:
    config, metric = EXAMPLES[name]
    summary_path = scratch / f"{name}.json"
    args = [sys.executable, "flows/finetune.py", "--config", config, f"cache.dir={scratch / 'cache'}",
            f"tracking.uri=sqlite:///{scratch / 'mlruns' / 'mlflow.db'}", f"--summary-json={summary_path}"]
    if max_rows:
        args.append(f"data.max_rows={max_rows}")
    (scratch / "mlruns").mkdir(exist_ok=True)
    started = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{name}: the flow failed:\n{done.stderr[-3000:]}")
    summary = json.loads(summary_path.read_text())
    uri = f"sqlite:///{scratch / 'mlruns' / 'mlflow.db'}"
    split_key = MlflowClient(uri, uri).get_run(summary["run_id"]).data.tags["data_fingerprint"]
    folder = scratch / "cache" / "split" / split_key
    parts = {s: pd.read_parquet(folder / f"{s}.parquet") for s in ("train", "validation", "test")}
    spec = json.loads((folder / "target.json").read_text())
    started = time.perf_counter()
    base = baseline_multi_label(parts, spec) if name == "multi_label" else baseline_regression(parts, name == "pairs")
    base_seconds = time.perf_counter() - started
    model = summary["test_metrics"]
    return {"dataset": name, "metric": metric, "rows": {s: len(p) for s, p in parts.items()}, "model": model[metric],
            "baseline": base[metric], "beats": model[metric] > base[metric], "model_test": model, "baseline_test": base,
            "flow_seconds": round(wall, 1), "baseline_seconds": round(base_seconds, 1), "promoted": summary["promoted"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(EXAMPLES), help="comma-separated examples to run (default: all)")
    parser.add_argument("--max-rows", type=int, help="override data.max_rows of every example")
    args = parser.parse_args()
    prepare(ROOT / ".cache" / "example-data")
    results = []
    with tempfile.TemporaryDirectory(prefix="ff-bench-tasks-") as tmp:
        for name in args.only.split(","):
            result = run_example(name, Path(tmp), args.max_rows)
            results.append(result)
            print(f"{name:<12} rows {result['rows']}  test {result['metric']}: model {result['model']:.4f} vs TF-IDF baseline "
                  f"{result['baseline']:.4f} ({'beats' if result['beats'] else 'does NOT beat'} it by {result['model'] - result['baseline']:+.4f}); "
                  f"flow {result['flow_seconds']} s, baseline {result['baseline_seconds']} s", flush=True)
    print(json.dumps({r["dataset"]: {k: r[k] for k in ("metric", "model", "baseline", "beats", "flow_seconds")} for r in results}))


if __name__ == "__main__":
    main()
