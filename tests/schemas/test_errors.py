import errno
import sqlite3

import pytest
from mlflow.exceptions import MlflowException, RestException
from mlflow.protos import databricks_pb2 as codes

from schemas.errors import ConfigError, DataError, is_transient_error


@pytest.mark.parametrize(
    "err",
    [
        ConnectionError("registry unavailable"),
        TimeoutError("read timed out"),
        OSError(errno.EIO, "I/O error"),
        MlflowException("server busy", codes.TEMPORARILY_UNAVAILABLE),
        MlflowException("boom", codes.INTERNAL_ERROR),
        MlflowException("slow down", codes.REQUEST_LIMIT_EXCEEDED),
        RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "503"}),
        sqlite3.OperationalError("database is locked"),
    ],
)
def test_what_can_succeed_on_retry_is_retried(err):
    assert is_transient_error(err)


@pytest.mark.parametrize(
    "err",
    [
        ConfigError("bad option"),
        DataError("bad rows"),
        ValueError("bug"),
        KeyError("x"),
        AssertionError("accounting"),
        MlflowException("Invalid alias name", codes.INVALID_PARAMETER_VALUE),
        MlflowException("exists", codes.RESOURCE_ALREADY_EXISTS),
        MlflowException("no such model", codes.RESOURCE_DOES_NOT_EXIST),
        RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad name"}),
        MlflowException("attempt to write a readonly database", codes.TEMPORARILY_UNAVAILABLE),
        PermissionError(errno.EACCES, "denied"),
        OSError(errno.ENOSPC, "No space left on device"),
        FileNotFoundError(errno.ENOENT, "gone"),
        sqlite3.OperationalError("attempt to write a readonly database"),
        None,
    ],
)
def test_permanent_errors_are_not_retried(err):
    assert not is_transient_error(err)


def test_a_full_or_read_only_disk_is_found_through_wrapping_and_never_retried():
    from schemas.errors import environment_fault

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise MlflowException("failed to log artifact", codes.INTERNAL_ERROR) from inner
    except MlflowException as wrapped:
        assert environment_fault(wrapped) == "[Errno 28] No space left on device" and not is_transient_error(wrapped)
    assert environment_fault(sqlite3.OperationalError("database or disk is full"))
    assert environment_fault(MlflowException("attempt to write a readonly database", codes.TEMPORARILY_UNAVAILABLE))
    assert environment_fault(ConnectionError("refused")) is None and environment_fault(None) is None
