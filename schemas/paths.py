"""Where the project lives: a module of its own so that light entry points (tasks/runtime/env.py, read before any CLI
starts Prefect's server) do not import the config schema, and with it the task types, pandas and pandera."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
