"""The data-validation gate (docs/validation.md): broken months are refused with one line and
nothing moves; the generated history (2012-09 fare change included), real imported rides
(~60 a month) and a first month with no reference go through; `run_flow --accept` trains a
refused month. Small histories: three trained months, then the month under test."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from helpers import arrive, assert_tiles, taxifare, training_intervals
from taxifare_flow import _core
from taxifare_flow.data.local import LocalSource
from taxifare_flow.errors import DataValidationError
from taxifare_flow.flow.lifecycle import run_lifecycle
from taxifare_flow.ml_logic import get_latest_trained_row
from taxifare_flow.ml_logic.registry import PRODUCTION, open_registry
from taxifare_flow.settings import load_settings
from taxifare_flow.validation.gate import REFERENCE_MONTHS, judge
from taxifare_flow.validation.ledger import NOTE, PROFILE_ARTIFACT
from taxifare_flow.validation.step import Acceptance, accept_next
from taxifare_flow.validation.stats import Stats, ks_distance

SAMPLE = Path(__file__).resolve().parent.parent / "benches" / "data" / "kaggle_sample_5k.csv"
COORDS = ("pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude")


@pytest.fixture
def four_months(small_history: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """2012-05 … 2012-08, 1,000 rows a month: three to train, the fourth under test."""
    monkeypatch.setenv("HISTORY_ROWS_PER_MONTH", "1000")
    monkeypatch.setenv("HISTORY_FIRST_MONTH", "2012-05")
    monkeypatch.setenv("HISTORY_LAST_MONTH", "2012-08")
    return small_history


def _replace(t: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    i = t.schema.get_field_index(name)
    return t.set_column(i, t.schema.field(i), values.cast(t.schema.field(i).type))


def cents(t: pa.Table) -> pa.Table:
    return _replace(t, "fare_amount", pc.multiply(t["fare_amount"], 100))


def swapped(t: pa.Table) -> pa.Table:
    out = t
    for lat, lon in (("pickup_latitude", "pickup_longitude"), ("dropoff_latitude", "dropoff_longitude")):
        out = _replace(_replace(out, lat, t[lon]), lon, t[lat])
    return out


def zero_coordinates(t: pa.Table) -> pa.Table:
    for c in COORDS:
        t = _replace(t, c, pa.array(np.zeros(t.num_rows)))
    return t


def duplicates(t: pa.Table) -> pa.Table:
    """One ride, repeated (key included) for the whole month."""
    return t.take(pa.array(np.zeros(t.num_rows, dtype=np.int64)))


def zero_passengers(t: pa.Table) -> pa.Table:
    return _replace(t, "passenger_count", pa.array(np.zeros(t.num_rows, dtype=np.int64)))


def another_month(t: pa.Table) -> pa.Table:
    """The month file holds the rides of the same month a year earlier."""
    col = t["pickup_datetime"]
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return _replace(t, "pickup_datetime", pc.replace_substring_regex(col, r"^2012-", "2011-"))
    return _replace(t, "pickup_datetime", pc.subtract(col, pa.scalar(366 * 86_400_000_000, pa.duration("us"))))


def half_dirty(t: pa.Table) -> pa.Table:
    """Every other row has all-zero coordinates."""
    even = pa.array(np.arange(t.num_rows) % 2 == 0)
    for c in COORDS:
        t = _replace(t, c, pc.if_else(even, pa.scalar(0.0), t[c]))
    return t


def break_pending(data: Path, month: str, how: Callable[[pa.Table], pa.Table]) -> None:
    """Rewrites a pending month file as `how` breaks it, keeping its recorded month."""
    path = data / "pending" / f"{month}.parquet"
    t = pq.read_table(path)
    recorded = pq.read_metadata(path).metadata[b"taxifare.month"]
    broken = how(t).replace_schema_metadata({**(t.schema.metadata or {}), b"taxifare.month": recorded})
    pq.write_table(broken, path)
    assert pq.read_metadata(path).metadata[b"taxifare.month"] == month.encode()


def _validation_runs() -> list:
    reg = open_registry(load_settings())
    return reg.client.search_runs([reg.experiment_id], "params.context = 'validation'")


def _train_three(data: Path) -> None:
    settings = load_settings()
    LocalSource(settings).reset()
    arrive(3)
    outcome = run_lifecycle(settings)  # one lifecycle: a first month range with no reference
    assert outcome.status == "trained"


@pytest.mark.parametrize("how, reason", [
    (cents, "fare_amount median"),
    (swapped, "outside_nyc"),
    (zero_coordinates, "zero_coordinates"),
    (duplicates, "duplicate_key"),
    (zero_passengers, "passenger_count"),
    (another_month, "outside 2012-08"),
    (half_dirty, "zero_coordinates"),
])
def test_a_broken_month_is_refused_and_nothing_moves(four_months: Path, how: Callable[[pa.Table], pa.Table], reason: str) -> None:
    _train_three(four_months)
    settings = load_settings()
    reg = open_registry(settings)
    production = reg.version_by_alias(PRODUCTION)
    break_pending(four_months, "2012-08", how)
    arrive(1)
    with pytest.raises(DataValidationError) as e:
        run_lifecycle(settings)
    line = str(e.value)
    assert line.startswith("month 2012-08 (rows 3000..4000) refused: "), line
    assert reason in line and "\n" not in line, line
    assert get_latest_trained_row() == 3000
    after = reg.version_by_alias(PRODUCTION)
    assert (after.version if after else None) == (production.version if production else None)
    assert_tiles(training_intervals(settings), 3000)
    [refusal] = _validation_runs()
    assert refusal.info.status == "FINISHED" and refusal.data.tags["validation"] == "refused"
    assert (refusal.data.params["first_row"], refusal.data.params["row_count"]) == ("3000", "1000")
    assert refusal.data.tags[NOTE] == line
    # Nothing registered for the refused range.
    assert len(reg.versions()) == 1
    if how is not cents:
        return
    # `validate` says the same without training (the CLI, once: a child process costs seconds).
    r = taxifare("validate")
    assert r.returncode == 1 and "refused" in r.stdout and reason in r.stdout, r.stdout + r.stderr
    # `check` shows the refusal while it stays unresolved.
    r = taxifare("check")
    assert "unresolved" in r.stdout and "2012-08" in r.stdout, r.stdout + r.stderr


def test_accept_trains_a_refused_month_and_says_who(four_months: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
    _train_three(four_months)
    monkeypatch.setenv("NOTIFY_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    settings = load_settings()
    break_pending(four_months, "2012-08", cents)
    arrive(1)
    with pytest.raises(DataValidationError) as e:
        run_lifecycle(settings)
    # The webhook hears of the refusal (the lifecycle's own notification never came).
    assert [r["event"] for r in received] == ["refused"] and received[0]["line"] == str(e.value)
    accept_next(Acceptance("tester@host", "2026-01-01T00:00:00Z"))
    outcome = run_lifecycle(settings)
    server.shutdown()
    events = [r.get("event", "lifecycle") for r in received]
    assert events == ["refused", "accepted anomaly", "lifecycle"], events
    assert received[1]["accepted_by"] == "tester@host"
    assert outcome.status == "trained" and (outcome.first_row, outcome.end_row) == (3000, 4000)
    run = open_registry(settings).client.get_run(outcome.run_id)
    assert run.data.tags["validation"] == "accepted"
    assert "tester@host accepted it at 2026-01-01T00:00:00Z" in run.data.tags[NOTE]
    assert "fare_amount median" in run.data.tags[NOTE]
    assert get_latest_trained_row() == 4000
    # Resolved: check no longer shows it.
    r = taxifare("check")
    assert "unresolved" not in r.stdout, r.stdout


@pytest.mark.prefect_server  # `taxifare run_flow` in a child starts the local Prefect API
def test_run_flow_refuses_with_one_line_then_accept_trains(four_months: Path) -> None:
    _train_three(four_months)
    break_pending(four_months, "2012-08", zero_passengers)
    arrive(1)
    r = taxifare("run_flow")
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("DataValidationError: month 2012-08 (rows 3000..4000) refused: "), r.stderr
    assert get_latest_trained_row() == 3000
    r = taxifare("run_flow", "--accept")
    assert r.returncode == 0, r.stdout + r.stderr
    assert get_latest_trained_row() == 4000


def test_good_months_pass_and_keep_their_statistics(small_history: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The generated history across the 2012-09 fare change, month by month, the first with
    no reference; each run keeps its months' statistics (kilobytes)."""
    monkeypatch.setenv("HISTORY_ROWS_PER_MONTH", "1500")
    monkeypatch.setenv("HISTORY_FIRST_MONTH", "2012-07")
    monkeypatch.setenv("HISTORY_LAST_MONTH", "2012-11")
    settings = load_settings()
    LocalSource(settings).reset()
    reg = open_registry(settings)
    for _ in range(5):
        arrive(1)
        outcome = run_lifecycle(settings)
        assert outcome.status == "trained"
        run = reg.client.get_run(outcome.run_id)
        assert run.data.tags["validation"] == "passed"
        assert run.data.metrics["validation_max_ks"] < 0.2
    assert not _validation_runs()
    path = Path(reg.client.download_artifacts(outcome.run_id, PROFILE_ARTIFACT, str(small_history)))
    assert path.stat().st_size < 64_000
    assert [p["month"] for p in json.loads(path.read_text())] == ["2012-11"]


def _replay(profiles: list[list[dict]], months: list[str]) -> list[tuple[str, bool, float]]:
    """The gate on each month against the months before it (at most REFERENCE_MONTHS), without
    training: (month, refused, largest KS)."""
    out = []
    for i, month in enumerate(months):
        ref = [p for ps in profiles[max(0, i - REFERENCE_MONTHS):i] for p in ps]
        v = judge(profiles[i], ref, [month], 0, 1)
        out.append((month, v.refused, v.max_ks))
    return out


def test_real_rides_of_about_sixty_a_month_pass(three_months: Path) -> None:
    """The 5,000 real rides of the Kaggle sample, imported (78 months of ~60 rides)."""
    r = taxifare("import_csv", str(SAMPLE))
    assert r.returncode == 0, r.stderr
    settings = load_settings()
    src = LocalSource(settings)
    src.reset()
    while src.bring_next_month() is not None:
        pass
    months = src.months()
    assert len(months) == 78
    profiles = [_core.profile_source_rows(src.dir, m.first_row, m.rows)["profile"] for m in months]
    replay = _replay(profiles, [m.month for m in months])
    refused = [(m, ks) for m, bad, ks in replay if bad]
    assert not refused, refused
    # And the lifecycle itself on the first imported months: trained, passed.
    outcome = run_lifecycle(settings)
    assert outcome.status == "trained"


def test_statistics_are_mergeable_and_read_the_histograms() -> None:
    """Python's merge of the Rust profiles: quantiles and KS from the histograms."""
    month = _core.generate_month("2012-08", 4000, seed=3).read_all()
    halves = [month.slice(0, 2000), month.slice(2000)]
    whole = Stats.of(_core.profile_rows(month)["profile"])
    parts = Stats.of([p for h in halves for p in _core.profile_rows(h)["profile"]])
    assert whole.raw == parts.raw == 4000
    for name, f in whole.fields.items():
        assert (f.hist == parts.fields[name].hist).all() and f.count == parts.fields[name].count, name
    fare = whole.fields["fare_amount"]
    values = np.asarray(month.column("fare_amount").to_numpy(zero_copy_only=False), dtype=float)
    assert abs(fare.quantile(0.5) - float(np.median(values))) < 0.5
    assert ks_distance(fare, parts.fields["fare_amount"]) == 0.0
    in_cents = Stats.of(_core.profile_rows(cents(month))["profile"]).fields["fare_amount"]
    assert abs(in_cents.quantile(0.5) / fare.quantile(0.5) - 100) < 2
    assert ks_distance(fare, in_cents) > 0.9
