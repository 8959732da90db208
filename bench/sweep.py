"""A sweep, sequential vs K at once: wall times and the share of time spent outside fine-tune/evaluate.

    .venv/bin/python bench/sweep.py [--trials 8] [--parallel 2] [--rows 2000] [extra key=value ...]

Each mode is a real `python flows/sweep.py` process on the embedded defaults (MiniLM, Rotten
Tomatoes) with data.max_rows=ROWS, in a cold cache and MLflow store of its own (the same seed asks
the same trials, so a shared cache would hand the second mode trained models). Time outside
fine-tune/evaluate = the flow's wall time minus the trials' fine-tune + evaluate seconds (divided by
K when K run at once: the sweep keeps K trials running and starts the next as one ends, so only the
last trial's tail runs with a worker idle); it holds the shared steps, worker start-up, tokenize
re-use, MLflow logging of every trial, the sweep's artifacts and registering the best (target: <= 5%).
The last line is JSON.
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


def run_sweep(workdir: Path, trials: int, parallel: int, overrides: list[str]) -> dict:
    summary_path = workdir / "summary.json"
    cmd = [
        sys.executable,
        "flows/sweep.py",
        "--trials",
        str(trials),
        "--parallel",
        str(parallel),
        f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}",
        f"cache.dir={workdir / 'cache'}",
        f"--summary-json={summary_path}",
        *overrides,
    ]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"sweep failed ({done.returncode}):\n{done.stderr[-3000:]}")
    summary = json.loads(summary_path.read_text())
    trial_s = sum((s.get("fine_tune") or 0) + (s.get("evaluate") or 0) for s in summary["trial_step_seconds"])
    outside = max(0.0, summary["wall_seconds"] - trial_s / parallel)
    return {
        "process_s": round(wall, 1),
        "flow_s": summary["wall_seconds"],
        "trials_fine_tune_evaluate_s": round(trial_s, 1),
        "outside_s": round(outside, 1),
        "outside_share": round(outside / summary["wall_seconds"], 4),
        "trials": summary["trials"],
        "best_value": summary["best_value"],
        "tokenize_builds": summary["tokenize_builds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=2, help="K of the parallel mode")
    parser.add_argument("--rows", type=int, default=2000, help="data.max_rows for every trial")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides, e.g. train.epochs=1")
    args = parser.parse_args()
    common = [f"data.max_rows={args.rows}", *args.overrides]
    results = {}
    for label, k in (("sequential", 1), (f"parallel_{args.parallel}", args.parallel)):
        with tempfile.TemporaryDirectory(prefix=f"bench-sweep-{label}-") as tmp:
            results[label] = run_sweep(Path(tmp), args.trials, k, common)
        r = results[label]
        print(
            f"{label:<12} process {r['process_s']:7.1f}s, flow {r['flow_s']:7.1f}s, "
            f"trials' fine-tune+evaluate {r['trials_fine_tune_evaluate_s']:7.1f}s, "
            f"outside them {r['outside_s']:.1f}s = {r['outside_share']:.1%} (target <= 5%); trials {r['trials']}"
        )
    seq, par = results["sequential"], results[f"parallel_{args.parallel}"]
    print(f"--parallel {args.parallel} vs sequential: flow {par['flow_s'] / seq['flow_s']:.2f}x the time")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
