import logging

from schemas.errors import DataError
from schemas.results import LogRunResult
from tasks.runtime.logs import _UserErrorsWithoutTrace, timed


def test_timed_sets_the_body_seconds_on_the_result():
    result = timed(lambda: LogRunResult(metrics_logged=3))()
    assert result.metrics_logged == 3 and result.seconds >= 0


def test_a_user_error_is_logged_without_its_trace_and_a_bug_with_it():
    def record(err):
        try:
            raise err
        except Exception:
            import sys

            return logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())

    user, bug = record(DataError("column 'x' not found")), record(RuntimeError("boom"))
    keep = _UserErrorsWithoutTrace()
    assert keep.filter(user) and user.exc_info is None
    assert keep.filter(bug) and bug.exc_info is not None
