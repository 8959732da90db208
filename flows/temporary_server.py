"""Prefect's temporary API server, tied to the life of the process that starts it.

Without PREFECT_API_URL, Prefect starts a temporary server as a child process and stops it at
exit; a SIGKILL or the OOM killer skips that, and the server lives on as an orphan. Here the same
server (Prefect's own SubprocessASGIServer) is started with the kernel asked to send it SIGTERM
when its parent dies (Linux `prctl(PR_SET_PDEATHSIG)`), so nothing outlives a killed run.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

PR_SET_PDEATHSIG = 1


def _die_with(parent: int):
    """preexec_fn for a child that gets SIGTERM when `parent` dies (and exits at once if it already has)."""

    def preexec() -> None:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):  # not Linux: the server is stopped at a normal exit only
            return
        if os.getppid() != parent:
            os._exit(0)

    return preexec


def _server_class():
    import prefect
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    class ServerDyingWithParent(SubprocessASGIServer):
        _instances: dict = {}  # not the base class's: that one may hold a server Prefect started itself

        def _run_uvicorn_command(self) -> subprocess.Popen:
            # Prefect 3.8's command, plus preexec_fn.
            server_env = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
            return subprocess.Popen(
                args=[
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--app-dir",
                    str(prefect.__module_path__.parent),
                    "--factory",
                    "prefect.server.api.server:create_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "error",
                    "--lifespan",
                    "on",
                ],
                env={**os.environ, **server_env, **get_current_settings().to_environment_variables(exclude_unset=True)},
                preexec_fn=_die_with(os.getpid()),
            )

    return ServerDyingWithParent


@contextlib.contextmanager
def temporary_api() -> Iterator[str | None]:
    """The Prefect API for this process: PREFECT_API_URL when set, else a temporary server that dies with it."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield PREFECT_API_URL.value()
        return
    server = _server_class()()
    server.start()
    # The settings context reaches this thread only. Threads Prefect starts with a context of their own (a sweep's
    # task submission, their log workers) see the process-global settings, and worker processes the environment:
    # without the URL in both, each started a temporary server of its own, and at exit the process waited over a
    # minute on logs sent to this one after it had stopped.
    from prefect.context import refresh_global_settings_context

    os.environ["PREFECT_API_URL"] = server.api_url
    refresh_global_settings_context()  # what a thread that has no settings context of its own sees
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        _send_pending_logs()
        os.environ.pop("PREFECT_API_URL", None)
        refresh_global_settings_context()
        server.stop()


def _send_pending_logs() -> None:
    """Send the run logs still queued for the API while it is up (at most a few seconds)."""
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)
