"""A real Prefect server: with PREFECT_API_URL set (environment or .env), `taxifare run_flow`
reports its flow run and task runs to it; an empty PREFECT_API_URL= (as in .env.sample) means
ephemeral mode."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from helpers import child_env, taxifare

ROOT = Path(__file__).resolve().parent.parent
#: The flow's tasks: the steps that take time or can fail (compare and notify run inside the
#: flow, not as tasks: docs/architecture.md, "The Prefect flow").
STEPS = {"learn", "validate", "finalise"}

# Run in a process of its own: importing Prefect here would fix Prefect's settings
# (PREFECT_HOME, API URL) for the rest of the pytest session, which other tests' harness shares.
QUERY = r"""
import json, sys, time
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, TaskRunFilter, TaskRunFilterFlowRunId

flow_name, expected_runs, expected_tasks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + 60
with get_client(sync_client=True) as client:
    while True:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
        out = []
        for run in runs:
            tasks = client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run.id])))
            out.append({"name": run.name, "state": run.state_type.value,
                        "start": run.start_time.isoformat() if run.start_time else "",
                        # A task run is named "<task name>-<suffix>".
                        "tasks": {t.name.rsplit("-", 1)[0]: t.state_type.value for t in tasks},
                        "task_runs": sorted((t.name, t.state_type.value) for t in tasks)})
        # The server records task runs from events, a moment after the flow returned.
        settled = (len(out) >= expected_runs and sum(len(r["task_runs"]) for r in out) >= expected_tasks
                   and all(r["state"] == "COMPLETED" and set(r["tasks"].values()) <= {"COMPLETED"} for r in out))
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.5)
print(json.dumps(sorted(out, key=lambda r: r["start"])))
"""


def flow_runs(api_url: str, flow_name: str, expected: int, home: Path, tasks: int = 0) -> list[dict]:
    """The flow runs of `flow_name` on the server (oldest first) with their task runs, read
    through Prefect's client once `expected` runs and `tasks` task runs are there and settled."""
    home.mkdir(exist_ok=True)
    r = subprocess.run([sys.executable, "-c", QUERY, flow_name, str(expected), str(tasks)], capture_output=True, text=True,
                       timeout=120, cwd=home, env=child_env({"PREFECT_API_URL": api_url, "PREFECT_HOME": str(home)}))
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture
def one_month(small_history: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A tiny history with one month arrived, and a flow name of this test's own."""
    monkeypatch.setenv("HISTORY_ROWS_PER_MONTH", "300")
    monkeypatch.setenv("HISTORY_FIRST_MONTH", "2012-08")
    monkeypatch.setenv("HISTORY_LAST_MONTH", "2012-09")
    flow_name = f"taxifare lifecycle {uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PREFECT_FLOW_NAME", flow_name)
    assert taxifare("reset_data_sources").returncode == 0
    assert taxifare("get_new_month").returncode == 0
    return flow_name


def test_a_lifecycle_reports_to_the_prefect_server(one_month: str, prefect_server: str, clean_env: Path) -> None:
    r = taxifare("run_flow", env={"PREFECT_API_URL": prefect_server})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "trained rows 0..300" in r.stdout
    client_home = clean_env / "prefect-client"
    runs = flow_runs(prefect_server, one_month, 1, client_home, tasks=len(STEPS))
    assert len(runs) == 1
    assert runs[0]["state"] == "COMPLETED"
    assert runs[0]["tasks"] == dict.fromkeys(STEPS, "COMPLETED")

    # PREFECT_API_URL from .env only (the environment has none): the same server.
    (clean_env / ".env").write_text(f"PREFECT_API_URL={prefect_server}\n")
    r = taxifare("run_flow")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "nothing to do" in r.stdout
    runs = flow_runs(prefect_server, one_month, 2, client_home, tasks=len(STEPS))
    assert [run["state"] for run in runs] == ["COMPLETED", "COMPLETED"]
    # Nothing to do: a flow run without task runs (the watermark is read in the flow itself).
    assert runs[1]["tasks"] == {}, "nothing to do: no task run"

    assert prefect_server in taxifare("show_env").stdout


def test_a_replay_is_one_flow_run_with_a_task_run_a_month(one_month: str, prefect_server: str, clean_env: Path) -> None:
    """`run_all_months`: one flow run, its months as task runs named by the month (the arrived,
    untrained month caught up first, then the month that arrives), no flow run a month."""
    r = taxifare("run_all_months", env={"PREFECT_API_URL": prefect_server})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 lifecycles, 600 rows" in r.stdout, r.stdout
    client_home = clean_env / "prefect-client"
    runs = flow_runs(prefect_server, f"{one_month} replay", 1, client_home, tasks=2)
    assert len(runs) == 1 and runs[0]["state"] == "COMPLETED", runs
    assert runs[0]["task_runs"] == [["2012-08", "COMPLETED"], ["2012-09", "COMPLETED"]]
    assert flow_runs(prefect_server, one_month, 0, client_home) == [], "no lifecycle flow run of its own"


def test_an_empty_prefect_api_url_means_ephemeral_mode(one_month: str, prefect_server: str, clean_env: Path,
                                                      small_history: Path) -> None:
    """The .env.sample as it is, copied to .env, and exported as direnv's `dotenv` does: its empty
    PREFECT_API_URL= and PREFECT_HOME= would make Prefect look for a server at '' and keep its
    state in the working directory."""
    shutil.copy(ROOT / ".env.sample", clean_env / ".env")
    r = taxifare("run_flow", env={"PREFECT_API_URL": "", "PREFECT_HOME": ""})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "trained rows 0..300" in r.stdout
    assert "ERROR" not in r.stdout + r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert (small_history / "prefect").is_dir() and not list(clean_env.glob("*.db"))
    assert flow_runs(prefect_server, one_month, 0, clean_env / "prefect-client") == [], "nothing on the server"


def test_a_bad_prefect_api_url_is_a_settings_error(clean_env: Path) -> None:
    r = taxifare("show_env", env={"PREFECT_API_URL": "127.0.0.1:4200/api"})
    assert r.returncode == 2
    assert "PREFECT_API_URL must be an http(s) URL" in r.stderr
