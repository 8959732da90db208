"""The process environment every entry point of finetune-flow runs under.

This is the one place that sets the offline and no-telemetry variables and keeps
Prefect's state inside the project. Entry points call `apply()` before they
import prefect, transformers or mlflow, because those read the variables at
import time.
"""

from __future__ import annotations

import os
from pathlib import Path

from schemas.paths import PROJECT_ROOT  # not schemas.config: this runs first, before a CLI starts Prefect's server

# Machines that run this have no model hub; without HF_HUB_OFFLINE,
# mlflow.transformers.log_model spends ~50 s retrying a hub lookup.
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "RAY_USAGE_STATS_ENABLED": "0",  # a sweep's Ray (--runner ray) reports nothing either
    # The temporary API server needs more than the default 20 s on 2 cores.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
    "TOKENIZERS_PARALLELISM": "false",
    # Whatever Prefect persists (e.g. a failed run's exception) is JSON, never a pickle that runs code when read.
    "PREFECT_RESULTS_DEFAULT_SERIALIZER": "json",
}


def apply(prefect_home: Path | None = None) -> None:
    """Set the project's environment; values the user already exported win."""
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PREFECT_HOME", str(prefect_home or PROJECT_ROOT / ".prefect"))
