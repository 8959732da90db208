"""Orchestration overhead: the flow's wall time vs the sum of its step bodies.

    .venv/bin/python bench/overhead.py [--rows 4000] [extra key=value ...]

One cold `python flows/finetune.py` process on the embedded defaults (data.max_rows=ROWS, a
fresh cache and MLflow store). Prefect's start-up (interpreter, imports, temporary API server)
is shown apart. overhead = flow body - step bodies; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runner import print_run, run_flow  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000, help="data.max_rows")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        run = run_flow(Path(tmp), f"data.max_rows={args.rows}", *args.overrides)
    print_run("cold", run)
    overhead = run["wall_seconds"] - run["steps_s"]
    result = {
        "flow_s": round(run["process_s"], 2),
        "steps_s": round(run["steps_s"], 2),
        "startup_s": round(run["startup_s"], 2),
        "overhead_s": round(overhead, 2),
        "overhead_fraction": round(overhead / run["process_s"], 4),
        "peak_rss_mb": round(run["peak_rss_mb"], 1),
    }
    print(
        f"orchestration overhead {overhead:.2f}s = {result['overhead_fraction']:.2%} of {run['process_s']:.0f}s "
        f"(target <= 5% on a run of >= 3 min); start-up {run['startup_s']:.1f}s; peak RSS {run['peak_rss_mb']:.0f} MB"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
