"""Do the defaults (train.learning_rate=auto, train.layer_lr_decay=auto) beat the run's own baseline with nothing set?

    python bench/defaults.py [--only multi_label_sample,multi_label_full,reviews] [--set KEY=VALUE ...]

Runs (all offline after `make examples-data`), each the real flow in its own process, as a new user runs it:
  multi_label_sample  the disaster messages' 36 indicator columns with their own split: a seeded sample of 6,000
                      training and 1,000 validation messages plus the whole test split; task, columns and split
                      column only (the run the learning-rate issue was filed on)
  multi_label_full    examples/multi_label.yaml on all rows (the example sets no rate: the defaults choose it)
  reviews             the default job (python flows/finetune.py, nothing set)
Prints each run's validation and test metric against the run's own TF-IDF baseline, the rate the range test chose
and why, the range test's seconds as a share of the run, and the wall time; last line JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._runner import ROOT, run_flow  # noqa: E402
from examples.prepare_data import prepare  # noqa: E402

DISASTER = ROOT / ".cache" / "example-data" / "disaster_messages.csv"
NOT_LABELS = {"id", "message", "original", "genre", "split"}


def multi_label_sample(folder: Path, seed: int = 0) -> tuple[Path, list[str]]:
    """6,000 training and 1,000 validation messages (seeded) and the whole test split, as a CSV; its label columns."""
    frame = pd.read_csv(DISASTER)
    parts = [
        frame[frame["split"] == "train"].sample(6000, random_state=seed),
        frame[frame["split"] == "validation"].sample(1000, random_state=seed),
        frame[frame["split"] == "test"],
    ]
    path = folder / "disaster_6k_1k_test.csv"
    pd.concat(parts).to_csv(path, index=False)
    return path, [c for c in frame.columns if c not in NOT_LABELS and not c.startswith("Unnamed")]


def runs(folder: Path) -> dict[str, list[str]]:
    path, labels = multi_label_sample(folder)
    return {
        "multi_label_sample": [
            "task=multi_label",
            f"data.path={path}",
            "data.text_column=message",
            f"data.label_columns=[{','.join(labels)}]",
            "data.split_column=split",
            "registry.model_name=defaults-multi-label-sample",
        ],
        "multi_label_full": ["--config", "examples/multi_label.yaml", "registry.model_name=defaults-multi-label"],
        "reviews": ["registry.model_name=defaults-reviews"],
    }


def defaults_row(name: str, summary: dict) -> dict:
    """One run's metric against its own baseline, the rate the defaults chose and the range test's share; printed."""
    val, test = summary["val_metrics"], summary["test_metrics"] or {}
    metric = next(m for m in ("f1_micro", "spearman", "entity_f1", "f1", "f1_macro") if m in val)
    base_val, base_test = summary["baseline_val_metrics"], summary["baseline_test_metrics"] or {}
    row = {
        "run": name,
        "metric": metric,
        "val": round(val[metric], 4),
        "baseline_val": round(base_val[metric], 4),
        "test": round(test[metric], 4) if metric in test else None,
        "baseline_test": round(base_test[metric], 4) if metric in base_test else None,
        "test_accuracy": round(test["accuracy"], 4) if "accuracy" in test else None,
        "beats": val[metric] > base_val[metric] and (metric not in test or test[metric] > base_test[metric]),
        "learning_rate": summary["learning_rate"],
        "learning_rate_why": summary["learning_rate_why"],
        "lr_range_seconds": summary["lr_range_seconds"],
        "lr_range_share": round((summary["lr_range_seconds"] or 0) / summary["process_s"], 4),
        "rows": summary["rows_kept"],
        "wall_seconds": round(summary["process_s"], 1),
    }
    test_part = f"test {row['test']:.4f} (baseline {row['baseline_test']:.4f})" if row["test"] is not None else "no test split"
    print(
        f"{name:<19} {metric} val {row['val']:.4f} (baseline {row['baseline_val']:.4f})  {test_part}  "
        f"{'beats it' if row['beats'] else 'does NOT beat it'};  rate {row['learning_rate']:.2e} ({row['learning_rate_why']}), "
        f"range test {row['lr_range_seconds'] or 0:.1f} s = {100 * row['lr_range_share']:.1f}% of {row['wall_seconds']:.0f} s",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="multi_label_sample,multi_label_full,reviews", help="comma-separated runs (default: all)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides for every run (e.g. a fixed rate)")
    args = parser.parse_args()
    prepare(ROOT / ".cache" / "example-data")
    results = []
    with tempfile.TemporaryDirectory(prefix="ff-bench-defaults-") as tmp:
        planned = runs(Path(tmp))
        for name in args.only.split(","):
            summary = run_flow(Path(tmp), *planned[name], *args.set)
            row = defaults_row(name, summary)
            results.append(row)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
