"""The temporary Prefect server is launched before `launch` imports the flow, and is the one Prefect's client uses;
its PREFECT_HOME need not exist yet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json, os, sys, time
import psutil
from flows.interrupt import start_own_session_server

me = psutil.Process()
ready = start_own_session_server()
launched = [p for p in me.children() if "uvicorn" in " ".join(p.cmdline())]  # before any wait
assert "torch" not in sys.modules  # nothing of the flow imported yet: the server starts meanwhile
ready()
from prefect.client.orchestration import get_client
from prefect.server.api.server import SubprocessASGIServer

with get_client(sync_client=True) as client:
    healthy = client.api_healthcheck() is None
    url = str(client.api_url)
server = SubprocessASGIServer()
print(json.dumps({
    "launched": [p.pid for p in launched],
    "server_pid": server.server_process.pid,
    "own_session": os.getsid(server.server_process.pid) != os.getsid(0),
    "healthy": healthy,
    "client_url": url,
    "server_url": server.api_url,
}))
"""


def test_the_server_is_launched_before_the_wait_and_is_the_one_prefect_uses(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**cli_env, "PREFECT_HOME": str(tmp_path / "not-made-yet" / "prefect")}  # made by the start
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["launched"] == [seen["server_pid"]]  # launched before `ready()`, and taken over by Prefect
    assert seen["own_session"] and seen["healthy"]
    assert seen["client_url"].rstrip("/") == seen["server_url"].rstrip("/")
