"""The team's deployment as a test: an MLflow tracking server on PostgreSQL that proxies the
artifacts (`--serve-artifacts`), a read-only role for the watermark whose password needs
percent-encoding, users alternating `get_new_month` and `run_flow` through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from conftest import _free_port, _wait_for_http, group_alive, stop_process_group
from taxifare_flow.settings import load_settings
from helpers import assert_tiles, taxifare
from helpers import training_intervals as _training_intervals

#: The read-only role's password: every character that must be percent-encoded in a DSN.
RO_PASSWORD = "r/o@pa:ss%w0rd"
ROWS = 300


@dataclass(frozen=True)
class TrackingServer:
    url: str
    artifacts: Path
    admin_dsn: str  # the database, as the role MLflow writes with
    database: str
    host: str
    port: int
    ro_role: str


def _read_only_role_sql(role: str, database: str) -> list[Any]:
    """The SQL of docs/deploying.md for the watermark's role (SELECT only; advisory locks need no grant)."""
    from psycopg import sql

    r, db = sql.Identifier(role), sql.Identifier(database)
    return [
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(r, sql.Literal(RO_PASSWORD)),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, r),
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(r),
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(r),
        # Tables a later MLflow upgrade creates (statement run as the role that creates them).
        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {}").format(r),
    ]


@pytest.fixture(scope="module")
def tracking_server(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    """`mlflow server` on a fresh PostgreSQL database with the artifact proxy, on a free loopback
    port; the read-only role created once MLflow made its tables. Everything goes at the end."""
    import psycopg

    database = f"taxifare_ts_{uuid.uuid4().hex[:10]}"
    role = f"taxifare_ro_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    admin_dsn = f"{postgres_server}/{database}"
    root = tmp_path_factory.mktemp("tracking-server")
    artifacts = root / "artifacts"
    port = _free_port()
    log = root / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # MLflow's job runner (huey consumers for GenAI scorers: 8 processes) is not used by
    # taxifare and would double the start-up time on a small machine.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    with log.open("w") as out:
        # cwd = its own folder: whatever the server would write locally stays visible there.
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server",
             "--backend-store-uri", "postgresql+psycopg://" + admin_dsn.split("://", 1)[1],
             "--serve-artifacts", "--artifacts-destination", str(artifacts),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = urlsplit(postgres_server)
    try:
        started = time.perf_counter()
        _wait_for_http(f"http://127.0.0.1:{port}/health", proc, log, timeout=180)
        print(f"mlflow server up in {time.perf_counter() - started:.1f} s")
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            for statement in _read_only_role_sql(role, database):
                conn.execute(statement)
        yield TrackingServer(f"http://127.0.0.1:{port}", artifacts, admin_dsn, database, url.hostname or "127.0.0.1",
                             url.port or 5432, role)
    finally:
        stop_process_group(proc)
        assert not group_alive(proc.pid), "a process of the MLflow server survived"
        with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')



@pytest.fixture
def deployed(small_history: Path, tracking_server: TrackingServer, prefect_server: str,
             monkeypatch: pytest.MonkeyPatch) -> TrackingServer:
    """The settings a user of the deployment has in .env: the server, the read-only account, a
    Prefect server; a tiny history."""
    for name, value in {
        "HISTORY_ROWS_PER_MONTH": str(ROWS), "HISTORY_FIRST_MONTH": "2012-08", "HISTORY_LAST_MONTH": "2012-10",
        "MLFLOW_TRACKING_URI": tracking_server.url,
        "MLFLOW_DB_USER": tracking_server.ro_role, "MLFLOW_DB_PASSWORD": RO_PASSWORD,
        "MLFLOW_DB_HOSTNAME": tracking_server.host, "MLFLOW_DB_PORT": str(tracking_server.port),
        "MLFLOW_DB_NAME": tracking_server.database, "PREFECT_API_URL": prefect_server,
    }.items():
        monkeypatch.setenv(name, value)
    return tracking_server


def test_three_months_through_the_tracking_server(deployed: TrackingServer, small_history: Path, clean_env: Path) -> None:
    import psycopg

    from taxifare_flow.flow.lock import lifecycle_lock
    from taxifare_flow.ml_logic.registry import CHALLENGER, PRODUCTION, open_registry

    outputs: list[str] = []

    def ok(*args: str) -> str:
        r = taxifare(*args)
        outputs.extend([r.stdout, r.stderr])
        assert r.returncode == 0, f"{args}: {r.stderr[-3000:]}"
        return r.stdout

    ok("reset_data_sources")
    for month in range(3):
        ok("get_new_month")
        assert f"trained rows {month * ROWS:,}..{(month + 1) * ROWS:,}" in ok("run_flow")
    total = 3 * ROWS

    settings = load_settings()
    assert settings.mlflow_tracking_db.startswith(f"postgresql://{deployed.ro_role}:r%2Fo%40pa%3Ass%25w0rd@")
    intervals = _training_intervals(settings)
    assert len(intervals) == 3
    assert_tiles(intervals, total)
    assert ok("watermark").strip() == str(total)

    # The models are behind the server: in its artifacts destination, nowhere local.
    reg = open_registry(settings)
    runs = reg.client.search_runs([reg.experiment_id], "params.context = 'train'")
    assert all(r.info.artifact_uri.startswith("mlflow-artifacts:/") for r in runs)
    assert len(list(deployed.artifacts.rglob("model.txfm"))) == 3
    assert not list(clean_env.rglob("model.txfm")) and not (clean_env / "mlruns").exists()
    assert not (small_history / "mlflow").exists()
    prod, chal = reg.version_by_alias(PRODUCTION), reg.version_by_alias(CHALLENGER)
    assert prod is not None and chal is not None
    assert str(chal.version) == str(reg.head_for(total).version)

    # The role is read-only, and the lifecycle's advisory lock is held with it.
    with psycopg.connect(settings.mlflow_tracking_db) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("UPDATE runs SET status = status")
    with lifecycle_lock(settings), psycopg.connect(deployed.admin_dsn) as admin:
        holders = admin.execute(
            "SELECT a.usename FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND a.datname = %s", (deployed.database,)).fetchall()
    assert holders == [(deployed.ro_role,)]

    # Nothing left to do; where to look is the server, not `mlflow ui` on an http URI.
    out = ok("run_all_months")
    assert "0 lifecycles" in out
    assert f"MLflow UI : {deployed.url}" in out and "backend-store-uri" not in out
    assert "Prefect UI:" in out
    assert ok("mlflow_ui").strip() == f"the tracking server serves the MLflow UI: {deployed.url}"
    ok("show_env")
    for line in "\n".join(outputs).splitlines():
        assert "w0rd" not in line, f"the password (raw or percent-encoded) was printed: {line}"


def test_the_call_budget_holds_over_http(small_history: Path, tracking_server: TrackingServer,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget of tests/test_call_budget.py against the tracking server: each call is a
    round trip there (docs/architecture.md, "The MLflow call budget")."""
    from mlflow_calls import lifecycles_within_budget
    from taxifare_flow.data.local import LocalSource

    for name, value in {
        "HISTORY_ROWS_PER_MONTH": str(ROWS), "HISTORY_FIRST_MONTH": "2012-08", "HISTORY_LAST_MONTH": "2012-10",
        "MLFLOW_TRACKING_URI": tracking_server.url, "MLFLOW_TRACKING_DB": tracking_server.admin_dsn,
        "PROMOTION_POLICY": "margin", "PROMOTION_MARGIN": "0",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    LocalSource(settings).reset()
    counted = lifecycles_within_budget(settings, 3)
    assert all(c.by_method["get_run"] == 0 for c in counted)


def test_mlflow_ui_on_a_tracking_server_prints_its_url(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a server running: `mlflow ui --backend-store-uri https://…` is never attempted."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://team:s3cret@mlflow.example.org")
    r = taxifare("mlflow_ui")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["the tracking server serves the MLflow UI: https://team:***@mlflow.example.org"]
