"""`taxifare unlearn`, end to end with a real MLflow store: three months trained, the second
unlearnt; the new version predicts as a model of months 1 and 3 (the default version, to 1e-9), the watermark
and the tiling are unchanged, `check` is sound, production moved, a later lifecycle continues
the new head, and what cannot be unlearnt is refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import arrive, assert_tiles, taxifare_in_process, training_intervals
from taxifare_flow import _core
from taxifare_flow.check import check
from taxifare_flow.data.local import LocalSource
from taxifare_flow.errors import UnlearnRefused
from taxifare_flow.flow.backfill import backfill
from taxifare_flow.flow.lifecycle import run_lifecycle
from taxifare_flow.flow.unlearn import kept_segments, parse_rows, pieces, subtract, unlearn, unlearnt_ranges
from taxifare_flow.ml_logic import get_latest_trained_row
from taxifare_flow.ml_logic.registry import CHALLENGER, PRODUCTION, open_registry
from taxifare_flow.model import Model
from taxifare_flow.settings import Settings, load_settings
from taxifare_flow.validation.ledger import recent_months

ROWS = 1000
PROBE = _core.generate_month("2012-09", 800, seed=99).read_all()
#: Rows a month in the window test: enough holdout rows for a window to pass its level.
R = 2500


def _months(monkeypatch: pytest.MonkeyPatch, first: str = "2012-05", last: str = "2012-08", rows: int = ROWS) -> Settings:
    monkeypatch.setenv("HISTORY_ROWS_PER_MONTH", str(rows))
    monkeypatch.setenv("HISTORY_FIRST_MONTH", first)
    monkeypatch.setenv("HISTORY_LAST_MONTH", last)
    settings = load_settings()
    LocalSource(settings).reset()
    return settings


def _oracle(settings: Settings, ranges: list[tuple[int, int]], feature_version: int = _core.DEFAULT_FEATURE_VERSION) -> Model:
    """A model that learnt exactly these row ranges, each in one call (as each run did)."""
    src = LocalSource(settings)
    m = Model(settings.ridge_alpha, settings.half_life_months, feature_version=feature_version)
    for first, end in ranges:
        m.partial_fit(src.read(first, end - first))
    return m


def _gap(a: Model, b: Model) -> float:
    pa, pb = a.predict(PROBE), b.predict(PROBE)
    keep = ~np.isnan(pa)
    assert keep.sum() > 500 and np.array_equal(keep, ~np.isnan(pb))
    return float(np.abs(pa[keep] - pb[keep]).max())


def test_unlearning_a_month_end_to_end(tracking_store: str, small_history: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_store)
    settings = _months(monkeypatch)
    for _ in range(3):
        arrive(1)
        assert run_lifecycle(settings).status == "trained"
    reg = open_registry(settings)
    w = 3 * ROWS
    head = reg.head_for(w)
    # Production is the version of months 1 and 2: it learnt the month to be unlearnt.
    v2 = reg.head_for(2 * ROWS)
    reg.set_alias(PRODUCTION, v2.version)
    oracle = _oracle(settings, [(0, ROWS), (2 * ROWS, 3 * ROWS)])
    assert _gap(reg.load_kernel(head), oracle) > 0.01, "month 2 must change the model for the test to mean anything"

    assert "2012-06" in [m["month"] for m in recent_months(reg)]
    r = taxifare_in_process("unlearn", "--month", "2012-06")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "month 2012-06 (rows 1,000..2,000) unlearnt" in r.stdout, r.stdout
    new = reg.head_for(w)
    assert str(new.version) != str(head.version) and f"version {new.version}" in r.stdout
    assert new.tags["parent_version"] == str(head.version) and new.tags["unlearnt_rows"] == "1000..2000"
    assert new.tags["decision"] == "promote" and "had learnt month 2012-06" in new.tags["decision_reason"]
    kernel = reg.load_kernel(new)
    assert _gap(kernel, oracle) < 1e-9
    # The rows stay consumed: the watermark and the training tiling are the training runs'.
    assert get_latest_trained_row() == w
    assert_tiles(training_intervals(settings), w)
    # The run records what was removed, and from which version.
    run = reg.client.get_run(new.run_id)
    p = run.data.params
    assert (p["context"], p["first_row"], p["row_count"], p["unlearnt_month"]) == ("unlearn", "1000", "1000", "2012-06")
    assert p["parent_version"] == str(head.version) and p["feature_version"] == str(_core.DEFAULT_FEATURE_VERSION)
    assert 0.9 * ROWS < int(p["cleaned_row_count"]) <= ROWS
    assert float(p["model_rows_before"]) - float(p["model_rows_after"]) == pytest.approx(int(p["cleaned_row_count"]))
    assert run.data.tags["lineage_hash"] == LocalSource(settings).content_hash(1000, 1000)
    # Production had learnt the rows: it moved, and says why.
    assert str(reg.version_by_alias(PRODUCTION).version) == str(new.version)
    assert str(reg.version_by_alias(CHALLENGER).version) == str(new.version)
    assert f"production → version {new.version}" in r.stdout
    findings = check(settings, deep=True)
    assert all(f.ok for f in findings), [f for f in findings if not f.ok]
    assert any(f.what.startswith("unlearnt rows were trained") for f in findings)
    # The gate's reference months leave the unlearnt month out.
    assert [m["month"] for m in recent_months(reg)] == ["2012-05", "2012-07"]

    # Refused in one line, exit status 2, nothing changed.
    for args, expected in [
        (("--month", "2012-06"), "rows 1,000..2,000 were already unlearnt (month 2012-06"),
        (("--rows", "1500..2500"), "rows 1,500..2,000 were already unlearnt"),
        (("--month", "2013-05"), "month 2013-05 is not in the data source"),
        (("--rows", "2500..3500"), "rows 3,000..3,500 were never trained (the watermark is 3,000)"),
        (("--rows", "12..7"), "the range is empty"),
    ]:
        r = taxifare_in_process("unlearn", *args)
        assert r.returncode == 2 and expected in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    arrive(1)  # arrived, not trained: still never trained
    r = taxifare_in_process("unlearn", "--month", "2012-08")
    assert r.returncode == 2 and "rows 3,000..4,000 were never trained" in r.stderr, r.stderr
    assert reg.head_for(w).version == new.version and len(unlearnt_ranges(reg)) == 1

    # The next lifecycle continues the new head: months 1, 3 and 4.
    outcome = run_lifecycle(settings)
    assert (outcome.first_row, outcome.end_row) == (w, w + ROWS)
    after = reg.head_for(w + ROWS)
    assert after.tags["parent_version"] == str(new.version)
    assert _gap(reg.load_kernel(after), _oracle(settings, [(0, ROWS), (2 * ROWS, 4 * ROWS)])) < 1e-7
    assert get_latest_trained_row() == w + ROWS
    assert_tiles(training_intervals(settings), w + ROWS)
    assert all(f.ok for f in check(settings))
    # The head descends from the unlearn version: its rows stay unlearnt even if that run is deleted.
    reg.client.delete_run(new.run_id)
    with pytest.raises(UnlearnRefused, match=f"already unlearnt by version {new.version}, an ancestor of the lineage head"):
        unlearn(settings, month="2012-06")
    reg.client.restore_run(new.run_id)


def test_rows_inside_a_run_under_forgetting_then_a_backfill(small_history: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One run learnt two months with one cleaning state; its second month is removed at its
    age (HALF_LIFE_MONTHS=2) as a model that never learnt it; a later backfill leaves the
    unlearnt rows out, and a second unlearning after it is exact too."""
    monkeypatch.setenv("HALF_LIFE_MONTHS", "2")
    settings = _months(monkeypatch)
    arrive(2)
    run_lifecycle(settings)  # rows 0..2000 in one run
    arrive(1)
    run_lifecycle(settings)
    done = unlearn(settings, rows="1,000..2,000")
    assert (done.first_row, done.end_row, done.month) == (1000, 2000, None)
    reg = open_registry(settings)
    assert _gap(reg.load_kernel(reg.head_for(3000)), _oracle(settings, [(0, 1000), (2000, 3000)])) < 1e-9
    assert get_latest_trained_row() == 3000

    # A backfill trains the rows that remain, in version 1, and records the segments.
    b = backfill(settings, 1)
    assert b.status == "backfilled"
    head = reg.head_for(3000)
    assert head.tags["segments"] == "0..1000,2000..3000"
    v1 = _oracle(settings, [(0, 1000), (2000, 3000)], feature_version=1)
    assert _gap(reg.load_kernel(head), v1) < 1e-7
    assert all(f.ok for f in check(settings)), [f for f in check(settings) if not f.ok]
    # Unlearning after the backfill cleans as the backfill did (its segment from row 2000).
    last = unlearn(settings, rows="2500..3000")
    assert _gap(reg.load_kernel(reg.head_for(3000)), _oracle(settings, [(0, 1000), (2000, 2500)], feature_version=1)) < 2e-7
    assert all(f.ok for f in check(settings))
    # Deleting the unlearn run retracts it: the version before is the head again, and check says so.
    reg.client.delete_run(last.run_id)
    [finding] = [f for f in check(settings) if f.what.startswith("unlearnt rows")]
    assert f"unlearn run {last.run_id} (rows 2,500..3,000) is deleted" in finding.problems[0], finding
    reg.client.restore_run(last.run_id)
    assert all(f.ok for f in check(settings, repair_state=True)), [f for f in check(settings) if not f.ok]


def test_the_pieces_and_refusals_without_a_store() -> None:
    assert parse_rows("1,000..2_000") == (1000, 2000)
    with pytest.raises(UnlearnRefused, match="is not FIRST..END"):
        parse_rows("1000-2000")
    assert kept_segments(100, []) == [(0, 100)]
    assert pieces(50, 250, [(0, 100), (100, 300)]) == [(0, 50, 100), (100, 100, 250)]
    with pytest.raises(UnlearnRefused, match="not all in a range the lineage head learnt"):
        pieces(50, 350, [(0, 100), (100, 300)])
    # Statistics of another feature version cannot be subtracted from the head.
    head = Model(feature_version=2)
    head.partial_fit(PROBE)
    v1 = Model(feature_version=1)
    v1.partial_fit(PROBE)
    before = head.to_bytes()
    with pytest.raises(UnlearnRefused, match="feature version 1 but the lineage head is feature version 2"):
        subtract(head, v1.core)
    assert head.to_bytes() == before


def test_unlearning_in_the_warehouse(small_history: Path, bigquery_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """BQ_COMPUTE=warehouse: the month's statistics are computed in BigQuery and subtracted,
    no row read out; the new version predicts as the model of the other months."""
    from taxifare_flow.data.bigquery import BigQuerySource
    from taxifare_flow.data.history import ensure_history

    # Two months (each warehouse lifecycle is seconds of the emulator's fixed cost per query):
    # the second is unlearnt, the first is what the new version knows.
    for k, v in (("HISTORY_ROWS_PER_MONTH", "800"), ("HISTORY_FIRST_MONTH", "2012-05"),
                 ("HISTORY_LAST_MONTH", "2012-06"), ("BQ_COMPUTE", "warehouse")):
        monkeypatch.setenv(k, v)
    settings = load_settings()
    ensure_history(settings)
    src = BigQuerySource(settings)
    src.reset()
    for _ in range(2):
        assert src.bring_next_month() is not None
        assert run_lifecycle(settings).status == "trained"
    reg = open_registry(settings)
    head = reg.head_for(1600)
    reg.set_alias(PRODUCTION, head.version)
    read = _core.rows_decoded()
    done = unlearn(settings, month="2012-06")
    assert _core.rows_decoded() == read, "no row leaves BigQuery"
    assert (done.first_row, done.end_row, done.production_after) == (800, 1600, done.version)
    new = reg.head_for(1600)
    run = reg.client.get_run(new.run_id)
    assert run.data.params["compute"] == "warehouse" and run.data.tags["lineage_hash"].startswith("bq:")
    oracle = Model(settings.ridge_alpha, settings.half_life_months, feature_version=_core.DEFAULT_FEATURE_VERSION)
    oracle.partial_fit(src.read(0, 800))
    assert _gap(reg.load_kernel(head), oracle) > 0.01
    # The warehouse sums in another order than the kernel: statistics agree to 1e-9 relative.
    assert _gap(reg.load_kernel(new), oracle) < 1e-6
    assert get_latest_trained_row() == 1600
    findings = check(settings)
    assert all(f.ok for f in findings), [f for f in findings if not f.ok]


@pytest.mark.slow  # an unlearning killed with SIGKILL, then done again
def test_a_killed_unlearning_is_repaired_and_can_be_done_again(small_history: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`kill -9` while the new version is being saved leaves the unlearn run RUNNING: `check`
    names it, the next unlearning marks it KILLED and does the work; nothing half-done counts."""
    import subprocess
    import sys

    from helpers import child_env

    settings = _months(monkeypatch)
    arrive(2)
    run_lifecycle(settings)
    reg = open_registry(settings)
    head = reg.head_for(2 * ROWS)
    code = ("import os, signal\n"
            "from taxifare_flow.ml_logic.registry import Registry\n"
            "Registry.log_model_version = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
            "from taxifare_flow.flow.unlearn import unlearn\n"
            "from taxifare_flow.settings import load_settings\n"
            "unlearn(load_settings(), month='2012-05')\n")
    child = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=300)
    assert child.returncode == -9, child.stderr
    [running] = reg.running_runs()
    assert running.data.params["context"] == "unlearn"
    assert reg.head_for(2 * ROWS).version == head.version and unlearnt_ranges(reg) == []
    r = taxifare_in_process("check")
    # rich wraps the table to the console's width, which an earlier test of the process may have set.
    assert r.returncode == 1 and f"unlearn run {running.info.run_id} is RUNNING with no lifecycle running" in " ".join(
        r.stdout.split())
    done = unlearn(settings, month="2012-05")
    assert reg.client.get_run(running.info.run_id).info.status == "KILLED"
    assert _gap(reg.load_kernel(reg.head_for(2 * ROWS)), _oracle(settings, [(ROWS, 2 * ROWS)])) < 1e-9
    assert done.production_after == done.version
    assert all(f.ok for f in check(settings))


def _window_oracle(settings: Settings, runs: list[tuple[int, int]], since: str, then: list[tuple[int, int]]) -> Model:
    """The window model of the training runs `runs` (ledger months from `since` on, each run's
    rows cleaned with one state, as learnt), then the rows of `then` learnt in full."""
    ledger = _core.Ledger(settings.feature_version)
    for first, end in runs:
        ledger.merge(_core.Ledger.of_source(settings.source_dir, first, end - first, settings.feature_version))
    m = Model(_core_model=ledger.compose(settings.ridge_alpha, since=since, clock=ledger.last_month))
    for first, end in then:
        m.partial_fit(LocalSource(settings).read(first, end - first))
    return m


def test_unlearning_from_a_window_head(small_history: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fares change unannounced in 2014-01: the 2014-02 lifecycle registers a window model (it
    holds the months from its window's start on, and all of its own run's rows). Unlearning
    2014-01, inside the window, predicts as that window without it (1e-9); unlearning 2013-09,
    before the window, leaves the model as it was; the next lifecycle continues the new head
    alone (an unlearn run keeps no ledger) and keeps the window's tags."""
    from taxifare_flow.ml_logic.horizons import WINDOW_ROW_TAG, WINDOW_SINCE_TAG
    from taxifare_flow.ml_logic.ledger import lineage_ledger
    from taxifare_flow.validation.step import Acceptance, accept_next
    from taxifare_flow.errors import DataValidationError
    from taxifare_flow.flow.lifecycle import Outcome

    monkeypatch.setenv("HISTORY_SCENARIO", "unannounced")
    # Version 2: on these rows v3 recovers from the 2014-01 change more slowly and the whole
    # history ("all") stays the best horizon, so no window head would be registered.
    monkeypatch.setenv("FEATURE_VERSION", "2")
    settings = _months(monkeypatch, "2013-09", "2014-03", rows=R)
    arrive(4)  # 2013-09 … 2013-12, one run
    assert run_lifecycle(settings).status == "trained"
    def lifecycle() -> Outcome:
        arrive(1)
        try:
            return run_lifecycle(settings)
        except DataValidationError:
            accept_next(Acceptance.now())  # the changed fares are accepted, as a data scientist would
            return run_lifecycle(settings)

    lifecycle()  # 2014-01
    out = lifecycle()  # 2014-02
    reg = open_registry(settings)
    w = 6 * R
    head = reg.head_for(w)
    assert head is not None and out.horizon in ("3m", "1m"), out.horizon  # the change makes a window win
    since = head.tags[WINDOW_SINCE_TAG]
    assert since == {"3m": "2013-11", "1m": "2014-01"}[out.horizon] and head.tags[WINDOW_ROW_TAG] == str(5 * R)
    runs = [(0, 4 * R), (4 * R, 5 * R)]
    # The pass sums its rows in another order than the oracle's `partial_fit`: the head is
    # ~5e-10 from its oracle before anything is unlearnt, and removing a month of three
    # amplifies that; the subtraction itself is exact to 1e-9 (the test below).
    assert _gap(reg.load_kernel(head), _window_oracle(settings, runs, since, [(5 * R, w)])) < 1e-8

    # Inside the window: the head without 2014-01.
    done = unlearn(settings, month="2014-01")
    new = reg.head_for(w)
    assert str(new.version) == done.version and new.tags[WINDOW_SINCE_TAG] == since
    assert 0.9 * R < done.removed_rows <= R
    oracle = _window_oracle(settings, runs[:1], since, [(5 * R, w)])
    assert _gap(reg.load_kernel(head), oracle) > 0.01, "2014-01 must change the model for the test to mean anything"
    assert _gap(reg.load_kernel(new), oracle) < 1e-8
    if out.horizon == "1m":  # then it is the model of 2014-02 alone, learnt by rows
        assert _gap(reg.load_kernel(new), _oracle(settings, [(5 * R, w)])) < 1e-8

    # Before the window: nothing the head holds, so the new version is the head's model.
    before = unlearn(settings, month="2013-09")
    same = reg.head_for(w)
    assert str(same.version) == before.version and before.removed_rows == 0
    assert reg.client.get_run(same.run_id).data.params["cleaned_row_count"] == "0"
    assert reg.load_kernel(same).to_bytes() == reg.load_kernel(new).to_bytes()
    assert f"window model of the months from {since} on and held none of them" in same.tags["decision_reason"]

    # The next lifecycle continues the head alone: the unlearn runs kept no ledger, so the
    # removed month cannot come back through it.
    assert lineage_ledger(settings, reg, same) is None
    after = lifecycle()
    assert (after.first_row, after.end_row, after.horizon) == (w, w + R, "all")
    nxt = reg.head_for(w + R)
    assert nxt.tags["parent_version"] == str(same.version)
    assert (nxt.tags[WINDOW_SINCE_TAG], nxt.tags[WINDOW_ROW_TAG]) == (since, str(5 * R))
    assert _gap(reg.load_kernel(nxt), _window_oracle(settings, runs[:1], since, [(5 * R, w), (w, w + R)])) < 1e-7
    # Still window-aware after it: 2013-10 is before the window (unchanged), 2014-02 is held.
    assert unlearn(settings, month="2013-10").removed_rows == 0
    assert 0.9 * R < unlearn(settings, month="2014-02").removed_rows <= R
    last = reg.head_for(w + R)
    assert _gap(reg.load_kernel(last), _window_oracle(settings, runs[:1], since, [(w, w + R)])) < 1e-7
    assert all(f.ok for f in check(settings)), [f for f in check(settings) if not f.ok]
    # A window head registered before the window tags: which rows it holds is unknown, refused.
    for tag in (WINDOW_SINCE_TAG, WINDOW_ROW_TAG):
        reg.client.delete_model_version_tag(last.name, last.version, tag)
    reg.client.set_model_version_tag(last.name, last.version, "horizon", "3m")
    with pytest.raises(UnlearnRefused, match="registered without the `window_since`/`window_row` tags"):
        unlearn(settings, month="2013-11")


def test_a_window_head_loses_exactly_the_rows_it_holds(small_history: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`remove` from a 3m window head of 2014-02 (months 2013-11 on, then its own run's rows),
    without a store: rows inside the window, rows before it, and rows straddling its start
    inside one training run, each against the window model that never learnt them (1e-9)."""
    from taxifare_flow.flow.unlearn import Window, remove

    monkeypatch.setenv("HISTORY_SCENARIO", "unannounced")
    # Version 2: on these rows v3 recovers from the 2014-01 change more slowly and the whole
    # history ("all") stays the best horizon, so no window head would be registered.
    monkeypatch.setenv("FEATURE_VERSION", "2")
    settings = _months(monkeypatch, "2013-09", "2014-02", rows=R)
    arrive(6)
    src = LocalSource(settings)
    runs = [(0, 4 * R), (4 * R, 5 * R), (5 * R, 6 * R)]  # 2013-09 … 12 in one run, then a run a month

    def window(kept: list[tuple[int, int]]) -> Model:
        """The 3m window of the first two runs' rows `kept` (cleaned with their run's state)
        plus the third run's rows."""
        ledger = _core.Ledger(2)
        for first, end in runs[:2]:
            for a, b in kept:
                if first <= a < end:
                    ledger.merge(_core.Ledger.of_rows(src.read(a, b - a), 2))
        m = Model(_core_model=ledger.compose(settings.ridge_alpha, since="2013-11", clock="2014-01"))
        m.partial_fit(src.read(*runs[2][:1], R))
        return m

    head = _window_oracle(settings, runs[:2], "2013-11", [runs[2]])
    assert _gap(head, window([(0, 4 * R), (4 * R, 5 * R)])) < 1e-12
    held = Window("2013-11", 5 * R)
    cases = [
        ((4 * R, 5 * R), [(0, 4 * R)]),  # 2014-01, inside the window
        ((2 * R, 4 * R), [(0, 2 * R), (4 * R, 5 * R)]),  # 2013-11 and 12, the window's months of the first run
    ]
    for (first, end), kept in cases:
        model = head.copy()
        removed = remove(src, settings, model, first, end, runs, held)
        oracle = window(kept)
        assert _gap(head, oracle) > 0.01 and _gap(model, oracle) < 1e-9, (first, end)
        assert removed == pytest.approx(head.n_rows - model.n_rows)
    # Before the window: nothing held, the model unchanged.
    model = head.copy()
    assert remove(src, settings, model, 0, 2 * R, runs, held) == 0
    assert model.to_bytes() == head.to_bytes()
    # Straddling the window's start inside the first run: only 2013-11's part is removed; the
    # rows after it are cleaned as the run cleaned them (one state from row 0).
    model = head.copy()
    removed = remove(src, settings, model, R + R // 2, 2 * R + R // 2, runs, held)
    full = _core.Ledger.of_rows(src.read(0, 2 * R + R // 2), 2)
    upto = _core.Ledger.of_rows(src.read(0, 2 * R), 2)
    expected = dict(full.rows())["2013-11"] - dict(upto.rows()).get("2013-11", 0.0)
    assert removed == round(expected) and 0.4 * R < removed <= R // 2
    assert head.n_rows - model.n_rows == pytest.approx(expected)
    # Independently: the kernel's own removal of the held part alone (rows of 2013-11), with
    # the run's cleaning state from row 0.
    native = head.copy()
    native.unlearn(src.read(0, 2 * R + R // 2), skip=2 * R)
    assert _gap(model, native) < 1e-9
    # The own run's rows are removed whole, whatever their month.
    model = head.copy()
    remove(src, settings, model, 5 * R, 6 * R, runs, held)
    ledger = _core.Ledger.of_source(settings.source_dir, 0, 4 * R, 2)
    ledger.merge(_core.Ledger.of_source(settings.source_dir, 4 * R, R, 2))
    assert _gap(model, Model(_core_model=ledger.compose(settings.ridge_alpha, since="2013-11"))) < 1e-9
