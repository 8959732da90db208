"""`python -m flows.prefect_cli ARGS`: the Prefect CLI under the project's environment.

`python -m flows.prefect_cli wait-healthy [SECONDS]` waits for the server at PREFECT_API_URL.

The Makefile's server, worker and deploy targets go through here so that the worker, and the
flow runs it starts, see the same offline and no-telemetry settings as `python flows/finetune.py`.
"""

from __future__ import annotations

import os
import sys

from tasks.runtime import env


def wait_healthy(seconds: float) -> int:
    """Wait until the server at PREFECT_API_URL answers its health check."""
    import time
    import urllib.request

    url = os.environ["PREFECT_API_URL"].rstrip("/") + "/health"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return 0
        except OSError:
            time.sleep(1)
    print(f"no answer from {url} in {seconds:.0f} s", file=sys.stderr)
    return 1


def main() -> None:
    if sys.argv[1:2] == ["wait-healthy"]:
        sys.exit(wait_healthy(float(sys.argv[2]) if len(sys.argv) > 2 else 120))
    env.apply()
    os.environ.setdefault("FINETUNE_FLOW_HOME", str(env.PROJECT_ROOT))
    from prefect.cli import app

    sys.argv = ["prefect", *sys.argv[1:]]
    app()


if __name__ == "__main__":
    main()
