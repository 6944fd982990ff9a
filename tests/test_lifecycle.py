"""The lifecycle's guarantees: crash then rerun converges, concurrent runs train rows once,
promotion is compare-and-set, notification failures do not fail the lifecycle."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from helpers import arrive as _arrive
from helpers import assert_tiles, fail_after
from helpers import training_intervals as _training_intervals
from taxifare_flow.data.local import LocalSource
from taxifare_flow.errors import SourceBehindError
from taxifare_flow.flow.lifecycle import lifecycle, run_lifecycle
from taxifare_flow.ml_logic import get_latest_trained_row
from taxifare_flow.ml_logic.registry import CHALLENGER, PRODUCTION, Registry, open_registry
from taxifare_flow.settings import load_settings


class Crash(RuntimeError):
    """A fault injected by a test."""


def test_crash_after_training_then_rerun_converges(small_history: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    src = LocalSource(settings)
    src.reset()
    _arrive(2)
    run_lifecycle(settings)
    _arrive(1)

    def crash(*args: object, **kwargs: object) -> None:
        raise Crash("after training, before the model is saved")

    with monkeypatch.context() as m:
        m.setattr(Registry, "log_model_version", crash)
        with pytest.raises(Crash):
            run_lifecycle(settings)
    assert get_latest_trained_row() == 5000, "the crashed run does not move the watermark"
    reg = open_registry(settings)
    failed = reg.client.search_runs([reg.experiment_id], "attributes.status = 'FAILED'")
    assert len(failed) == 1
    with pytest.raises(Crash):  # a version registered, its run not finished
        lifecycle(settings, fail_after("finalise", Crash("before the run finishes")))
    assert get_latest_trained_row() == 5000
    outcome = run_lifecycle(settings)
    assert (outcome.first_row, outcome.end_row) == (5000, 7500)
    assert_tiles(_training_intervals(settings), 7500)
    # The head continued from the finished version, not the orphan of the crashed run.
    head = reg.head_for(7500)
    assert head.tags["parent_version"] == str(reg.head_for(5000).version)
    assert str(reg.version_by_alias(CHALLENGER).version) == str(head.version)
    assert run_lifecycle(settings).status == "nothing to do"


def test_two_concurrent_lifecycles_train_rows_once(small_history: Path) -> None:
    settings = load_settings()
    LocalSource(settings).reset()
    _arrive(2)
    code = "from taxifare_flow.flow.lifecycle import run_lifecycle; from taxifare_flow.settings import load_settings; " \
           "print(run_lifecycle(load_settings()).status)"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    statuses = sorted(p.communicate(timeout=300)[0].strip().splitlines()[-1] for p in procs)
    assert all(p.returncode == 0 for p in procs)
    assert statuses == ["nothing to do", "trained"]
    assert_tiles(_training_intervals(settings), 5000)


def test_promotion_is_compare_and_set(small_history: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # MAE only, no margin: the challenger, which has seen the 2012-09 fare change, beats a
    # production trained on 2012-05 alone on the holdout (the newest rows of 2012-09).
    monkeypatch.setenv("PROMOTION_POLICY", "margin")
    monkeypatch.setenv("PROMOTION_MARGIN", "0")
    settings = load_settings()
    LocalSource(settings).reset()
    _arrive(1)
    first = run_lifecycle(settings)
    assert first.decision == "promote" and first.production_version == first.version
    reg = open_registry(settings)
    # Someone moves production by hand between evaluation and promotion: not overwritten.
    _arrive(4)
    head = reg.head_for(2500)
    reg.client.set_model_version_tag(settings.mlflow_model_name, head.version, "pinned", "by hand")
    reg.set_alias(PRODUCTION, head.version)
    second = run_lifecycle(settings)
    v = reg.head_for(second.end_row)
    assert v.tags["evaluated_production"] == str(head.version)
    assert second.holdout_mae_challenger < second.holdout_mae_production
    assert v.tags["decision"] == second.decision == "promote"
    assert str(reg.version_by_alias(PRODUCTION).version) == str(v.version), "production was the evaluated version: moved"
    reg.set_alias(PRODUCTION, head.version)
    reg.client.set_model_version_tag(settings.mlflow_model_name, v.version, "evaluated_production", "999")
    reg.client.set_model_version_tag(settings.mlflow_model_name, v.version, "decision", "promote")
    reg.reconcile_aliases(second.end_row)
    assert str(reg.version_by_alias(PRODUCTION).version) == str(head.version), "moved since evaluation: kept"


def test_notification_posts_and_failure_is_not_fatal(small_history: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("NOTIFY_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    settings = load_settings()
    LocalSource(settings).reset()
    _arrive(1)
    run_lifecycle(settings)
    server.shutdown()
    assert received and received[0]["decision"] == "promote" and received[0]["end_row"] == 2500
    monkeypatch.setenv("NOTIFY_WEBHOOK_URL", "http://user:pw@127.0.0.1:1/hook")
    _arrive(1)
    outcome = run_lifecycle(load_settings())
    assert outcome.status == "trained" and outcome.notify_error and "pw" not in outcome.notify_error


def test_source_reset_without_mlflow_is_refused(small_history: Path) -> None:
    settings = load_settings()
    LocalSource(settings).reset()
    _arrive(2)
    run_lifecycle(settings)
    LocalSource(settings).reset()
    _arrive(1)
    with pytest.raises(SourceBehindError, match="2500 rows but the model was trained on rows up to 5000"):
        run_lifecycle(settings)


def test_lifecycle_on_a_postgresql_store_with_its_advisory_lock(small_history: Path, postgres_db: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from taxifare_flow.flow.lock import LockTimeout, lifecycle_lock

    monkeypatch.setenv("MLFLOW_TRACKING_URI", postgres_db)
    monkeypatch.setenv("LOCK_TIMEOUT_SECONDS", "0.5")
    settings = load_settings()
    assert settings.mlflow_tracking_db == postgres_db
    LocalSource(settings).reset()
    _arrive(2)
    assert run_lifecycle(settings).status == "trained"
    assert get_latest_trained_row() == 5000
    # While one holder has the advisory lock, a second lifecycle gives up with LockTimeout.
    with lifecycle_lock(settings):
        _arrive(1)
        with pytest.raises(LockTimeout, match="advisory lock"):
            run_lifecycle(settings)
    assert run_lifecycle(settings).end_row == 7500
    assert_tiles(_training_intervals(settings), 7500)


def test_a_lost_advisory_lock_is_noticed_before_finishing(small_history: Path, postgres_db: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    from taxifare_flow.errors import LockLost
    from taxifare_flow.flow.lock import assert_lock_held, lifecycle_lock

    monkeypatch.setenv("MLFLOW_TRACKING_URI", postgres_db)
    settings = load_settings()
    with lifecycle_lock(settings):
        assert_lock_held()
        # The session holding the lock ends (an idle cut, a server restart): the lock is gone.
        with psycopg.connect(postgres_db, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                          "WHERE l.locktype = 'advisory' AND d.datname = current_database() AND l.pid <> pg_backend_pid()")
        with pytest.raises(LockLost, match="was lost"):
            assert_lock_held()
    assert_lock_held()  # released: nothing left to check


def test_one_pass_reads_each_new_row_once_and_logs_in_two_batches(small_history: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lifecycle reads `[w, t)` once (the core's counter), logs its run in two `log_batch`
    calls and no single-value call, and its cleaned-row count is the run's."""
    from mlflow.tracking import MlflowClient

    from taxifare_flow import _core

    settings = load_settings()
    LocalSource(settings).reset()
    _arrive(1)
    run_lifecycle(settings)
    _arrive(2)  # a catch-up over two months: production and the frozen model both exist
    calls: list[str] = []
    for name in ("log_batch", "log_param", "log_metric", "set_tag"):
        original = getattr(MlflowClient, name)

        def spy(self: MlflowClient, *args: object, _name: str = name, _original: object = original, **kwargs: object) -> object:
            calls.append(_name)
            return _original(self, *args, **kwargs)  # type: ignore[operator]

        monkeypatch.setattr(MlflowClient, name, spy)
    before = _core.rows_decoded()
    outcome = run_lifecycle(settings)
    assert (outcome.first_row, outcome.end_row) == (2500, 7500)
    assert _core.rows_decoded() - before == 5000 == outcome.rows_decoded
    assert calls == ["log_batch", "log_batch"]
    run = open_registry(settings).client.get_run(outcome.run_id)
    assert int(run.data.params["cleaned_row_count"]) == outcome.cleaned_rows
    assert 4800 < outcome.cleaned_rows <= 5000
    assert {"prequential_mae", "frozen_mae", "holdout_mae_challenger", "holdout_mae_production"} <= set(run.data.metrics)
    assert run.data.tags["lineage_hash"] == _core.hash_source_rows(settings.source_dir, 2500, 5000)
