"""Prefect's temporary API server, tied to the life of the process that starts it.

Without PREFECT_API_URL, Prefect starts a temporary server as a child process and stops it at
exit; a SIGKILL or the OOM killer skips that, and the server lives on as an orphan. Here the same
server (Prefect's own SubprocessASGIServer) is started with the kernel asked to send it SIGTERM
when its parent dies (Linux `prctl(PR_SET_PDEATHSIG)`), so nothing outlives a killed run.

A CLI may start it first thing (`start_early()`, before it imports prefect, mlflow and the steps): the server's
own start-up (seconds of imports in its process) then runs beside the CLI's, and `temporary_api()` adopts it.
The early server reads the same settings as one started later: the environment, PREFECT_HOME's profile and the
working directory's files, all as they are when the CLI starts.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

PR_SET_PDEATHSIG = 1
SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


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


def _die_with_parent():
    """preexec_fn where the platform has one (POSIX); None elsewhere (Windows refuses preexec_fn)."""
    return _die_with(os.getpid()) if os.name == "posix" else None


def _uvicorn_command(port: int, prefect_dir: Path) -> list[str]:
    """Prefect 3.8's command for its temporary server (SubprocessASGIServer._run_uvicorn_command)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(prefect_dir.parent),
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]


def _server_class():
    import prefect
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    class ServerDyingWithParent(SubprocessASGIServer):
        _instances: dict = {}  # not the base class's: that one may hold a server Prefect started itself

        def _run_uvicorn_command(self) -> subprocess.Popen:
            return subprocess.Popen(
                args=_uvicorn_command(self.port, prefect.__module_path__),
                env={**os.environ, **SERVER_ENV, **get_current_settings().to_environment_variables(exclude_unset=True)},
                preexec_fn=_die_with_parent(),
            )

    return ServerDyingWithParent


class EarlyServer:
    """A temporary server started before this process imports prefect (start_early); temporary_api() adopts it."""

    def __init__(self, prefect_dir: Path):
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.process: subprocess.Popen | None = subprocess.Popen(
            _uvicorn_command(self.port, prefect_dir), env={**os.environ, **SERVER_ENV}, preexec_fn=_die_with_parent()
        )
        atexit.register(self.stop)

    def ready(self, timeout: float) -> bool:
        """Wait until the API answers /health (False: it exited, e.g. its port was taken meanwhile, or timed out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process is not None and self.process.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


_early: EarlyServer | None = None


def start_early() -> None:
    """Start the temporary server now, unless PREFECT_API_URL names one; the first temporary_api() adopts it."""
    global _early
    spec = find_spec("prefect")
    if _early is not None or os.environ.get("PREFECT_API_URL") or spec is None or not spec.submodule_search_locations:
        return
    _early = EarlyServer(Path(spec.submodule_search_locations[0]))


def stop_early() -> None:
    """Stop the early server unused (none started: nothing to do)."""
    global _early
    early, _early = _early, None
    if early is not None:
        early.stop()


def _adopt_early():
    """The early server once it answers, or None (never started, or it failed: a server is started the usual way)."""
    global _early
    early, _early = _early, None
    if early is None:
        return None
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    if early.ready(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()):
        return early
    early.stop()
    return None


@contextlib.contextmanager
def temporary_api() -> Iterator[str | None]:
    """The Prefect API for this process: PREFECT_API_URL when set, else a temporary server that dies with it."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():  # named (environment, profile or .env): an early server is not needed after all
        stop_early()
        yield PREFECT_API_URL.value()
        return
    server = _adopt_early()
    if server is None:
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
