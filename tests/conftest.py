"""Shared fixtures: isolated settings, real MLflow stores (SQLite and PostgreSQL), one Prefect
test harness per session."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from taxifare_flow.settings import SETTING_VARS

if TYPE_CHECKING:
    from pg_tls import TlsServer

# MLflow logs table creation at INFO: keep test output readable.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


# -- test tiers (docs/testing.md) ---------------------------------------------------------

#: Marker -> the fixtures that start what it names. A test gets the marker from any of them it
#: uses, directly or through other fixtures, so `make test_fast` can leave it out.
SERVER_FIXTURES: dict[str, frozenset[str]] = {
    "postgres": frozenset({"postgres_server", "postgres_password_server", "postgres_db", "tls_server"}),
    "bigquery": frozenset({"bq_emulator"}),
    "prefect_server": frozenset({"prefect_server", "prefect_harness"}),
}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in SERVER_FIXTURES.items():
            if used & fixtures and item.get_closest_marker(marker) is None:
                item.add_marker(marker)
        # Under pytest-xdist (`--dist loadgroup`), the BigQuery tests share one worker and so one
        # emulator: two DuckDB-backed emulators on two cores starve each other into timeouts.
        if item.get_closest_marker("bigquery") is not None:
            item.add_marker(pytest.mark.xdist_group("bigquery"))


@pytest.fixture(autouse=True)
def _server_markers_match(request: pytest.FixtureRequest) -> Iterator[None]:
    """A fixture fetched at run time (`request.getfixturevalue`) is invisible to the collection
    hook: the test must carry its marker itself (say `pytest.param(..., marks=...)`), else it
    errors here instead of slipping into the fast tier."""
    yield
    used = set(request.fixturenames)
    missing = [m for m, fixtures in SERVER_FIXTURES.items() if used & fixtures and request.node.get_closest_marker(m) is None]
    if missing:
        pytest.fail(f"{request.node.nodeid} uses {sorted(used & set().union(*SERVER_FIXTURES.values()))} at run time "
                    f"without the marker(s) {missing}: add them (pytest.param(..., marks=pytest.mark.NAME))", pytrace=False)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No taxifare setting from the machine leaks in; the working directory has no .env."""
    for name in SETTING_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def small_history(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings for a small generated history spanning the 2012-09 fare change."""
    data = clean_env / "data"
    monkeypatch.setenv("LOCAL_DATA_PATH", str(data))
    monkeypatch.setenv("HISTORY_ROWS_PER_MONTH", "2500")
    monkeypatch.setenv("HISTORY_FIRST_MONTH", "2012-05")
    monkeypatch.setenv("HISTORY_LAST_MONTH", "2013-02")
    monkeypatch.setenv("MLFLOW_EXPERIMENT", f"exp-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("MLFLOW_MODEL_NAME", f"model-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("LOCK_TIMEOUT_SECONDS", "120")
    return data


@pytest.fixture
def three_months(small_history: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`small_history`'s settings for a history of three months of 300 rows, 2012-08 … 2012-10."""
    monkeypatch.setenv("HISTORY_FIRST_MONTH", "2012-08")
    monkeypatch.setenv("HISTORY_LAST_MONTH", "2012-10")
    monkeypatch.setenv("HISTORY_ROWS_PER_MONTH", "300")
    return small_history


# -- PostgreSQL -------------------------------------------------------------------------


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1].parent if candidates else None


@contextmanager
def _private_postgres(bindir: Path, password: str | None = None) -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port: trust authentication, or scram
    with `password`. Yields `postgresql://postgres@127.0.0.1:PORT` (no password in it)."""
    import tempfile

    # pytest's tmp tree is root-only (mode 700): the cluster lives where `postgres` can reach.
    root = Path(tempfile.mkdtemp(prefix="taxifare-pg-"))
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    auth = ["-A", "trust"]
    if password is not None:
        (root / "pw").write_text(password)
        auth = ["-A", "scram-sha-256", f"--pwfile={root / 'pw'}"]
    if run_as:
        for p in (root, *root.iterdir()):
            shutil.chown(p, "postgres")
    data, port = root / "data", _free_port()
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", *auth], check=True, capture_output=True)
    subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
                    "-l", str(root / "log"), "-w", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server: the machine's on 127.0.0.1:5432 if it answers, else one started
    here from the PostgreSQL binaries; skipped (with the reason) only when there are none."""
    import psycopg

    for user in ("postgres", os.environ.get("USER", "root")):
        dsn = f"postgresql://{user}@127.0.0.1:5432/postgres"
        if _port_open("127.0.0.1", 5432):
            try:
                with psycopg.connect(dsn, connect_timeout=3):
                    yield dsn.rsplit("/", 1)[0]
                    return
            except psycopg.Error:
                continue
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432 and no PostgreSQL binaries (initdb) to start one")
    with _private_postgres(bindir) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_password_server() -> Iterator[tuple[str, str]]:
    """A private PostgreSQL server with password (scram) authentication: the machine's server
    trusts everyone, so it cannot refuse a password. Yields (DSN without password, password)."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL binaries (initdb) to start a password-authenticated server")
    password = "s3cret-Pa55"
    with _private_postgres(bindir, password) as server:
        yield f"{server}/postgres", password


@pytest.fixture(scope="session")
def postgres_db(postgres_server: str) -> Iterator[str]:
    """A fresh database for this test session (dropped at the end)."""
    import psycopg

    name = f"taxifare_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{postgres_server}/{name}"
    finally:
        with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return "sqlite:///" + str(tmp_path_factory.mktemp("mlflow") / "mlflow.db")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def tracking_store(request: pytest.FixtureRequest) -> str:
    """Each watermark test runs on both stores, written by the real MLflow."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_store")
    return request.getfixturevalue("postgres_db")


# -- Prefect ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One Prefect test harness (a temporary local API) for the whole session."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    from prefect.testing.utilities import prefect_test_harness

    started = time.perf_counter()
    with prefect_test_harness(server_startup_timeout=120):
        print(f"prefect harness up in {time.perf_counter() - started:.1f} s")
        yield


def _wait_for_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    """Until `url` answers 200; fails with the end of `log` if the process died or time ran out."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process_group(proc)
            raise RuntimeError(f"{url} did not answer: {log.read_text()[-3000:]}")
        time.sleep(0.3)


def stop_process_group(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """Stops a server started with `start_new_session=True` and everything it spawned (uvicorn
    and gunicorn workers live in its process group): SIGTERM, then SIGKILL to the group."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    # Workers may outlive their leader: the group goes, whatever is left of it.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def group_alive(pgid: int, wait: float = 5.0) -> bool:
    """Whether a live (not zombie) process of the group remains, after up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        alive = False
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ')'.
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive = True
                break
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server (`prefect server start`, no UI) on a free loopback port with a
    PREFECT_HOME of its own; yields its PREFECT_API_URL. Its process group is killed at the end."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_UI_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING")
    log = home / "server.log"
    started = time.perf_counter()
    with log.open("w") as out:
        # cwd = its home: Prefect reads ./.env, and no test's .env is meant for the server.
        proc = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host", "127.0.0.1",
                                 "--port", str(port), "--no-ui", "--analytics-off"],
                                cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_http(f"http://127.0.0.1:{port}/api/health", proc, log, timeout=180)
        print(f"prefect server up in {time.perf_counter() - started:.1f} s")
        yield f"http://127.0.0.1:{port}/api"
    finally:
        stop_process_group(proc)
        assert not group_alive(proc.pid), "a process of the Prefect server survived"


# -- BigQuery emulator ------------------------------------------------------------------


@pytest.fixture(scope="session")
def bq_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The bqemulator (REST + Storage Read gRPC) on loopback, installed in its own venv by
    scripts/bqemulator.sh; skipped with the reason only if it cannot be installed."""
    import urllib.request

    root = Path(__file__).resolve().parent.parent
    try:
        venv = subprocess.run(["bash", str(root / "scripts" / "bqemulator.sh")], check=True, capture_output=True,
                              text=True, timeout=900).stdout.strip().splitlines()[-1]
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"the BigQuery emulator could not be installed: {getattr(e, 'stderr', '')!s:.500}")
    rest, grpc_port = _free_port(), _free_port()
    log = tmp_path_factory.mktemp("bqemulator") / "emulator.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [f"{venv}/bin/bqemulator", "start", "--rest-host", "127.0.0.1", "--rest-port", str(rest), "--grpc-host",
             "127.0.0.1", "--grpc-port", str(grpc_port), "--project", "test-project", "--ephemeral", "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{rest}/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bqemulator did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{rest}", f"127.0.0.1:{grpc_port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def bigquery_env(bq_emulator: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """DATA_SOURCE=bigquery against the emulator, with a table of this test's own."""
    import uuid as _uuid

    rest, grpc_addr = bq_emulator
    monkeypatch.setenv("DATA_SOURCE", "bigquery")
    monkeypatch.setenv("GCP_PROJECT", "test-project")
    monkeypatch.setenv("BQ_DATASET", "taxifare_test")
    monkeypatch.setenv("BQ_TABLE", f"rides_{_uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("BQ_API_ENDPOINT", rest)
    monkeypatch.setenv("BQ_STORAGE_ENDPOINT", grpc_addr)
    # The emulator is DuckDB behind Python: on a busy 2-core machine one warehouse query can
    # wait longer than BigQuery's usual 30 s. The tests of timeouts set their own.
    monkeypatch.setenv("BQ_TIMEOUT_SECONDS", "300")


# -- a TLS-only PostgreSQL ----------------------------------------------------------------

# Every character a DSN must percent-encode: the fixture's DSNs do, the messages never show it.
TLS_PASSWORD = "tls:Pa55/w@rd%"


@pytest.fixture(scope="session")
def tls_server() -> Iterator[TlsServer]:
    """A private PostgreSQL that accepts TLS only (hostssl, scram), with a CA made here."""
    from pg_tls import tls_only_postgres

    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL binaries (initdb) to start a TLS-only server")
    import psycopg

    with tls_only_postgres(bindir, TLS_PASSWORD) as server:
        with psycopg.connect(server.dsn(sslmode="require"), autocommit=True, connect_timeout=5) as conn:
            conn.execute("CREATE DATABASE mlflow_tls")
            # Authenticated by its client certificate (pg_hba: cert), reads everything.
            conn.execute("CREATE ROLE certuser LOGIN")
            conn.execute("GRANT pg_read_all_data TO certuser")
        yield dataclasses.replace(server, database="mlflow_tls")


