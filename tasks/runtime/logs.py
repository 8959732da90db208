"""The step logger: Prefect's run logger inside a run, a plain logger when a task body is called directly."""

from __future__ import annotations

import logging

from prefect import get_run_logger
from prefect.exceptions import MissingContextError


def step_logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("finetune_flow")


class _UserErrorsWithoutTrace(logging.Filter):
    """Drop the traceback from failure records when the error is the user's to fix (bad input, a full or read-only disk)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from schemas.errors import FinetuneError, environment_fault

        if record.exc_info and (isinstance(record.exc_info[1], FinetuneError) or environment_fault(record.exc_info[1])):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_user_errors() -> None:
    """Bad config or input is reported as its one-line message, never as a crash trace."""
    # mlflow.store.db.utils logs every database error with its trace before raising it (a full disk among them).
    for name in ("prefect.flow_runs", "prefect.task_runs", "mlflow.store.db.utils"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _UserErrorsWithoutTrace) for f in logger.filters):
            logger.addFilter(_UserErrorsWithoutTrace())


def timed(fn):
    """Set the step body's wall time as `seconds` on the result (a schemas.results dataclass) it returns."""
    import dataclasses
    import functools
    import time

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        return dataclasses.replace(result, seconds=round(time.perf_counter() - started, 3))

    return wrapper


def publish_markdown(key: str, markdown: str, description: str) -> None:
    """A Prefect markdown artifact on the current run (nothing when a task body is called directly)."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import TaskRunContext

    if TaskRunContext.get() is None:
        return
    create_markdown_artifact(markdown=markdown, key=key, description=description)
