"""Issue 26, items 4 to 8: an empty first model, a hot SQLite journal, failures that were
tracebacks, what `check` did not see, and the small ones. Each test failed before its fix."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import arrive, taxifare
from taxifare_flow.data.history import pending_problems
from taxifare_flow.errors import DataValidationError
from taxifare_flow.data.local import LocalSource
from taxifare_flow.flow.lifecycle import run_lifecycle
from taxifare_flow.ml_logic.registry import PRODUCTION, open_registry
from taxifare_flow.settings import SettingsError, load_settings
from taxifare_flow.validation.step import Acceptance, accept_next

ROWS = 300  # rows a month in the three_months fixture


def _one_line(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for needle in needles:
        assert needle in r.stderr, r.stderr


def _findings(r: subprocess.CompletedProcess, *needles: str) -> None:
    """`check` reported a broken guarantee: exit 1, the finding in its table."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout and "not sound" in r.stdout, r.stdout
    for needle in needles:
        assert needle in r.stdout, r.stdout


def _reset(n_arrived: int = 0) -> None:
    LocalSource(load_settings()).reset()
    arrive(n_arrived)


# -- 4. a first month without a clean row ----------------------------------------------------


def test_a_first_month_without_a_clean_row_does_not_block_the_lineage(three_months: Path) -> None:
    settings = load_settings()
    _reset()
    first = settings.pending_dir / "2012-08.parquet"
    table = pq.read_table(first)
    fares = pa.array([1e308] * table.num_rows, type=table.schema.field("fare_amount").type)
    # The schema's metadata keeps the month the file records.
    pq.write_table(table.set_column(table.schema.get_field_index("fare_amount"), "fare_amount", fares), first)
    arrive(1)
    # The data-validation gate refuses such a month first (nothing trained); accepted, it trains.
    with pytest.raises(DataValidationError, match="refused"):
        run_lifecycle(settings)
    accept_next(Acceptance("tester@host", "2026-01-01T00:00:00Z"))
    empty = run_lifecycle(settings)
    assert (empty.status, empty.cleaned_rows) == ("trained", 0)
    arrive(1)
    second = run_lifecycle(settings)  # was: ModelError, the model has not been fitted on any row
    assert (second.first_row, second.end_row) == (ROWS, 2 * ROWS) and second.cleaned_rows > 0
    assert second.decision == "promote" and second.production_version == second.version
    assert taxifare("check").returncode == 0


# -- 5. a hot SQLite journal -----------------------------------------------------------------


_WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode = DELETE")
conn.execute("PRAGMA cache_size = 1")  # the transaction's pages spill into the file before it commits
conn.execute("BEGIN IMMEDIATE")
run = conn.execute("SELECT run_uuid FROM runs LIMIT 1").fetchone()[0]
for k in range(3000):
    conn.execute("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", (f"filler-{k}", "x" * 200, run))
print("inside", flush=True)
time.sleep(600)
"""


def test_a_hot_journal_left_by_a_killed_writer_is_rolled_back(three_months: Path) -> None:
    settings = load_settings()
    _reset(1)
    run_lifecycle(settings)
    db = settings.mlflow_dir / "mlflow.db"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "inside"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    journal = db.with_name("mlflow.db-journal")
    assert journal.exists() and journal.stat().st_size > 0, "a real hot journal"
    r = taxifare("check")  # was: "is not a SQLite MLflow store … point MLFLOW_TRACKING_URI elsewhere"
    assert r.returncode == 0 and "sound" in r.stdout, (r.stdout, r.stderr)
    assert not journal.exists(), "rolled back"
    import sqlite3

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM tags WHERE key LIKE 'filler-%'").fetchone()[0] == 0
    arrive(1)
    assert run_lifecycle(settings).end_row == 2 * ROWS


# -- 7. what check did not see ---------------------------------------------------------------


@pytest.mark.parametrize("damage", ["gap", "overlap", "empty"])
def test_check_reports_a_source_whose_names_do_not_tile(three_months: Path, damage: str) -> None:
    settings = load_settings()
    _reset(3)
    files = sorted(settings.source_dir.iterdir())
    if damage == "gap":
        files[1].unlink()
        needle = "gap"
    elif damage == "overlap":
        files[1].rename(files[1].with_name(files[1].name.replace(f"_r{ROWS:012}", f"_r{ROWS - 10:012}")))
        needle = "overlap"
    else:
        files[2].rename(files[2].with_name(f"2012-10_r{3 * ROWS:012}-{3 * ROWS:012}.parquet"))
        needle = "empty"
    r = taxifare("check")  # was: exit 2, one line
    _findings(r, needle)


def test_check_deep_reports_a_truncated_file(three_months: Path) -> None:
    settings = load_settings()
    _reset(1)
    run_lifecycle(settings)
    month = next(settings.source_dir.glob("2012-08_*.parquet"))
    data = month.read_bytes()
    month.write_bytes(data[: len(data) // 2])
    r = taxifare("check", "--deep")  # was: exit 2
    _findings(r, month.name)


def test_check_reports_a_renamed_model_name(three_months: Path) -> None:
    settings = load_settings()
    _reset(1)
    run_lifecycle(settings)
    r = taxifare("check", env={"MLFLOW_MODEL_NAME": "renamed"})
    _findings(r, "no valid version of 'renamed' ends at row 300", f"MLFLOW_MODEL_NAME={settings.mlflow_model_name}")


def test_check_repair_tags_a_version_without_a_run(three_months: Path) -> None:
    settings = load_settings()
    _reset(1)
    run_lifecycle(settings)
    reg = open_registry(settings)
    runless = reg.client.create_model_version(settings.mlflow_model_name, source=str(three_months / "nowhere"))
    _findings(taxifare("check"), f"version {runless.version}")
    r = taxifare("check", "--repair")
    assert r.returncode == 0 and f"version {runless.version} tagged orphaned" in r.stdout, r.stdout
    assert "orphaned" in reg.client.get_model_version(settings.mlflow_model_name, runless.version).tags


def test_check_reports_a_month_removed_from_the_manifest(three_months: Path) -> None:
    settings = load_settings()
    _reset()
    manifest = settings.pending_dir / "manifest.json"
    raw = json.loads(manifest.read_text())
    del raw["months"]["2012-09"]
    manifest.write_text(json.dumps(raw))
    _findings(taxifare("check"), "2012-09", "never arrive")


def test_check_reports_a_pending_file_holding_another_months_rows(three_months: Path) -> None:
    settings = load_settings()
    _reset()
    shutil.copyfile(settings.pending_dir / "2012-08.parquet", settings.pending_dir / "2012-09.parquet")
    _findings(taxifare("check"), "holds the rides of 2012-08, not of 2012-09")


def test_check_reports_a_seed_differing_from_the_manifest(three_months: Path) -> None:
    _reset(1)
    _findings(taxifare("check", env={"HISTORY_SEED": "7"}), "HISTORY_SEED=7 but pending/ was generated with seed 42")


def test_check_says_a_retracted_production_still_loads_until_repaired(three_months: Path) -> None:
    settings = load_settings()
    _reset(1)
    run_lifecycle(settings)
    reg = open_registry(settings)
    prod = reg.version_by_alias(PRODUCTION)
    assert prod is not None
    reg.client.set_terminated(prod.run_id, "FAILED")
    _findings(taxifare("check"), f"models:/{settings.mlflow_model_name}@production still loads it", "check --repair")
    r = taxifare("check", "--repair")
    assert r.returncode == 0, r.stdout
    assert reg.version_by_alias(PRODUCTION) is None


# -- 8. the small ones -----------------------------------------------------------------------


def test_a_promotion_margin_beyond_any_error_is_refused(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMOTION_MARGIN", "1e308")
    with pytest.raises(SettingsError, match="PROMOTION_MARGIN='1e308' is out of range"):
        load_settings()
    _one_line(taxifare("show_env"), "PROMOTION_MARGIN")


def test_import_csv_names_a_folder_and_a_fifo(clean_env: Path) -> None:
    folder = clean_env / "a-folder"
    folder.mkdir()
    _one_line(taxifare("import_csv", str(folder)), "is a folder")
    fifo = clean_env / "a-fifo.csv"
    os.mkfifo(fifo)
    _one_line(taxifare("import_csv", str(fifo)), "is a named pipe (FIFO)")


def test_reset_data_sources_regenerates_a_truncated_pending_file(three_months: Path) -> None:
    settings = load_settings()
    _reset()
    month = settings.pending_dir / "2012-09.parquet"
    whole = month.read_bytes()
    month.write_bytes(whole[: len(whole) // 3])
    assert pending_problems(settings)
    r = taxifare("reset_data_sources")
    assert r.returncode == 0, r.stderr
    assert pending_problems(settings) == []
    assert month.read_bytes() == whole, "the generator is deterministic"


# -- 6. failures that were tracebacks -------------------------------------------------------


def test_a_store_of_another_schema_revision_is_one_line(three_months: Path) -> None:
    import sqlite3

    settings = load_settings()
    _reset(1)
    run_lifecycle(settings)
    arrive(1)
    # What an interrupted migration by another MLflow (an `mlflow ui` of another install) leaves.
    with sqlite3.connect(settings.mlflow_dir / "mlflow.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '75868b020152'")
    for command in ("check", "report", "run_flow"):
        _one_line(taxifare(command), "schema revision 75868b020152", "mlflow db upgrade")


@pytest.mark.prefect_server  # `taxifare run_flow` in a child starts the local Prefect API
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="mounting a small tmpfs needs root")
def test_a_full_disk_during_run_flow_is_one_line_and_a_failed_run(three_months: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("tmpfs cannot be mounted here")
    try:
        monkeypatch.setenv("LOCAL_DATA_PATH", str(disk / "data"))
        # Prefect's own database elsewhere: the full disk is the one MLflow and the data share.
        monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
        settings = load_settings()
        _reset(1)
        run_lifecycle(settings)
        arrive(1)
        filler = disk / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)  # until full
        # Room for the run's rows in MLflow's DB, not for its model's artifacts.
        os.truncate(filler, filler.stat().st_size - 48 * 1024)
        r = taxifare("run_flow")  # was: ~880 lines, exit 1, the run left RUNNING
        _one_line(r, "no space left", "FAILED")
        filler.unlink()
        runs = open_registry(settings).client.search_runs([open_registry(settings).experiment_id], "")
        assert sorted(run.info.status for run in runs) == ["FAILED", "FINISHED"]
        assert run_lifecycle(settings).end_row == 2 * ROWS
    finally:
        subprocess.run(["umount", "-l", str(disk)])


@pytest.mark.postgres
@pytest.mark.parametrize("wrong", ["database", "port", "password", "raw @"])
def test_a_wrong_direct_postgresql_uri_is_one_line_quickly(three_months: Path, postgres_server: str,
                                                           postgres_password_server: tuple[str, str], wrong: str) -> None:
    _reset(1)
    good = postgres_server.split("://", 1)[1].split("@", 1)[1]  # host:port
    host, port = good.rsplit(":", 1)
    secret = "Zq9-never-shown"
    # The watermark's DSN is right (MLFLOW_DB_*), MLflow's own URI is not.
    env = {"MLFLOW_DB_USER": "postgres", "MLFLOW_DB_HOSTNAME": host, "MLFLOW_DB_PORT": port, "MLFLOW_DB_NAME": "postgres"}
    pw_server = postgres_password_server[0].split("@", 1)[1]  # host:port/postgres
    uri = {
        "database": f"postgresql://postgres:{secret}@{good}/no_such_database",
        "port": f"postgresql://postgres:{secret}@{host}:1/postgres",
        "password": f"postgresql://postgres:{secret}@{pw_server}",
        "raw @": f"postgresql://postgres:{secret[:4]}@{secret[4:]}@{good}/postgres",
    }[wrong]
    r = taxifare("check", env={**env, "MLFLOW_TRACKING_URI": uri}, timeout=60)  # was: ~120 s, ~600 lines
    _one_line(r, "SettingsError" if wrong == "raw @" else "TrackingDb")
    for fragment in (secret, secret[:4], secret[4:]):
        assert fragment not in r.stdout + r.stderr
