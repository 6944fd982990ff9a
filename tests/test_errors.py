"""Every command against every failure it can meet: exit status 2, at most three lines on
stderr, no traceback, no password — and the traceback when asked for with --debug.

Each (command, failure) runs in this process through typer's CliRunner (`run`): the same code
from the arguments to the exit status, without an interpreter importing mlflow and Prefect per
case. Real processes check what only a process shows (its exit status, its whole stderr,
Prefect's own log handlers included), one per kind of outcome: a one-line error before any
server starts, the traceback with --debug, and (tier `prefect_server`: each starts the local
Prefect API) a one-line error from inside the Prefect flow."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import Ran, taxifare, taxifare_in_process
from taxifare_flow.data.local import LocalSource
from taxifare_flow.settings import load_settings

PASSWORD = "s3cr/et@pw:%"
ENCODED = "s3cr%2Fet%40pw%3A%25"


@pytest.fixture
def arrived(small_history: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small history with one month arrived, nothing trained."""
    monkeypatch.setenv("HISTORY_LAST_MONTH", "2012-07")
    LocalSource(load_settings()).reset()
    LocalSource(load_settings()).bring_next_month()
    return small_history


def run(*args: str, env: dict[str, str] | None = None, process: bool = False) -> subprocess.CompletedProcess[str] | Ran:
    """The command in this process, or with `process` in a real one (`taxifare`)."""
    return taxifare(*args, env=env) if process else taxifare_in_process(*args, env=env)


def _assert_clean_failure(r: subprocess.CompletedProcess[str] | Ran, *needles: str) -> None:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert 1 <= len(lines) <= 3 and "Traceback" not in r.stderr + r.stdout, r.stderr
    for secret in (PASSWORD, ENCODED, "s3cr"):
        assert secret not in r.stderr + r.stdout
    for needle in needles:
        assert needle in r.stderr, r.stderr


DB_COMMANDS = ["run_flow", "run_all_months", "watermark", "report", "check"]

#: A failure raised inside the Prefect flow runs in a real process: Prefect's own log handlers
#: write to the stream of the first run that configured them, so only a process shows its whole
#: stderr (the CLI's filter must drop their tracebacks). Each starts the local Prefect API.
IN_FLOW = pytest.mark.prefect_server


@pytest.mark.parametrize("command", DB_COMMANDS)
def test_tracking_db_unreachable(arrived: Path, command: str) -> None:
    uri = f"postgresql://taxi:{ENCODED}@127.0.0.1:1/mlflow"
    # The real process: a one-line error before any server starts.
    r = run(command, env={"MLFLOW_TRACKING_URI": uri}, process=command == "run_flow")
    _assert_clean_failure(r, "127.0.0.1")


@pytest.mark.parametrize("command", DB_COMMANDS)
def test_bad_password(arrived: Path, postgres_password_server: tuple[str, str], command: str) -> None:
    dsn, _ = postgres_password_server
    uri = dsn.replace("postgres@", f"postgres:{ENCODED}@")
    r = run(command, env={"MLFLOW_TRACKING_URI": uri})
    _assert_clean_failure(r, "password")


@pytest.mark.parametrize("command", DB_COMMANDS)
def test_tls_required(arrived: Path, tls_server, command: str) -> None:
    uri = tls_server.dsn(sslmode="disable")
    r = run(command, env={"MLFLOW_TRACKING_URI": uri})
    _assert_clean_failure(r, "TrackingDbTlsRequiredError", "requires TLS")
    assert tls_server.password not in r.stderr


@pytest.mark.parametrize("command", DB_COMMANDS)
def test_not_an_mlflow_store(arrived: Path, command: str) -> None:
    bogus = arrived / "not-mlflow.db"
    bogus.write_bytes(b"this is not a database" * 100)
    r = run(command, env={"MLFLOW_TRACKING_URI": f"sqlite:///{bogus}"})
    _assert_clean_failure(r)
    assert bogus.read_bytes() == b"this is not a database" * 100, "nothing stored is touched"


@pytest.mark.parametrize("command", ["run_flow", "run_all_months", "demo", "check"])
def test_lock_timeout(arrived: Path, command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from taxifare_flow.flow.lock import lifecycle_lock

    env = {"LOCK_TIMEOUT_SECONDS": "0.5"}
    args = [command, "--repair"] if command == "check" else [command]
    with lifecycle_lock(load_settings()):
        r = run(*args, env=env)
    _assert_clean_failure(r, "LockTimeout", "another lifecycle run holds")


@pytest.mark.parametrize("command", ["run_flow", "run_all_months", "demo", "get_new_month", "import_csv", "reset_data_sources",
                                     "show_data_sources", "push_month_to_bq", "reset_bq_tables", "watermark", "report", "check"])
def test_bad_setting(clean_env: Path, command: str) -> None:
    args = [command, "whatever.csv"] if command == "import_csv" else [command]
    r = run(*args, env={"HOLDOUT_FRACTION": "2"})
    _assert_clean_failure(r, "HOLDOUT_FRACTION='2' is out of range")


@pytest.mark.parametrize("command", [pytest.param("run_flow", marks=IN_FLOW), pytest.param("run_all_months", marks=IN_FLOW),
                                     "get_new_month", "show_data_sources"])
def test_bad_source_file(arrived: Path, command: str) -> None:
    src = load_settings().source_dir
    month = next(src.glob("2012-05_*.parquet"))
    month.write_bytes(b"PAR1 garbage, not what the name promises")
    r = run(command, process=command in ("run_flow", "run_all_months"))
    _assert_clean_failure(r, month.name)


@pytest.mark.parametrize("command", ["reset_bq_tables", "push_month_to_bq", "show_bq_tables", pytest.param("run_flow", marks=IN_FLOW)])
def test_bigquery_unreachable(arrived: Path, command: str) -> None:
    env = {"DATA_SOURCE": "bigquery", "GCP_PROJECT": "p", "BQ_API_ENDPOINT": "http://127.0.0.1:1", "BQ_TIMEOUT_SECONDS": "1"}
    r = run(command, env=env, process=command == "run_flow")
    _assert_clean_failure(r, "BigQueryError", "127.0.0.1:1")


def test_import_of_a_missing_file(clean_env: Path) -> None:
    _assert_clean_failure(run("import_csv", str(clean_env / "nope.csv")), "nope.csv")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="mounting a small tmpfs needs root")
@pytest.mark.parametrize("command", ["reset_data_sources", "get_new_month"])
def test_no_space(small_history: Path, tmp_path: Path, command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("tmpfs cannot be mounted here")
    try:
        monkeypatch.setenv("LOCAL_DATA_PATH", str(disk))
        if command == "get_new_month":
            # The history fits, the month's copy into the source does not.
            monkeypatch.setenv("HISTORY_ROWS_PER_MONTH", "9000")
            monkeypatch.setenv("HISTORY_LAST_MONTH", "2012-06")
            assert run("reset_data_sources").returncode == 0
            subprocess.run(["dd", "if=/dev/zero", f"of={disk}/filler", "bs=4k"], capture_output=True)  # until full
        else:
            monkeypatch.setenv("HISTORY_ROWS_PER_MONTH", "200000")
        r = run(command)
        _assert_clean_failure(r, "No space left on device")
        if command == "get_new_month":
            assert [p.name for p in (disk / "source").iterdir()] == [], "no partial month is left"
    finally:
        subprocess.run(["umount", "-l", str(disk)])


def test_debug_shows_the_traceback(clean_env: Path) -> None:
    r = taxifare("--debug", "watermark", env={"MLFLOW_TRACKING_URI": "postgresql://u@127.0.0.1:1/db"})
    assert r.returncode != 0 and "Traceback" in r.stderr
    r = run("run_flow", env={"HOLDOUT_FRACTION": "2", "TAXIFARE_DEBUG": "1"})
    assert r.returncode != 0 and "Traceback" in r.stderr


@pytest.mark.parametrize("command", ["run_flow", "run_all_months", "report", "check"])
def test_tracking_server_down(arrived: Path, command: str) -> None:
    # MLflow's client would retry for minutes; the health check answers in seconds.
    env = {"MLFLOW_TRACKING_URI": f"http://taxi:{ENCODED}@127.0.0.1:1",
           "MLFLOW_TRACKING_DB": f"sqlite:///{arrived / 'mlflow' / 'mlflow.db'}"}
    r = run(command, env=env)
    _assert_clean_failure(r, "TrackingStoreError", "does not answer")


@pytest.mark.parametrize("command", [pytest.param("run_flow", marks=IN_FLOW), "check", "report"])
def test_a_deleted_experiment_is_named(arrived: Path, command: str) -> None:
    from taxifare_flow.ml_logic.registry import open_registry

    reg = open_registry(load_settings())
    reg.client.delete_experiment(reg.experiment_id)
    r = run(command, process=command == "run_flow")
    _assert_clean_failure(r, "is deleted", "mlflow experiments restore")
