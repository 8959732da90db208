"""What a re-run costs: cold, identical (warm) and learning-rate-changed runs of the default flow, and --help.

    .venv/bin/python bench/cache.py [--rows 4000] [extra key=value ...]

Each run is a real `python flows/finetune.py` process on the embedded defaults with
data.max_rows=ROWS, sharing one cache and one MLflow store in a temporary folder. The last
line is JSON: cold_s, warm_s, cold_steps_s, warm_steps_s, lr_change_pre_train_s (+ ratios), help_s (the median
of five `python flows/finetune.py --help` processes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runner import ROOT, print_run, run_flow  # noqa: E402

PRE_TRAIN = ("ingest", "clean", "split", "tokenize")


def help_seconds(runs: int = 5) -> float:
    """Median wall time of `python flows/finetune.py --help` as a process (what a user waits for)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "flows/finetune.py", "--help"], cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000, help="data.max_rows for every run")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        work = Path(tmp)
        common = [f"data.max_rows={args.rows}", *args.overrides]
        cold = run_flow(work, *common)
        print_run("cold", cold)
        warm = run_flow(work, *common)
        print_run("warm", warm)
        lr = run_flow(work, *common, "train.learning_rate=5e-5")
        print_run("new lr", lr)
    pre_train = sum(lr["step_seconds"][name] for name in PRE_TRAIN)
    result = {
        "cold_s": round(cold["process_s"], 2),
        "warm_s": round(warm["process_s"], 2),
        "cold_steps_s": round(cold["steps_s"], 2),
        "warm_steps_s": round(warm["steps_s"], 2),
        "lr_change_pre_train_s": round(pre_train, 3),
        "warm_over_cold": round(warm["process_s"] / cold["process_s"], 3),
        "warm_steps_over_cold_steps": round(warm["steps_s"] / cold["steps_s"], 4),
        "startup_s": round(cold["startup_s"], 2),
        "help_s": round(help_seconds(), 2),
    }
    print(
        f"identical re-run: steps {result['warm_steps_over_cold_steps']:.1%} of cold (target <= 5%), "
        f"whole run {result['warm_over_cold']:.1%} of cold (target <= 25%); "
        f"after a learning-rate change ingest..tokenize took {pre_train:.2f}s (target < 2 s); "
        f"identical re-run {result['warm_s']:.1f} s of process wall time (target <= 8 s); --help {result['help_s']:.2f} s (target <= 3 s)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
