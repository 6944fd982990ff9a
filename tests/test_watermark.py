"""`get_latest_trained_row`: every rule of a counted run, on SQLite and PostgreSQL, with the
real MLflow writing the store."""

from __future__ import annotations

import time
import uuid

import pytest
from mlflow.tracking import MlflowClient

from taxifare_flow import _core


@pytest.fixture
def store(tracking_store: str):
    client = MlflowClient(tracking_store)
    client.search_experiments()
    name = f"wm-{uuid.uuid4().hex[:8]}"
    return tracking_store, client, name, client.create_experiment(name)


def run(client, exp: str, params: dict, end_ms: int, status: str = "FINISHED") -> str:
    r = client.create_run(exp, start_time=end_ms - 1000)
    for k, v in params.items():
        client.log_param(r.info.run_id, k, v)
    if status not in ("RUNNING",):
        client.set_terminated(r.info.run_id, status, end_time=end_ms)
    return r.info.run_id


def train(first: int, count: int) -> dict:
    return {"context": "train", "first_row": first, "row_count": count}


def wm(db: str, name: str) -> int:
    return _core.get_latest_trained_row(db, name)


def test_rules(store) -> None:
    db, client, name, exp = store
    t0 = int(time.time() * 1000) - 100_000
    assert wm(db, name) == 0
    run(client, exp, train(0, 100), t0)
    assert wm(db, name) == 100
    run(client, exp, train(100, 50), t0 + 1000)
    assert wm(db, name) == 150
    # Later runs that must not count.
    for status in ("FAILED", "KILLED", "RUNNING", "SCHEDULED"):
        run(client, exp, train(150, 999), t0 + 2000, status)
    deleted = run(client, exp, train(150, 999), t0 + 3000)
    client.delete_run(deleted)
    run(client, exp, {"context": "evaluate", "first_row": 150, "row_count": 999}, t0 + 4000)
    run(client, exp, {"context": "train", "first_row": 150}, t0 + 5000)
    run(client, exp, {"context": "train", "row_count": 999}, t0 + 5000)
    run(client, exp, {"first_row": 150, "row_count": 999}, t0 + 6000)
    assert wm(db, name) == 150
    # Another experiment with a similar name is another experiment.
    similar = client.create_experiment(name + "_")
    run(client, similar, train(0, 10_000), t0 + 7000)
    assert wm(db, name) == 150
    assert wm(db, name + "%") == 0
    # Two runs claiming rows from the same start (an overlap `check` names): the furthest row
    # a chain from 0 reaches, whatever their times.
    for count, end in ((20, t0 + 7000), (10, t0 + 8000)):
        run(client, exp, train(150, count), end)
    assert wm(db, name) == 170


def test_clocks_do_not_move_the_watermark(store) -> None:
    """A client whose clock is behind logs the latest run with an end_time before the previous
    run's; an old run marked FAILED then FINISHED again gets the newest end_time. The rows
    decide, not the clocks."""
    db, client, name, exp = store
    t0 = int(time.time() * 1000)
    first = run(client, exp, train(0, 4000), t0)
    run(client, exp, train(4000, 4000), t0 - 3_600_000)  # an hour behind
    assert wm(db, name) == 8000
    run(client, exp, train(8000, 1000), t0 - 30_000)
    assert wm(db, name) == 9000
    client.set_terminated(first, "FAILED", end_time=t0 + 1000)
    assert wm(db, name) == 0, "no finished run starts at row 0: nothing counts as trained"
    client.set_terminated(first, "FINISHED", end_time=t0 + 2000)
    assert wm(db, name) == 9000
    # A gap (a middle run deleted): the chain stops before it.
    middle = client.search_runs([exp], "params.first_row = '4000'")[0].info.run_id
    client.delete_run(middle)
    assert wm(db, name) == 4000
    client.restore_run(middle)
    assert wm(db, name) == 9000


def test_deleted_experiment_counts_nothing(store) -> None:
    db, client, name, exp = store
    run(client, exp, train(0, 100), int(time.time() * 1000))
    client.delete_experiment(exp)
    assert wm(db, name) == 0


def test_injection_like_name_finds_nothing(store) -> None:
    db, client, name, exp = store
    run(client, exp, train(0, 100), int(time.time() * 1000))
    evil = "x'; DROP TABLE runs;--"
    assert wm(db, evil) == 0
    assert wm(db, "' OR '1'='1") == 0
    assert wm(db, name) == 100, "the runs table is still there"


def test_non_integer_param_names_the_run(store) -> None:
    db, client, name, exp = store
    run_id = run(client, exp, {"context": "train", "first_row": "ten", "row_count": 5}, int(time.time() * 1000))
    with pytest.raises(_core.InvalidRunParamError, match=run_id) as e:
        wm(db, name)
    assert "first_row" in str(e.value)
    client.delete_run(run_id)
    run(client, exp, {"context": "train", "first_row": 0, "row_count": -5}, int(time.time() * 1000) + 10)
    with pytest.raises(_core.InvalidRunParamError, match="row_count"):
        wm(db, name)


def test_unreachable_server_fails_fast_with_password_masked() -> None:
    started = time.perf_counter()
    with pytest.raises(_core.TrackingDbUnreachableError) as e:
        wm("postgresql://user:hunter2@127.0.0.1:1/mlflow", "x")
    assert time.perf_counter() - started < 5
    assert "hunter2" not in str(e.value) and "***" in str(e.value)
    # A black-holed address: the connect timeout bounds the wait.
    started = time.perf_counter()
    with pytest.raises(_core.TrackingDbUnreachableError):
        wm("postgresql://user:hunter2@192.0.2.1:5432/mlflow?connect_timeout=1", "x")
    assert time.perf_counter() - started < 5


def test_not_an_mlflow_store(tmp_path, postgres_server: str) -> None:
    import sqlite3

    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(_core.NotAnMlflowStoreError):
        wm(f"sqlite:///{path}", "x")
    with pytest.raises(_core.NotAnMlflowStoreError):
        wm(f"{postgres_server}/postgres", "x")
    with pytest.raises(_core.TrackingStoreNotFoundError):
        wm(f"sqlite:///{tmp_path / 'missing.db'}", "x")
    with pytest.raises(_core.TrackingDbError, match="unsupported"):
        wm("mysql://u:pw@h/db", "x")


def test_sqlite_store_is_opened_read_only(sqlite_store: str) -> None:
    from pathlib import Path

    db, name = sqlite_store, "read-only"
    client = MlflowClient(db)
    run(client, client.create_experiment(name), train(0, 7), int(time.time() * 1000))
    path = Path(db.removeprefix("sqlite:///"))
    before = path.stat().st_mtime_ns
    for _ in range(3):
        wm(db, name)
    assert path.stat().st_mtime_ns == before


def test_authentication_failure_is_typed_and_masked(postgres_password_server: tuple[str, str]) -> None:
    dsn, password = postgres_password_server
    wrong = dsn.replace("postgres@", "postgres:not-the-password@")
    with pytest.raises(_core.TrackingDbAuthError) as e:
        wm(wrong, "x")
    assert "not-the-password" not in str(e.value) and "***" in str(e.value)
    # The right password reaches the server, which holds no MLflow tables.
    right = dsn.replace("postgres@", f"postgres:{password}@")
    with pytest.raises(_core.NotAnMlflowStoreError) as e:
        wm(right, "x")
    assert password not in str(e.value)
