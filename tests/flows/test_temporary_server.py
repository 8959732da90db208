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


def test_every_thread_and_child_process_sees_the_one_temporary_server(request, tmp_path):
    environ = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=request.config.rootpath,
        env={**environ, "PREFECT_HOME": str(tmp_path / "prefect")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["url"].startswith("http://127.0.0.1:")
    assert seen["here"] == seen["thread"] == seen["environ"] == seen["url"]
    assert seen["after"] is None  # gone with the server: a later start in this process would not talk to a dead one
