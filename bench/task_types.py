"""Each non-default task type on its real example data against the run's own TF-IDF baseline.

    python bench/task_types.py [--only multi_label,regression,pairs] [--max-rows N] [key=value ...]

For every example (examples/*.yaml, data fetched by examples/prepare_data.py) it runs the real flow
(`python flows/finetune.py --config ...`) into a scratch MLflow store and cache. Every run fits the
task type's classical baseline on the very train rows the model used and scores the same test rows
(tasks/baseline.py): TF-IDF word 1-2-grams + one-vs-rest logistic regression with thresholds tuned
on validation by the model's rule (multi-label), + ridge regression (regression; for pairs each side
and their elementwise product). Prints both side by side with the wall time; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._runner import ROOT, run_flow  # noqa: E402
from examples.prepare_data import prepare  # noqa: E402

EXAMPLES = {
    "multi_label": ("examples/multi_label.yaml", "f1_micro"),
    "regression": ("examples/regression.yaml", "spearman"),
    "pairs": ("examples/pairs.yaml", "spearman"),
}


def compare(name: str, summary: dict, metric: str) -> dict:
    """The model's and the baseline's test figure on metric, from one run's summary."""
    model, baseline = summary["test_metrics"][metric], summary["baseline_test_metrics"][metric]
    return {
        "dataset": name,
        "metric": metric,
        "model": round(model, 4),
        "baseline": round(baseline, 4),
        "beats": model > baseline,
        "gain": round(model - baseline, 4),
        "flow_seconds": round(summary["process_s"], 1),
        "promoted": summary["promoted"],
        "rows_kept": summary["rows_kept"],
    }


def report_line(result: dict) -> str:
    return (
        f"{result['dataset']:<14} test {result['metric']}: model {result['model']:.4f} vs TF-IDF baseline {result['baseline']:.4f} "
        f"({'beats' if result['beats'] else 'does NOT beat'} it by {result['gain']:+.4f}); {result['rows_kept']} rows, "
        f"flow {result['flow_seconds']} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(EXAMPLES), help="comma-separated examples to run (default: all)")
    parser.add_argument("--max-rows", type=int, help="override data.max_rows of every example")
    parser.add_argument("overrides", nargs="*", help="further config overrides for every run, e.g. train.epochs=3")
    args = parser.parse_intermixed_args()
    prepare(ROOT / ".cache" / "example-data")
    results = []
    with tempfile.TemporaryDirectory(prefix="ff-bench-tasks-") as tmp:
        for name in args.only.split(","):
            config, metric = EXAMPLES[name]
            overrides = ["--config", config, *([f"data.max_rows={args.max_rows}"] if args.max_rows else []), *args.overrides]
            results.append(compare(name, run_flow(Path(tmp), *overrides), metric))
            print(report_line(results[-1]), flush=True)
    print(json.dumps({r["dataset"]: {k: r[k] for k in ("metric", "model", "baseline", "beats", "flow_seconds")} for r in results}))


if __name__ == "__main__":
    main()
