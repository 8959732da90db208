"""A sweep, sequential vs K at once: wall times and the share of time spent outside fine-tune/evaluate.

    .venv/bin/python bench/sweep.py [--trials 8] [--parallel 2] [--rows 2000] [extra key=value ...]

Each mode is a real `python flows/sweep.py` process on the embedded defaults (MiniLM, Rotten
Tomatoes) with data.max_rows=ROWS, in a cold cache and MLflow store of its own (the same seed asks
the same trials, so a shared cache would hand the second mode trained models). Time outside
fine-tune/evaluate = the flow's wall time during which no trial was in fine-tune or evaluate (the
flow's summary records when each trial's ran): the shared steps, worker start-up, the gaps between
trials (logging each, telling the study, starting the next), the sweep's artifacts and registering the
best (target: <= 5%). Beside it, the idle worker capacity: wall time minus the trials' summed
fine-tune + evaluate seconds / K. With K at once it also counts a worker waiting at the end for the
last trial, and a trial of one core running slower than one of two (the sweep keeps K trials running
and starts the next as one ends). Sequentially the two figures are the same. The last line is JSON.
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


def covered(spans: list[list[float]]) -> float:
    """Seconds covered by at least one of the (start, end) spans."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


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
    flow = summary["wall_seconds"]
    outside = max(0.0, flow - covered([s for s in summary["trial_spans"] if s]))
    idle = max(0.0, flow - trial_s / parallel)
    return {
        "process_s": round(wall, 1),
        "flow_s": flow,
        "trials_fine_tune_evaluate_s": round(trial_s, 1),
        "outside_s": round(outside, 1),
        "outside_share": round(outside / flow, 4),
        "idle_worker_s": round(idle, 1),
        "idle_worker_share": round(idle / flow, 4),
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
            f"no trial in fine-tune/evaluate {r['outside_s']:.1f}s = {r['outside_share']:.1%} (target <= 5%); "
            f"worker capacity idle {r['idle_worker_s']:.1f}s = {r['idle_worker_share']:.1%}; trials {r['trials']}"
        )
    seq, par = results["sequential"], results[f"parallel_{args.parallel}"]
    print(f"--parallel {args.parallel} vs sequential: flow {par['flow_s'] / seq['flow_s']:.2f}x the time")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
