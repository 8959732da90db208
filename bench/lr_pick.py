"""Does train.learning_rate=auto pick the same rate in bf16 and in fp32? The range test on each bench's data, both ways.

    python bench/lr_pick.py [--only imbalanced,reviews,long,regression,multi_label_sample,imbalanced_800,long_800]

Each set runs the real flow (its own process, as the quality benches run it) twice, with train.precision=bf16 and
fp32, the fine-tuning after the range test cut to 2% of an epoch (train.epochs=0.02): the pick is all this measures.
Prints, per set and precision, the rate picked, the rate where the curve the pick reads is lowest, the rate where the
plain moving average of the loss is lowest (what the rule read before, divided by 20 for single-label classification
and 10 for the others) and the range test's seconds; last line JSON. bf16 needs a CPU with native bf16 (AVX512-BF16
or AMX) or a GPU; elsewhere both rows run fp32 and agree trivially.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._runner import ROOT, run_flow  # noqa: E402
from bench.defaults import runs  # noqa: E402
from bench.quality import DATASETS  # noqa: E402
from bench.task_types import EXAMPLES  # noqa: E402
from examples.prepare_data import prepare  # noqa: E402
from tasks.training.lr_range import smooth, steady  # noqa: E402

NAMES = ("imbalanced", "reviews", "long", "regression", "multi_label_sample", "imbalanced_800", "long_800")


def flow_options(folder: Path) -> dict[str, list[str]]:
    """Each set's overrides, as the quality, task-type and defaults benches run it (without their model names)."""
    sample = [o for o in runs(folder)["multi_label_sample"] if not o.startswith("registry.model_name=")]
    return {
        **{name: DATASETS[name] for name in ("imbalanced", "reviews", "long")},
        "regression": ["--config", EXAMPLES["regression"][0]],
        "multi_label_sample": sample,
        "imbalanced_800": [*DATASETS["imbalanced"], "data.max_rows=800"],
        "long_800": [*DATASETS["long"], "data.max_rows=800"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(NAMES), help="comma-separated sets (default: all; ~25 min on 2 cores)")
    args = parser.parse_args()
    prepare(ROOT / ".cache" / "example-data")
    rows = []
    with tempfile.TemporaryDirectory(prefix="ff-bench-lr-pick-") as tmp:
        options = flow_options(Path(tmp))
        for name in args.only.split(","):
            work = Path(tmp) / name  # one cache per set: the second precision re-uses the tokens
            work.mkdir()
            for precision in ("bf16", "fp32"):
                seen = set(glob.glob(str(work / "cache" / "lr_range" / "*" / "lr_range.json")))
                summary = run_flow(
                    work, *options[name], f"registry.model_name=lr-pick-{name}", "train.epochs=0.02", f"train.precision={precision}"
                )
                (made,) = set(glob.glob(str(work / "cache" / "lr_range" / "*" / "lr_range.json"))) - seen
                curve = json.loads(Path(made).read_text())
                rates = curve["rates"]
                row = {
                    "set": name,
                    "precision": precision,
                    "learning_rate": summary["learning_rate"],
                    "steady_lowest_at": rates[int(np.nanargmin(steady(curve["losses"])))],
                    "plain_average_lowest_at": rates[int(np.nanargmin(smooth(curve["losses"])))],
                    "range_test_seconds": curve["seconds"],
                }
                rows.append(row)
                print(
                    f"{name:<19} {precision:<5} picks {row['learning_rate']:.2e}  (median curve lowest at {row['steady_lowest_at']:.2e}; "
                    f"plain average lowest at {row['plain_average_lowest_at']:.2e})  range test {row['range_test_seconds']} s",
                    flush=True,
                )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
