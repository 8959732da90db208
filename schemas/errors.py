"""Errors the user fixes by changing input or options; shown as one line, never a trace."""


class FinetuneError(Exception):
    """Base of every user-facing error; the message says what to change."""


class ConfigError(FinetuneError, ValueError):
    """A configuration problem the user fixes by changing an option."""


class DataError(FinetuneError, ValueError):
    """Input data that cannot be trained on as given."""


def is_transient(task, task_run, state) -> bool:
    """Prefect retry condition: retry I/O hiccups, never a user error."""
    return not isinstance(getattr(state, "data", None), FinetuneError)
