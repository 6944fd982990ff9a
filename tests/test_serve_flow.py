"""`taxifare serve_flow` against a real Prefect server: a month arrives (`get_new_month` emits
`taxifare.month.arrived`), the deployment's trigger creates a flow run that completes and moves
the watermark; two arrivals in a row never run two lifecycles at once; SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import group_alive, stop_process_group
from helpers import assert_tiles, child_env, taxifare, training_intervals
from taxifare_flow.ml_logic import get_latest_trained_row
from taxifare_flow.ml_logic.registry import open_registry
from taxifare_flow.settings import load_settings

DEPLOYMENT = "taxifare-lifecycle"


def rest(api: str, path: str, body: dict[str, Any]) -> Any:
    """Prefect's REST API, as any client may call it (no Prefect import in this process)."""
    req = urllib.request.Request(f"{api}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def flow_runs(api: str, flow_name: str) -> list[dict[str, Any]]:
    return rest(api, "/flow_runs/filter", {"flows": {"name": {"any_": [flow_name]}}, "sort": "START_TIME_ASC"})


def until(what: str, check: Any, proc: subprocess.Popen[str], log: Path, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert proc.poll() is None, f"serve_flow exited: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"never: {what}\n{log.read_text()[-3000:]}"
        time.sleep(1)


@pytest.fixture
def served(small_history: Path, prefect_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    """Three months of 300 rows, none arrived; `taxifare serve_flow` running with no schedule."""
    monkeypatch.setenv("HISTORY_ROWS_PER_MONTH", "300")
    monkeypatch.setenv("HISTORY_FIRST_MONTH", "2012-08")
    monkeypatch.setenv("HISTORY_LAST_MONTH", "2012-10")
    flow_name = f"taxifare lifecycle {uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PREFECT_FLOW_NAME", flow_name)
    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    assert taxifare("reset_data_sources").returncode == 0
    log = small_history.parent / "serve_flow.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "taxifare_flow.cli", "serve_flow"], text=True, stdout=out, stderr=subprocess.STDOUT,
            env=child_env({"PREFECT_FLOW_CRON": "off", "PREFECT_RUNNER_POLL_FREQUENCY": "1",
                           "PREFECT_HOME": str(small_history.parent / "prefect-served")}),
            start_new_session=True,
        )
    try:
        # Ready once the deployment and the automation of its trigger are on the server.
        until("the deployment is registered", lambda: rest(prefect_server, "/deployments/filter", {
            "flows": {"name": {"any_": [flow_name]}}, "deployments": {"name": {"any_": [DEPLOYMENT]}}}), proc, log)
        until("the trigger's automation exists", lambda: any(
            "taxifare.month.arrived" in json.dumps(a["trigger"]) and a["enabled"]
            for a in rest(prefect_server, "/automations/filter", {})), proc, log)
        yield flow_name, proc, log
    finally:
        stop_process_group(proc)


def test_a_month_arriving_runs_the_lifecycle_and_sigterm_stops_it(served: tuple[str, subprocess.Popen[str], Path],
                                                                  prefect_server: str) -> None:
    flow_name, proc, log = served
    r = taxifare("get_new_month")
    assert r.returncode == 0, r.stderr
    assert "taxifare.month.arrived sent to the Prefect server" in r.stdout

    def completed(n: int) -> list[dict[str, Any]] | None:
        runs = flow_runs(prefect_server, flow_name)
        done = [x for x in runs if x["state_type"] == "COMPLETED"]
        assert not [x for x in runs if x["state_type"] in ("FAILED", "CRASHED")], log.read_text()[-3000:]
        return runs if len(done) >= n and len(done) == len(runs) else None

    runs = until("the triggered flow run completes", lambda: completed(1), proc, log)
    assert len(runs) == 1 and runs[0]["parameters"] == {"month": "2012-08", "rows": "0..300"}
    settings = load_settings()
    assert get_latest_trained_row(settings=settings) == 300

    # Two arrivals in a row: two flow runs, one lifecycle at a time, every row trained once.
    for _ in range(2):
        assert taxifare("get_new_month").returncode == 0
    runs = until("both triggered runs complete", lambda: completed(3), proc, log)
    assert sorted(r["parameters"]["month"] for r in runs) == ["2012-08", "2012-09", "2012-10"]
    assert get_latest_trained_row(settings=settings) == 900
    assert_tiles(training_intervals(settings), 900)
    reg = open_registry(settings)
    lifecycles = sorted((r.info.start_time, r.info.end_time) for r in reg.training_runs())
    assert all(end <= nxt for (_, end), (nxt, _) in zip(lifecycles, lifecycles[1:])), f"lifecycles overlap: {lifecycles}"

    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    assert "serve_flow stopped" in log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    assert not group_alive(proc.pid)


def test_without_a_prefect_server_serve_flow_says_so(small_history: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = taxifare("serve_flow", env={"PREFECT_API_URL": ""})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "serve_flow needs a Prefect server: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api, started with `prefect server start`)"]
    monkeypatch.setenv("HISTORY_ROWS_PER_MONTH", "300")
    assert taxifare("reset_data_sources").returncode == 0
    r = taxifare("get_new_month", env={"PREFECT_API_URL": ""})
    assert r.returncode == 0 and "taxifare.month.arrived" not in r.stdout


def test_prefect_yaml_points_at_the_module_level_flow() -> None:
    """`prefect deploy`'s entrypoint loads the flow, and its trigger is the one `serve_flow` uses."""
    import yaml

    root = Path(__file__).resolve().parent.parent
    spec = yaml.safe_load((root / "prefect.yaml").read_text())
    deployment, = spec["deployments"]
    code = (f"from prefect.flows import load_flow_from_entrypoint as load\n"
            f"f = load({str(root / deployment['entrypoint'])!r})\n"
            "print(f.name, sorted(f.parameters.properties))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=child_env())
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "taxifare lifecycle ['month', 'rows']"
    trigger, = deployment["triggers"]
    assert trigger["expect"] == ["taxifare.month.arrived"]
    assert trigger["match"] == {"prefect.resource.id": "taxifare.experiment.taxifare"}
    assert deployment["schedules"][0]["cron"] == "0 4 1 * *" == load_settings_default_cron()


def load_settings_default_cron() -> str:
    from taxifare_flow.settings import settings_from

    return settings_from({}).prefect_flow_cron
