"""The local Prefect API for flows run without a Prefect server (no `PREFECT_API_URL`).

Prefect's own ephemeral mode starts its server lazily, inside the flow, where two lifecycles on
a fresh `PREFECT_HOME` race in its database migration, its start timeout (20 s) is missed on a
loaded machine, and a kill -9 leaves the server running under PID 1 for good. This one is
started by the lifecycle under its lock, waits as long as `PREFECT_SERVER_EPHEMERAL_STARTUP_
TIMEOUT_SECONDS` says, and dies with the process that started it (Linux parent-death signal).
One server per process: `run_all_months` pays its start once. `spawn_local_api` starts it
without waiting, so the caller overlaps its start with work of its own (the MLflow store's
creation and imports); `local_api_url` then waits for it.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from taxifare_flow.errors import PrefectServerError
from taxifare_flow.flow import prefect_db_template
from taxifare_flow.health import why_unhealthy

log = logging.getLogger(__name__)

_STARTUP_FAILED = 3  # uvicorn's exit status when it cannot start (a port taken, a failed lifespan)


@dataclass
class _Server:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    #: `time.monotonic()` at the spawn (the start-up timeout counts from it).
    started: float = field(default_factory=time.monotonic)


_server: _Server | None = None
#: Spawned by `spawn_local_api`, not yet waited for.
_starting: _Server | None = None


# The child's program: it asks for the parent-death signal (before anything else, and the
# signal is asked by the child itself: a `preexec_fn` between fork and exec can deadlock a
# threaded parent), then serves Prefect's API with uvicorn. The cyclic garbage collector is
# off while Prefect's server is imported and its app built: it walked the ~10^6 objects those
# thousand modules make again and again, a fifth of the start (4.5 -> 3.6 s here); what they
# made is then frozen out of later collections, which the requests pay for otherwise.
_SERVE = (
    "import ctypes, gc, os, sys\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL\n"
    "except (OSError, AttributeError):\n"
    "    pass  # not Linux: the parent's atexit is the only guard\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)  # the parent died before prctl took effect\n"
    "gc.disable()\n"
    "import uvicorn\n"
    "from prefect.server.api.server import create_app\n"
    "app = create_app()\n"
    "gc.freeze()\n"
    "gc.enable()\n"
    "uvicorn.run(app, host='127.0.0.1', port=int(sys.argv[2]), log_level='error', lifespan='on')\n"
)


#: Services a private API has no use for: its automations (triggers and their actions: nobody
#: can define one on an API that lives and dies with this process, and no event is sent to it
#: but the engine's) and the events feed (the event persister). The task run recorder stays:
#: it is what makes task runs of the engine's events. Each flow run made the API spend ~0.5 CPU
#: seconds beside the lifecycle's pass, and the persister's writes made its other transactions
#: fail with "database is locked" (a 503 the client waits 2 s on).
_QUIET_SERVICES = {"PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
                   "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    return why_unhealthy(url, timeout=2) is None


def _spawn(prefect_home: Path, log_path: Path) -> _Server:
    port, parent = _free_port(), os.getpid()
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "PREFECT_UI_ENABLED": "0",
           "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **_QUIET_SERVICES}
    env.pop("PREFECT_API_URL", None)
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVE, str(parent), str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    return _Server(process, f"http://127.0.0.1:{port}/api", log_path)


def _stop() -> None:
    global _server
    stop_starting_api()
    if _server is not None and _server.process.poll() is None:
        _server.process.terminate()
        try:
            _server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _server.process.kill()
            _server.process.wait()
    _server = None


atexit.register(_stop)


def spawn_local_api(prefect_home: Path) -> None:
    """Starts this process's local Prefect API without waiting for it to answer (a no-op when it
    runs or is starting); `local_api_url` waits. Call it under the lifecycle lock: the first
    start migrates Prefect's database."""
    global _starting
    if (_server is not None and _server.process.poll() is None) or (
            _starting is not None and _starting.process.poll() is None):
        return
    prefect_home.mkdir(parents=True, exist_ok=True)
    prefect_db_template.seed(prefect_home)
    _starting = _spawn(prefect_home, prefect_home / "server.log")


def stop_starting_api() -> None:
    """Stops a local API `spawn_local_api` started that nothing waited for (the caller failed
    before it needed one)."""
    global _starting
    if _starting is not None and _starting.process.poll() is None:
        _starting.process.kill()
        _starting.process.wait()
    _starting = None


def local_api_url(prefect_home: Path, timeout_seconds: float) -> str:
    """The URL of this process's local Prefect API, started now if it is not running (or
    waited for, when `spawn_local_api` started it). Call it under the lifecycle lock: the first
    start migrates Prefect's database. The timeout counts from the spawn."""
    global _server, _starting
    if _server is not None and _server.process.poll() is None:
        return _server.url
    spawn_local_api(prefect_home)
    assert _starting is not None
    server, respawns, _starting = _starting, 0, None
    log_path = server.log_path
    deadline = server.started + timeout_seconds
    while not _healthy(server.url):
        code = server.process.poll()
        # uvicorn says 3 for any start-up failure; a port taken meanwhile is worth two retries.
        if code == _STARTUP_FAILED and respawns < 2:
            server, respawns = _spawn(prefect_home, log_path), respawns + 1
        elif code is not None:
            raise PrefectServerError(f"the local Prefect server exited with status {code} while starting: see {log_path}")
        if time.monotonic() > deadline:
            server.process.kill()
            server.process.wait()
            raise PrefectServerError(
                f"the local Prefect server did not answer within {timeout_seconds:g} s (a loaded machine?): raise "
                f"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or set PREFECT_API_URL to a running server; log: {log_path}"
            )
        time.sleep(0.1)
    _server = server
    prefect_db_template.keep(prefect_home)
    log.info("local Prefect API at %s", server.url)
    return server.url
