"""Run the real flow as a user does (a subprocess of `python flows/finetune.py`) and time it."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_flow(workdir: Path, *overrides: str) -> dict:
    """One flow run in its own process; returns its summary plus process wall time and startup share."""
    summary_path = Path(tempfile.mkstemp(suffix=".json", dir=workdir)[1])
    cmd = [
        sys.executable,
        "flows/finetune.py",
        f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}",
        f"cache.dir={workdir / 'cache'}",
        f"--summary-json={summary_path}",
        *overrides,
    ]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"flow failed ({done.returncode}):\n{done.stderr[-3000:]}")
    summary = json.loads(summary_path.read_text())
    steps = summary["step_seconds"]
    summary["process_s"] = wall
    summary["steps_s"] = sum(v for v in steps.values() if v is not None)
    # Interpreter + imports + Prefect's temporary API server start/stop: everything outside the flow body.
    summary["startup_s"] = wall - summary["wall_seconds"]
    summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return summary


def print_run(label: str, summary: dict) -> None:
    steps = "  ".join(f"{name} {seconds:.2f}s" for name, seconds in summary["step_seconds"].items())
    print(f"{label:<10} process {summary['process_s']:7.1f}s = startup {summary['startup_s']:5.1f}s + flow {summary['wall_seconds']:7.1f}s")
    print(f"{'':<10} steps {summary['steps_s']:7.1f}s: {steps}")
    print(f"{'':<10} re-used: {', '.join(summary['reused_steps']) or 'none'}; val_f1 {summary['val_f1']:.4f}")
