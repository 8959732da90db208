"""Extractive question answering on SQuAD v1.1 (examples/question_answering.yaml) against the run's own word-overlap
baseline, then predict on the test questions and score the output file.

    python bench/question_answering.py [--set key=value ...]

Runs the real flow into a scratch MLflow store and cache: a seeded 10,000-question sample of the training file
(validation carved from it by context) and the first 2,000 questions of the dev file as test, with the defaults.
Then `python flows/predict.py` answers the same 2,000 test questions with the registered version; exact match and
F1 are computed from the output file with the official normalisation and compared with the evaluate step's test
figures (same rows, same model: they should agree within 0.005), and every answer's offsets are checked to slice its
context. Prints the figures; the last line is JSON. Acceptance: test f1 >= 0.60 and >= 0.35 above the baseline's.
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

from tasks.runtime import env  # noqa: E402

env.apply()

import pandas as pd  # noqa: E402

from examples.prepare_data import prepare  # noqa: E402
from task_types.question_answering.squad import squad_scores  # noqa: E402

CONFIG = "examples/question_answering.yaml"


def flow(scratch: Path, overrides: list[str]) -> tuple[dict, float]:
    summary_path, uri = scratch / "qa.json", f"sqlite:///{scratch / 'mlruns' / 'mlflow.db'}"
    (scratch / "mlruns").mkdir(exist_ok=True)
    args = [sys.executable, "flows/finetune.py", "--config", CONFIG, f"cache.dir={scratch / 'cache'}", f"tracking.uri={uri}"]
    started = time.perf_counter()
    done = subprocess.run([*args, f"--summary-json={summary_path}", *overrides], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the flow failed:\n{done.stderr[-3000:]}")
    print(done.stdout[-2500:], flush=True)
    return json.loads(summary_path.read_text()), time.perf_counter() - started


def predict_and_score(scratch: Path, test_file: Path, version: int) -> dict:
    """Answers of the registered version on the test questions, scored from the output file."""
    out, uri = scratch / "answers.jsonl", f"sqlite:///{scratch / 'mlruns' / 'mlflow.db'}"
    args = [sys.executable, "flows/predict.py", str(test_file), str(out), "--name", "squad-qa", "--version", str(version)]
    started = time.perf_counter()
    done = subprocess.run([*args, "--tracking-uri", uri], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"predict failed:\n{done.stderr[-3000:]}")
    seconds = time.perf_counter() - started
    answers = pd.read_json(out, lines=True)
    golds = [a["text"] for a in answers["answers"]]
    answered = answers["start"].notna()
    sliced = all(
        c[int(s) : int(e)] == a
        for c, s, e, a, ok in zip(answers["context"], answers["start"], answers["end"], answers["answer"], answered)
        if ok
    )
    first = squad_scores(answers["answer"].fillna("").head(1000).tolist(), golds[:1000])
    return {
        "rows": len(answers),
        "seconds": round(seconds, 1),
        "offsets_slice_context": bool(sliced),
        **squad_scores(answers["answer"].fillna("").tolist(), golds),
        "first_1000": first,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="key=value", help="extra config overrides for the flow")
    args = parser.parse_args()
    data = prepare(ROOT / ".cache" / "example-data")
    with tempfile.TemporaryDirectory(prefix="ff-bench-qa-") as tmp:
        scratch = Path(tmp)
        summary, wall = flow(scratch, args.set)
        test, base = summary["test_metrics"], summary["baseline_test_metrics"]
        predicted = predict_and_score(scratch, data["squad_dev_2k.jsonl"], summary["model_version"])
    print(f"test (2,000 dev questions)  model f1 {test['f1']:.4f}  exact_match {test['exact_match']:.4f}")
    print(f"                            baseline f1 {base['f1']:.4f}  exact_match {base['exact_match']:.4f}  (word overlap)")
    print(f"predict on the same rows    f1 {predicted['f1']:.4f}  exact_match {predicted['exact_match']:.4f}  ({predicted['seconds']} s)")
    print(f"                            offsets slice the context: {predicted['offsets_slice_context']}")
    print(f"wall time of the flow       {wall:.0f} s")
    if summary.get("lr_range_seconds") is not None:
        share = summary["lr_range_seconds"] / wall
        print(
            f"learning rate               {summary['learning_rate']:.2e}: range test {summary['lr_range_seconds']:.1f} s ({share:.1%} of the flow)"
        )
    print(
        json.dumps(
            {
                "test_f1": round(test["f1"], 4),
                "test_exact_match": round(test["exact_match"], 4),
                "baseline_test_f1": round(base["f1"], 4),
                "baseline_test_exact_match": round(base["exact_match"], 4),
                "gain_f1": round(test["f1"] - base["f1"], 4),
                "val_f1": round(summary["val_metrics"]["f1"], 4),
                "predict_f1": round(predicted["f1"], 4),
                "predict_exact_match": round(predicted["exact_match"], 4),
                "predict_first_1000": {k: round(v, 4) for k, v in predicted["first_1000"].items()},
                "predict_vs_evaluate_f1": round(predicted["f1"] - test["f1"], 4),
                "offsets_slice_context": predicted["offsets_slice_context"],
                "rows": {"in": summary["rows_in"], "kept": summary["rows_kept"], "quarantined": summary["rows_quarantined"]},
                "wall_seconds": round(wall, 1),
                "learning_rate": summary["learning_rate"],
                "lr_range_seconds": summary["lr_range_seconds"],
                "overrides": args.set,
            }
        )
    )


if __name__ == "__main__":
    main()
