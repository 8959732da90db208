"""The temporary Prefect API a CLI starts when no PREFECT_API_URL is set (flows/temporary_server.py)."""

import json
import os
import subprocess
import sys

CHILD = """
import json, os, threading
from tasks.runtime import env
env.apply()
from flows.temporary_server import temporary_api
from prefect.settings import get_current_settings

seen = {}
with temporary_api() as url:
    seen["url"] = url
    seen["here"] = get_current_settings().api.url
    # A thread started without this thread's context, as Prefect's own service threads are: before the fix it saw
    # no URL, so its log worker started a second temporary server and the process hung at exit.
    worker = threading.Thread(target=lambda: seen.update(thread=get_current_settings().api.url))
    worker.start(); worker.join()
    seen["environ"] = os.environ.get("PREFECT_API_URL")
seen["after"] = os.environ.get("PREFECT_API_URL")
print(json.dumps(seen))
"""


def _run(code: str, root, tmp_path) -> dict:
    """The code in a fresh interpreter without PREFECT_API_URL and with its own PREFECT_HOME; what it printed last, as JSON."""
    environ = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={**environ, "PREFECT_HOME": str(tmp_path / "prefect")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_thread_and_child_process_sees_the_one_temporary_server(request, tmp_path):
    seen = _run(CHILD, request.config.rootpath, tmp_path)
    assert seen["url"].startswith("http://127.0.0.1:")
    assert seen["here"] == seen["thread"] == seen["environ"] == seen["url"]
    assert seen["after"] is None  # gone with the server: a later start in this process would not talk to a dead one


EARLY = """
import json
from tasks.runtime import env
env.apply()
from flows import temporary_server
temporary_server.start_early()  # as python flows/finetune.py does before it imports prefect
early = temporary_server._early
seen = {"pid": early.process.pid, "early": early.api_url}
with temporary_server.temporary_api() as url:
    from prefect import get_client
    with get_client(sync_client=True) as client:
        seen["healthy"] = client.api_healthcheck() is None
    seen["url"] = url
print(json.dumps(seen))
"""


def test_a_server_started_early_is_the_one_the_run_uses_and_it_stops_with_it(request, tmp_path):
    seen = _run(EARLY, request.config.rootpath, tmp_path)
    assert seen["url"] == seen["early"] and seen["healthy"]  # adopted, not a second server
    assert not os.path.exists(f"/proc/{seen['pid']}")  # stopped with the run
