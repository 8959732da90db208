"""NER on the WNUT-16 tweets (examples/ner.yaml) against a most-frequent-tag-per-word baseline on the same split.

    python bench/token_classification.py [--max-rows N] [--set key=value ...]

Runs the real flow (`python flows/finetune.py --config examples/ner.yaml`) into a scratch MLflow store and cache,
then fits the baseline on the very train sentences the flow used: each word form gets the tag it carries most
often in training (a form never seen gets O), the sequence is made IOB2-valid the way the training data is
repaired (an I-X that starts an entity becomes B-X), and it is scored on the same test sentences with the same
strict seqeval metrics as the model. Prints both; the last line is JSON. Acceptance: the model's test entity_f1
beats the baseline's by at least 0.10 absolute.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.runtime import env  # noqa: E402

env.apply()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from examples.prepare_data import prepare  # noqa: E402
from task_types.token_classification import word_metrics  # noqa: E402
from task_types.token_classification.tagging import repair_tags  # noqa: E402

CONFIG = "examples/ner.yaml"
MARGIN = 0.10


def most_frequent_tag_baseline(train: pd.DataFrame, test: pd.DataFrame, spec: dict) -> dict:
    """Test metrics of tagging each word with its most frequent training tag (O for unseen words)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for words, tags in zip(train["text"], train["label"]):
        for word, tag in zip(json.loads(words), json.loads(tags)):
            counts[word][tag] += 1
    best = {word: c.most_common(1)[0][0] for word, c in counts.items()}
    index = {tag: i for i, tag in enumerate(spec["labels"])}
    truth, predicted = [], []
    for words, tags in zip(test["text"], test["label"]):
        guess, _ = repair_tags([best.get(w, "O") for w in json.loads(words)], spec["scheme"])
        truth.append(np.array([index[t] for t in json.loads(tags)]))
        predicted.append(np.array([index[t] for t in guess]))
    metrics = word_metrics(truth, predicted, spec["labels"], spec["scheme"])
    return {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}


def run(scratch: Path, overrides: list[str]) -> dict:
    summary_path = scratch / "ner.json"
    uri = f"sqlite:///{scratch / 'mlruns' / 'mlflow.db'}"
    (scratch / "mlruns").mkdir(exist_ok=True)
    args = [
        sys.executable,
        "flows/finetune.py",
        "--config",
        CONFIG,
        f"cache.dir={scratch / 'cache'}",
        f"tracking.uri={uri}",
        f"--summary-json={summary_path}",
        *overrides,
    ]
    started = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the flow failed:\n{done.stderr[-3000:]}")
    print(done.stdout[-2500:], flush=True)
    summary = json.loads(summary_path.read_text())
    split_key = MlflowClient(uri, uri).get_run(summary["run_id"]).data.tags["data_fingerprint"]
    folder = scratch / "cache" / "split" / split_key
    parts = {s: pd.read_parquet(folder / f"{s}.parquet") for s in ("train", "validation", "test")}
    spec = json.loads((folder / "target.json").read_text())
    base = most_frequent_tag_baseline(parts["train"], parts["test"], spec)
    model = summary["test_metrics"]
    words = {s: int(sum(len(json.loads(t)) for t in p["text"])) for s, p in parts.items()}
    return {
        "sentences": {s: len(p) for s, p in parts.items()},
        "words": words,
        "model": model["entity_f1"],
        "baseline": base["entity_f1"],
        "margin": model["entity_f1"] - base["entity_f1"],
        "model_test": model,
        "baseline_test": base,
        "flow_seconds": round(wall, 1),
        "promoted": summary["promoted"],
        "quarantine_reasons": summary["quarantine_reasons"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-rows", type=int, help="data.max_rows: a stratified sample of the tweets (quick runs)")
    parser.add_argument("--set", action="append", default=[], metavar="key=value", help="extra config override for the flow")
    args = parser.parse_args()
    prepare(ROOT / ".cache" / "example-data")
    overrides = [*args.set, *([f"data.max_rows={args.max_rows}"] if args.max_rows else [])]
    with tempfile.TemporaryDirectory(prefix="ff-bench-ner-") as tmp:
        r = run(Path(tmp), overrides)
    passed = r["margin"] >= MARGIN
    print(f"wnut16 sentences {r['sentences']} words {r['words']}")
    print(
        f"test entity_f1 (strict IOB2): model {r['model']:.4f} vs most-frequent-tag baseline {r['baseline']:.4f} "
        f"({r['margin']:+.4f}; acceptance >= +{MARGIN}: {'PASS' if passed else 'FAIL'}); flow {r['flow_seconds']} s"
    )
    print(f"model    {json.dumps({k: round(v, 4) for k, v in r['model_test'].items()})}")
    print(f"baseline {json.dumps({k: round(v, 4) for k, v in r['baseline_test'].items()})}")
    print(
        json.dumps(
            {
                "dataset": "wnut16",
                "metric": "entity_f1",
                "model": r["model"],
                "baseline": r["baseline"],
                "margin": r["margin"],
                "passes": passed,
                "flow_seconds": r["flow_seconds"],
                "sentences": r["sentences"],
                "overrides": overrides,
            }
        )
    )


if __name__ == "__main__":
    main()
