"""Errors the user fixes by changing input or options; shown as one line, never a trace."""

import errno


class FinetuneError(Exception):
    """Base of every user-facing error; the message says what to change."""


class ConfigError(FinetuneError, ValueError):
    """A configuration problem the user fixes by changing an option."""


class DataError(FinetuneError, ValueError):
    """Input data that cannot be trained on as given."""


# MLflow error codes a retry can cure (server busy, overloaded, timed out, a locked database);
# anything else (INVALID_PARAMETER_VALUE, RESOURCE_ALREADY_EXISTS, ...) fails the same way again.
TRANSIENT_MLFLOW_CODES = frozenset({"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED", "ABORTED"})
# OS errors that stay until someone changes something: a missing or unwritable path, a full or read-only disk.
PERMANENT_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.EACCES,
        errno.EPERM,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.ENAMETOOLONG,
        errno.EEXIST,
    }
)
_TRANSIENT_WORDS = ("locked", "busy", "timeout", "timed out", "connection", "temporarily")
# How a full or read-only disk reads once a library has wrapped it (shutil.Error, sqlite, MLflow): not retried, one error line.
_FAULT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
_FAULT_WORDS = ("no space left on device", "disk quota exceeded", "read-only file system", "database or disk is full", "readonly database")


def environment_fault(err: BaseException | None) -> str | None:
    """The first line of a full or read-only disk error anywhere in err's chain of causes, else None."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        text = str(err).strip()
        if (isinstance(err, OSError) and err.errno in _FAULT_ERRNOS) or any(word in text.lower() for word in _FAULT_WORDS):
            return text.splitlines()[0][:300] if text else type(err).__name__
        err = err.__cause__ or err.__context__
    return None


def is_transient_error(err: BaseException | None) -> bool:
    """Whether retrying the same call can succeed: I/O hiccups, timeouts and MLflow's busy/unavailable codes."""
    if err is None or isinstance(err, FinetuneError) or environment_fault(err):
        return False
    if isinstance(err, OSError):  # ConnectionError, TimeoutError and requests' errors are OSErrors
        return err.errno not in PERMANENT_ERRNOS
    if type(err).__module__.startswith("mlflow"):
        return str(getattr(err, "error_code", "")) in TRANSIENT_MLFLOW_CODES
    if type(err).__name__ == "OperationalError":  # sqlalchemy / sqlite3: a locked or unreachable database
        return any(word in str(err).lower() for word in _TRANSIENT_WORDS)
    return False


def is_transient(task, task_run, state) -> bool:
    """Prefect retry condition: retry only what can succeed on retry, never a user error or a permanent one."""
    return is_transient_error(getattr(state, "data", None))
