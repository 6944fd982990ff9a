"""Every arrived row trained exactly once, whatever happens: runs left behind, retracted runs,
orphans of a kill, concurrent first runs, a full disk, bad settings — and `taxifare check`."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import arrive, assert_tiles, taxifare, training_intervals
from taxifare_flow.data.local import LocalSource
from taxifare_flow.errors import IntegrityError
from taxifare_flow.flow.lifecycle import run_lifecycle
from taxifare_flow.ml_logic import get_latest_trained_row
from taxifare_flow.ml_logic.registry import CHALLENGER, PRODUCTION, open_registry
from taxifare_flow.settings import SettingsError, load_settings

ROWS = 2500  # rows a month in the small_history fixture


def _runs_by_first_row(settings) -> dict[int, object]:
    return {int(r.data.params["first_row"]): r for r in open_registry(settings).training_runs()}


def _servers_of(prefect_home: Path) -> list[int]:
    """PIDs of Prefect API servers whose PREFECT_HOME is `prefect_home`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"prefect.server.api.server" in cmdline and f"PREFECT_HOME={prefect_home}\0".encode() in environ:
            found.append(int(proc.name))
    return found


def _one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for needle in needles:
        assert needle in r.stderr, r.stderr


# Two `taxifare run_all_months` processes, each starting the local Prefect API.
@pytest.mark.prefect_server
def test_run_all_months_trains_arrived_rows_before_bringing_new_ones(small_history: Path, monkeypatch) -> None:
    monkeypatch.setenv("HISTORY_LAST_MONTH", "2012-08")
    settings = load_settings()
    LocalSource(settings).reset()
    arrive(3)  # arrived by hand, never trained
    r = taxifare("run_all_months")
    assert r.returncode == 0, r.stderr
    # One catch-up lifecycle over the three arrived months, then the one month still pending.
    assert "2 lifecycles, 10,000 rows" in r.stdout, r.stdout
    assert training_intervals(settings) == [(0, 3 * ROWS), (3 * ROWS, ROWS)]
    # Everything arrived but the watermark is behind (a killed run_all_months): it trains.
    run = _runs_by_first_row(settings)[3 * ROWS]
    open_registry(settings).client.delete_run(run.info.run_id)
    r = taxifare("run_all_months")
    assert r.returncode == 0 and "1 lifecycles, 2,500 rows" in r.stdout, (r.stdout, r.stderr)
    assert get_latest_trained_row() == 4 * ROWS


@pytest.mark.prefect_server
def test_a_replay_moves_in_the_month_it_wrote_ahead_only_when_that_month_begins(small_history: Path) -> None:
    """A replay writes the next month ahead while the current month saves its model
    (`simulate.MonthAhead`): a replay stopped after a month leaves the next one pending and
    nothing staged; one started after a month was brought by hand trains that month as it is."""
    from taxifare_flow.flow.simulate import simulate

    settings = load_settings()
    source = LocalSource(settings)
    source.reset()

    def hidden() -> list[str]:
        return [p.name for p in settings.source_dir.iterdir() if p.name.startswith(".")]

    assert [t.month for t in simulate(settings, 1)] == ["2012-05"]
    assert (source.row_count(), source.pending()[0], hidden()) == (ROWS, "2012-06", [])
    arrive(1)
    assert [t.month for t in simulate(settings, 2)] == ["2012-06", "2012-07"]
    assert (hidden(), source.pending()[0]) == ([], "2012-08")
    assert_tiles(training_intervals(settings), 3 * ROWS)
    assert source.problems() == []
    # What is moved in is the staged file itself; a killed replay's staged file is swept.
    dead = settings.source_dir / ".staged-2012-08-999999999.parquet"
    dead.write_bytes(b"left by a killed replay")
    staged = source.stage_next_month()
    assert staged is not None and staged.month == "2012-08" and len(hidden()) == 1 and not dead.exists()
    inode = (settings.source_dir / hidden()[0]).stat().st_ino
    arrived = source.bring_next_month(staged)
    assert arrived is not None and arrived.month == "2012-08" and hidden() == []
    assert [f.stat().st_ino for f in settings.source_dir.iterdir() if "2012-08" in f.name] == [inode]


def test_a_retracted_run_never_serves(small_history: Path) -> None:
    settings = load_settings()
    LocalSource(settings).reset()
    arrive(1)
    first = run_lifecycle(settings)
    arrive(1)
    second = run_lifecycle(settings)
    reg = open_registry(settings)
    # Whatever the policy decided, make the second version production, as a promotion would.
    reg.set_alias(PRODUCTION, second.version)
    # Someone deletes the latest training run: its model is retracted.
    reg.client.delete_run(second.run_id)
    assert get_latest_trained_row() == ROWS
    arrive(1)
    third = run_lifecycle(settings)
    assert (third.first_row, third.end_row) == (ROWS, 3 * ROWS), "the retracted rows are trained again"
    v3 = reg.head_for(3 * ROWS)
    assert v3.tags["evaluated_production"] == str(first.version), "production fell back to the valid promoted version"
    assert v3.tags["parent_version"] == str(first.version)
    assert reg.client.get_model_version(settings.mlflow_model_name, second.version).tags["orphaned"].endswith("is deleted")
    assert str(reg.version_by_alias(CHALLENGER).version) == str(v3.version)
    assert_tiles(training_intervals(settings), 3 * ROWS)

    # A run marked FAILED after the fact is retracted too; with no valid promoted version left
    # below it, production is none.
    reg.set_alias(PRODUCTION, v3.version)
    reg.client.set_terminated(third.run_id, "FAILED")
    reg.client.set_terminated(first.run_id, "FAILED")
    assert get_latest_trained_row() == 0
    fourth = run_lifecycle(settings)
    assert (fourth.first_row, fourth.end_row) == (0, 3 * ROWS)
    assert fourth.prequential_mae is None and fourth.decision == "promote"
    assert str(reg.version_by_alias(PRODUCTION).version) == str(fourth.version)


@pytest.mark.slow  # a lifecycle killed with SIGKILL, then repaired
def test_orphans_of_a_killed_lifecycle_are_repaired(small_history: Path) -> None:
    settings = load_settings()
    LocalSource(settings).reset()
    arrive(1)
    run_lifecycle(settings)
    arrive(1)
    # kill -9 right after the model version was registered, before the run finished.
    code = (
        "import os, signal\n"
        "from taxifare_flow.flow.lifecycle import lifecycle\n"
        "from taxifare_flow.settings import load_settings\n"
        "def wrap(fn, name):\n"
        "    if name != 'finalise':\n"
        "        return fn\n"
        "    def killed(*a):\n"
        "        fn(*a)\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return killed\n"
        "lifecycle(load_settings(), wrap)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=300).returncode == -signal.SIGKILL
    reg = open_registry(settings)
    running = reg.client.search_runs([reg.experiment_id], "attributes.status = 'RUNNING'")
    assert len(running) == 1
    orphan = reg.versions()[-1]
    assert orphan.run_id == running[0].info.run_id and orphan.tags.get("decision")
    r = taxifare("check")
    assert r.returncode == 1 and "is RUNNING with no lifecycle running" in r.stdout and "not tagged orphaned" in r.stdout
    r = taxifare("check", "--repair")
    assert r.returncode == 0, r.stdout
    assert reg.client.get_run(running[0].info.run_id).info.status == "KILLED"
    assert "orphaned" in reg.client.get_model_version(settings.mlflow_model_name, orphan.version).tags
    outcome = run_lifecycle(settings)
    assert (outcome.first_row, outcome.end_row) == (ROWS, 2 * ROWS)
    assert reg.head_for(2 * ROWS).version != orphan.version
    assert str(reg.version_by_alias(CHALLENGER).version) == str(outcome.version)
    assert taxifare("check").returncode == 0


def test_a_lifecycle_refuses_a_broken_tiling_and_check_names_it(small_history: Path, monkeypatch) -> None:
    monkeypatch.setenv("SOURCE_FORMAT", "csv")
    settings = load_settings()
    LocalSource(settings).reset()
    for _ in range(3):
        arrive(1)
        run_lifecycle(settings)
    r = taxifare("check", "--deep")
    assert r.returncode == 0 and "sound" in r.stdout, r.stdout
    # A fare changed in place: the names and the row count still agree, the lineage does not.
    month = sorted((settings.source_dir).glob("2012-06_*.csv"))[0]
    lines = month.read_text().splitlines()
    fields = lines[5].split(",")
    fields[2] = "999.5" if fields[2] != "999.5" else "998.5"
    lines[5] = ",".join(fields)
    month.write_text("\n".join(lines) + "\n")
    r = taxifare("check", "--deep")
    assert r.returncode == 1 and f"rows {ROWS}..{2 * ROWS} of the source differ" in r.stdout, r.stdout
    # A middle run deleted: a gap the next lifecycle must not train over.
    reg = open_registry(settings)
    reg.client.delete_run(_runs_by_first_row(settings)[ROWS].info.run_id)
    arrive(1)
    with pytest.raises(IntegrityError, match=f"rows {ROWS}..{2 * ROWS} were trained by no finished run"):
        run_lifecycle(settings)
    assert get_latest_trained_row() == ROWS, "the rows tile from 0 only up to the gap"
    r = taxifare("check")
    assert r.returncode == 1 and f"rows {ROWS}..{2 * ROWS} were trained by no finished run" in r.stdout
    reg.client.restore_run(_deleted_run(reg))
    assert run_lifecycle(settings).end_row == 4 * ROWS


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_client_clock_behind_does_not_move_the_watermark(small_history: Path, store: str, request, monkeypatch) -> None:
    """A laptop an hour behind the others logs its lifecycle's run with an end_time before the
    previous run's; an old run marked FAILED then FINISHED again gets the newest end_time. The
    watermark follows the rows: later lifecycles continue, and check says sound."""
    if store == "postgresql":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", request.getfixturevalue("postgres_db"))
    settings = load_settings()
    LocalSource(settings).reset()
    arrive(1)
    run_lifecycle(settings)
    real = time.time
    arrive(1)
    with monkeypatch.context() as behind:
        behind.setattr(time, "time", lambda: real() - 3600)
        assert run_lifecycle(settings).end_row == 2 * ROWS
    runs = _runs_by_first_row(settings)
    assert runs[ROWS].info.end_time < runs[0].info.end_time, "the second run's clock was behind"
    assert get_latest_trained_row() == 2 * ROWS
    arrive(1)
    assert run_lifecycle(settings).end_row == 3 * ROWS
    # The first run marked FAILED (retracted), then FINISHED again: the newest end_time.
    client = open_registry(settings).client
    client.set_terminated(runs[0].info.run_id, "FAILED")
    assert get_latest_trained_row() == 0, "no finished run starts at row 0"
    assert taxifare("check").returncode == 1
    client.set_terminated(runs[0].info.run_id, "FINISHED")
    assert get_latest_trained_row() == 3 * ROWS
    r = taxifare("check", "--repair")
    assert r.returncode == 0, r.stdout
    arrive(1)
    assert run_lifecycle(settings).end_row == 4 * ROWS
    assert_tiles(training_intervals(settings), 4 * ROWS)


def _deleted_run(reg) -> str:
    from mlflow.entities import ViewType

    return reg.client.search_runs([reg.experiment_id], "", run_view_type=ViewType.DELETED_ONLY)[0].info.run_id


@pytest.mark.parametrize(("name", "value", "needle"), [
    ("RIDGE_ALPHA", "inf", "RIDGE_ALPHA='inf' is not a finite number"),
    ("MLFLOW_MODEL_NAME", "fare's model", "MLFLOW_MODEL_NAME=\"fare's model\" contains"),
    ("LOCAL_DATA_PATH", "/proc/taxifare", "LOCAL_DATA_PATH='/proc/taxifare' is under /proc"),
    ("LOCAL_DATA_PATH", "{file}", "is a file, not a folder"),
])
def test_settings_that_would_fail_late_are_refused_up_front(clean_env: Path, name: str, value: str, needle: str) -> None:
    afile = clean_env / "afile"
    afile.write_text("not a folder")
    value = value.format(file=afile)
    for command in ("run_flow", "get_new_month", "run_all_months"):
        r = taxifare(command, env={name: value})
        _one_line_error(r, needle)


def test_an_unwritable_data_path_is_refused(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = clean_env / "locked"
    locked.mkdir(mode=0o500)
    # root writes through permissions, not onto a read-only file system.
    mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(locked)]).returncode == 0
    if os.geteuid() == 0 and not mounted:
        pytest.skip("root cannot be refused a write here: no read-only tmpfs can be mounted")
    try:
        monkeypatch.setenv("LOCAL_DATA_PATH", str(locked / "data"))
        with pytest.raises(SettingsError, match="LOCAL_DATA_PATH=.* is not writable"):
            load_settings()
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(locked)])


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="mounting a small tmpfs needs root")
def test_a_full_disk_creates_no_half_store(small_history: Path, monkeypatch, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("tmpfs cannot be mounted here")
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{disk}/mlflow.db")
        settings = load_settings()
        LocalSource(settings).reset()
        arrive(1)
        r = taxifare("run_flow")
        _one_line_error(r, "no space left", "nothing was created")
        assert list(disk.iterdir()) == [], "nothing half-made is left behind"
        assert taxifare("watermark").stdout.strip() == "0"
        subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
        assert run_lifecycle(load_settings()).end_row == ROWS
    finally:
        subprocess.run(["umount", "-l", str(disk)])


def test_a_half_created_store_is_named_not_trusted(small_history: Path) -> None:
    import sqlite3

    settings = load_settings()
    LocalSource(settings).reset()
    arrive(1)
    settings.mlflow_dir.mkdir(parents=True)
    with sqlite3.connect(settings.mlflow_dir / "mlflow.db") as conn:  # what an old interrupted migration left
        conn.execute("CREATE TABLE spans (id INTEGER)")
    r = taxifare("run_flow")
    _one_line_error(r, "half-created MLflow store", "delete it")


@pytest.mark.slow
def test_two_first_runs_on_a_fresh_folder_train_once(small_history: Path) -> None:
    settings = load_settings()
    LocalSource(settings).reset()
    arrive(2)
    procs = [subprocess.Popen([sys.executable, "-m", "taxifare_flow.cli", "run_flow"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"}) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted("trained rows 0..5,000" in out for out, _ in outs) == [False, True], outs
    assert any("nothing to do" in out for out, _ in outs)
    assert_tiles(training_intervals(settings), 2 * ROWS)
    assert _servers_of(settings.prefect_home) == [], "each run stopped its Prefect server"


@pytest.mark.slow
def test_the_prefect_server_dies_with_its_process_and_its_start_is_bounded(small_history: Path) -> None:
    settings = load_settings()
    LocalSource(settings).reset()
    arrive(1)
    p = subprocess.Popen([sys.executable, "-m", "taxifare_flow.cli", "run_flow"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (servers := _servers_of(settings.prefect_home)) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.1)
    assert servers, "the run started its local Prefect server"
    p.kill()
    p.wait()
    deadline = time.monotonic() + 10
    while _servers_of(settings.prefect_home) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _servers_of(settings.prefect_home) == [], "the server died with the process that started it"
    # A start that cannot make it in time: one line naming the setting, no server left behind.
    r = taxifare("run_flow", env={"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1"})
    _one_line_error(r, "PrefectServerError", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")
    assert _servers_of(settings.prefect_home) == []


@pytest.mark.slow
def test_kill_9_at_random_points_keeps_every_row_trained_once(small_history: Path) -> None:
    seed = int(os.environ.get("TAXIFARE_KILL_SEED", time.time()))
    rng = random.Random(seed)
    print(f"kill points from seed {seed} (TAXIFARE_KILL_SEED={seed} replays them)")
    settings = load_settings()
    LocalSource(settings).reset()
    arrive(1)
    assert taxifare("run_flow").returncode == 0  # a first run: Prefect's database is migrated
    started = time.perf_counter()
    assert taxifare("run_flow").returncode == 0
    typical = max(time.perf_counter() - started, 3.0)
    for _ in range(5):
        if rng.random() < 0.7:
            arrive(1)
        p = subprocess.Popen([sys.executable, "-m", "taxifare_flow.cli", "run_flow"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            p.wait(timeout=rng.uniform(0.5, typical * 1.5))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        w = get_latest_trained_row()
        assert_tiles(training_intervals(settings), w)
        assert w in {ROWS * k for k in range(12)}, "the watermark only ever stops at a month's end"
    r = taxifare("run_flow")
    assert r.returncode == 0, r.stderr
    total = LocalSource(settings).row_count()
    assert get_latest_trained_row() == total
    assert_tiles(training_intervals(settings), total)
    r = taxifare("check", "--deep")
    assert r.returncode == 0, r.stdout
    assert _servers_of(settings.prefect_home) == []
    reg = open_registry(settings)
    for alias in (PRODUCTION, CHALLENGER):
        v = reg.version_by_alias(alias)
        assert v is not None and reg.is_valid(v)


@pytest.mark.slow
@pytest.mark.prefect_server
def test_kill_9_of_a_replay_at_random_points_keeps_every_row_trained_once(small_history: Path) -> None:
    """`run_all_months` killed anywhere (its local API's start, a pass, a month written ahead,
    a model being saved), then run to the end: every month trained once, nothing staged left."""
    seed = int(os.environ.get("TAXIFARE_KILL_SEED", time.time()))
    rng = random.Random(seed)
    print(f"kill points from seed {seed} (TAXIFARE_KILL_SEED={seed} replays them)")
    settings = load_settings()
    LocalSource(settings).reset()
    for _ in range(4):
        p = subprocess.Popen([sys.executable, "-m", "taxifare_flow.cli", "run_all_months"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            p.wait(timeout=rng.uniform(2.0, 10.0))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        w = get_latest_trained_row()
        assert_tiles(training_intervals(settings), w)
        assert w % ROWS == 0, "the watermark only ever stops at a month's end"
    r = taxifare("run_all_months")
    assert r.returncode == 0, r.stderr
    total = LocalSource(settings).row_count()
    assert total == 10 * ROWS and get_latest_trained_row() == total
    assert_tiles(training_intervals(settings), total)
    r = taxifare("check", "--deep")
    assert r.returncode == 0, r.stdout
    assert [p.name for p in settings.source_dir.iterdir() if p.name.startswith(".staged-")] == []
    assert _servers_of(settings.prefect_home) == []


def test_check_names_a_source_behind_the_watermark(small_history: Path) -> None:
    settings = load_settings()
    LocalSource(settings).reset()
    arrive(1)
    run_lifecycle(settings)
    LocalSource(settings).reset()  # the source is reset, MLflow is not
    r = taxifare("check", "--deep")
    assert r.returncode == 1, r.stdout
    assert f"the source holds 0 rows but the model was trained on rows up to {ROWS:,}" in r.stdout
