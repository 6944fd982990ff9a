"""Training inside BigQuery (`BQ_COMPUTE=warehouse`) against the emulator: the SQL the core
generates from the feature spec gives the kernel's features, cleaning, statistics, scores and
decision, while no ride leaves the warehouse."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from taxifare_flow import _core
from taxifare_flow.core_types import MonthProfile
from taxifare_flow.data.bigquery import BigQuerySource
from taxifare_flow.flow.lifecycle import holdout_paired
from taxifare_flow.ml_logic.promotion import decide_paired
from taxifare_flow.settings import load_settings

SCHEMA = _core.source_schema()
TIMES_SQ, JFK, LGA, EWR = (40.758, -73.9855), (40.6413, -73.7781), (40.7769, -73.8740), (40.6895, -74.1745)


@pytest.fixture
def source(small_history, bigquery_env) -> BigQuerySource:
    src = BigQuerySource(load_settings())
    src.reset()
    return src


def load(src: BigQuerySource, rides: pa.Table) -> pa.Table:
    """Loads ride columns as the source's rows 0..n (one Parquet load job)."""
    from google.cloud import bigquery

    from taxifare_flow.data.bigquery import _schema

    table = rides.add_column(0, SCHEMA.field("row_id"), pa.array(np.arange(rides.num_rows), pa.int64()))
    table = table.select(SCHEMA.names).cast(SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    buf.seek(0)
    config = bigquery.LoadJobConfig(schema=_schema(), source_format=bigquery.SourceFormat.PARQUET)
    src.client.load_table_from_file(buf, src.table_id, job_config=config).result()
    return table


def edge_rides() -> pa.Table:
    """Rides at the edges of every rule the features and cleaning state: bad values, the NYC
    box ±1 ulp, geohash cell bounds ±1 ulp, airports, the 2 km radius, every timestamp
    spelling, every DST change 2009–2015 and the fare-rule dates, duplicates."""
    up, down = np.nextafter, lambda v: np.nextafter(v, -np.inf)
    rows: list[tuple[str | None, float | None, str | None, float | None, float | None, float | None, float | None, int | None]] = []

    def ride(when: str | None, p: tuple[float, float] = TIMES_SQ, d: tuple[float, float] = JFK, fare: float | None = 12.5,
             n: int | None = 2, key: str | None = None) -> None:
        rows.append((key if key is not None else f"k{len(rows)}", fare, when, p[1], p[0], d[1], d[0], n))

    base = "2013-06-03 14:20:00 UTC"
    for fare in (math.nan, math.inf, -math.inf, -0.0, 0.0, 399.99, 400.0, None, 1e-300):
        ride(base, fare=fare)
    for n in (0, 1, 7, 8, None, -1):
        ride(base, n=n)
    for bad in (math.nan, math.inf, -math.inf, None):
        ride(base, p=(TIMES_SQ[0], bad))  # type: ignore[arg-type]
        ride(base, d=(bad, JFK[1]))  # type: ignore[arg-type]
    ride(base, p=(0.0, -0.0), d=(-0.0, 0.0))
    for lat in (40.5, 40.9):
        for v in (lat, up(lat, np.inf), down(lat)):
            ride(base, p=(float(v), -74.0))
    for lon in (-74.3, -73.7):
        for v in (lon, up(lon, np.inf), down(lon)):
            ride(base, d=(40.7, float(v)))
    # Geohash cell bounds around Times Square (45/1024° cells) and the airports' radius.
    for k in range(-2, 3):
        lat_b = (math.floor(TIMES_SQ[0] * 1024 / 45) + k) * 45 / 1024
        lon_b = (math.floor(TIMES_SQ[1] * 1024 / 45) + k) * 45 / 1024
        for lat in (lat_b, up(lat_b, np.inf), down(lat_b)):
            for lon in (lon_b, up(lon_b, np.inf), down(lon_b)):
                ride(base, p=(float(lat), float(lon)), d=(float(lon_b and TIMES_SQ[0]), float(lon)))
    for a in (JFK, LGA, EWR):
        for dlat in (0.0, 0.0179, 0.01797, 0.018, 0.02, up(0.02, np.inf), 0.025):
            ride(base, p=(a[0] + dlat, a[1]), d=TIMES_SQ)
            ride(base, p=TIMES_SQ, d=(a[0], a[1] - dlat * 1.3))
    # Timestamp spellings, good and bad.
    for when in ("2013-06-03 14:20:00", "2013-06-03T14:20:00", "2013-06-03 14:20:00Z", "2013-06-03 14:20:00+00:00",
                 "2012-12-31 23:59:60 UTC", "2012-06-30 23:59:60", "2013-02-29 10:00:00 UTC", "2012-02-29 10:00:00 UTC",
                 "2013-06-03 24:00:00 UTC", "2013-06-03 14:60:00 UTC", "2013-06-03 14:20:61 UTC", "2013-13-03 14:20:00 UTC",
                 "2013-06-00 14:20:00 UTC", "2013-06-03 14:20:00 CET", "2013-06-03 14:20", "13-06-03 14:20:00 UTC",
                 "2013-06-03  14:20:00", "2013/06/03 14:20:00 UTC", " 2013-06-03 14:20:00 UTC", "2013-06-03 14:20:00 utc",
                 "2013-06-03 14:2a:00 UTC", "", None, "2009-01-01 00:00:00 UTC", "2015-12-31 23:59:59 UTC",
                 "2012-09-04 03:59:59 UTC", "2012-09-04 04:00:00 UTC", "2009-11-01 03:59:59 UTC", "2009-11-01 04:00:00 UTC",
                 "2010-12-30 04:59:59 UTC", "2010-12-30 05:00:00 UTC", "2015-03-22 04:00:00 UTC", "2012-10-04 04:00:00 UTC"):
        ride(when)
    # Years outside the data's: the kernel's DST rules apply to them in both back ends, and
    # the parser's year range is BigQuery's with room for the offset and a leap second.
    for when in ("1980-04-15 16:30:00 UTC", "1850-07-01 12:00:00 UTC", "1986-04-27 06:59:59 UTC",
                 "1986-04-27 07:00:00 UTC", "2006-10-29 05:59:59 UTC", "2006-10-29 06:00:00 UTC",
                 "2007-03-11 07:00:00 UTC", "0001-01-01 00:00:00 UTC", "0002-01-01 00:00:00 UTC",
                 "9998-12-31 23:59:60 UTC", "9999-12-31 23:59:60 UTC", "0000-06-01 10:00:00 UTC"):
        ride(when)
    # Every DST change: the hours around it, UTC.
    for year in range(2009, 2016):
        for month in (3, 11):
            first = __import__("datetime").date(year, month, 1)
            sunday = 1 + (6 - first.weekday()) % 7 + (7 if month == 3 else 0)
            for hour in range(4, 9):
                for minute in ("00:00", "59:59"):
                    ride(f"{year}-{month:02d}-{sunday:02d} {hour:02d}:{minute} UTC", p=TIMES_SQ, d=LGA)
    # Duplicates: a key seen twice, the first copy dirty (so the second is kept), and nulls.
    ride(base, key="dup")
    ride(base, key="dup")
    ride(base, key="dirty-first", fare=-1.0)
    ride(base, key="dirty-first")
    for _ in range(2):
        rows.append((None, 9.0, base, TIMES_SQ[1], TIMES_SQ[0], LGA[1], LGA[0], 1))
    names = ["key", "fare_amount", "pickup_datetime", "pickup_longitude", "pickup_latitude", "dropoff_longitude",
             "dropoff_latitude", "passenger_count"]
    return pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)}, schema=_core.ride_schema())


@pytest.mark.parametrize("feature_version", _core.FEATURE_VERSIONS)
def test_the_warehouse_computes_the_kernels_features(source: BigQuerySource, feature_version: int) -> None:
    """The SQL's feature rows for an edge-case table, value for value against the kernel's."""
    generated = _core.generate_month("2012-09", 1500, seed=11).read_all().select(_core.ride_schema().names)
    rides = pa.concat_tables([edge_rides(), generated.cast(_core.ride_schema())])
    table = load(source, rides)
    x, _, counts = _core.compute_features(table, feature_version)
    sql = _core._testing.warehouse_features_query(source.table_id, 0, table.num_rows, feature_version)
    got = source._query(sql).to_pydict()
    ids = sorted(set(got["row_id"]))
    assert len(ids) == counts["kept"] == x.shape[0]
    assert all(counts[r] > 0 for r in ("missing", "zero_coordinates", "fare_out_of_range", "passenger_count",
                                       "outside_nyc", "duplicate_key")), counts
    dense = np.zeros_like(x)
    position = {r: k for k, r in enumerate(ids)}
    for r, i, v in zip(got["row_id"], got["i"], got["v"], strict=True):
        dense[position[r], i] = v
    # Same rows kept, in the same order: the kernel's k-th clean row is the k-th row_id.
    np.testing.assert_array_equal(dense != 0, x != 0)
    # Value for value: the same operations in the same order give the same bits (DuckDB and
    # the kernel share the C library's sin, cos, asin; BigQuery's may differ in the last bit).
    names = _core.Model.feature_names(feature_version)
    differ = sorted({names[j] for j in np.nonzero(dense != x)[1]})
    assert not differ, f"columns whose values differ: {differ}"


def relative(a: np.ndarray | float, b: np.ndarray | float) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def load_two_months(src: BigQuerySource) -> pa.Table:
    """2012-08 (1,800 rides) and 2012-09 (2,400) loaded as the source's rows."""
    months = [_core.generate_month(m, n, seed=s).read_all() for m, n, s in (("2012-08", 1800, 21), ("2012-09", 2400, 22))]
    return load(src, pa.concat_tables([m.select(_core.ride_schema().names).cast(_core.ride_schema()) for m in months]))


def test_a_lifecycle_in_the_warehouse_equals_the_local_one(source: BigQuerySource, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two months with a v2 challenger continuing a forgetting lineage, v1 production and
    frozen models: the same cleaning, statistics to 1e-9, scores and decision, no row read."""
    table = load_two_months(source)
    production = _core.Model(feature_version=1)
    production.partial_fit(_core.generate_month("2012-07", 3000, seed=1))
    frozen = _core.Model(feature_version=1)
    frozen.partial_fit(_core.generate_month("2012-05", 3000, seed=2))
    head = _core.Model(half_life_months=6.0, feature_version=2)
    head.partial_fit(_core.generate_month("2012-07", 3000, seed=3))
    w, t = 0, table.num_rows
    h = t - 900
    results = {}
    for compute in ("local", "warehouse"):
        monkeypatch.setenv("BQ_COMPUTE", compute)
        challenger = head.copy()
        before = _core.rows_decoded()
        result = BigQuerySource(load_settings()).learn(w, t - w, h, challenger, production, frozen)
        results[compute] = (result, challenger, _core.rows_decoded() - before)
    (loc, loc_model, loc_read), (wh, wh_model, wh_read) = results["local"], results["warehouse"]
    assert (loc_read, wh_read) == (t, 0), "the warehouse pass reads no row out"
    assert wh["rows"] == 0 and 0 < wh["warehouse_result_rows"] < 30_000
    assert wh["cleaning"] == loc["cleaning"]
    assert (wh["train_kept"], wh["holdout_kept"]) == (loc["train_kept"], loc["holdout_kept"])
    for k in ("production", "frozen"):
        for m in ("mae", "rmse", "r2"):
            assert relative(wh[k][m], loc[k][m]) < 1e-9, (k, m)
    for a, b in zip(wh_model.statistics(), loc_model.statistics(), strict=True):
        assert relative(a, b) < 1e-9
    assert wh_model.last_month == loc_model.last_month == "2012-09"
    assert relative(wh_model.coefficients()[1], loc_model.coefficients()[1]) < 1e-6
    assert re.fullmatch(rf"bq:[0-9a-f]{{32}}-{t}", wh["lineage_hash"]), wh["lineage_hash"]
    paired_wh, paired_loc = holdout_paired(wh), holdout_paired(loc)
    assert paired_wh is not None and paired_loc is not None and paired_wh.n == paired_loc.n > 0
    for field in ("challenger_sum", "production_sum", "diff_sum", "diff_sq_sum"):
        assert relative(getattr(paired_wh, field), getattr(paired_loc, field)) < 1e-9, field
    for policy in ("paired", "margin"):
        a, b = decide_paired(paired_wh, policy, 0.01, 200), decide_paired(paired_loc, policy, 0.01, 200)
        assert (a.promote, a.pairs) == (b.promote, b.pairs)
        assert relative(a.z or 0.0, b.z or 0.0) < 1e-6
    # The same rows, hashed again by the source for `taxifare check --deep`.
    assert source.content_hash(w, t - w, like=wh["lineage_hash"]) == wh["lineage_hash"]
    assert source.content_hash(w, t - w) == loc["lineage_hash"]


def test_a_v3_lifecycle_in_the_warehouse_equals_the_local_one(source: BigQuerySource, monkeypatch: pytest.MonkeyPatch) -> None:
    """Feature version 3: query 1 also returns the median correction's sums and fare
    histograms per cell (`cx`, `cb`), and a v3 model is scored with its cell's shift: the same
    challenger (predictions to 1e-9 $), scores and holdout sums as the local pass."""
    table = load_two_months(source)
    production = _core.Model(feature_version=3)
    production.partial_fit(_core.generate_month("2012-07", 3000, seed=1))
    frozen = _core.Model(feature_version=2)
    frozen.partial_fit(_core.generate_month("2012-05", 3000, seed=2))
    head = _core.Model(feature_version=3)
    head.partial_fit(_core.generate_month("2012-07", 3000, seed=3))
    t = table.num_rows
    results = {}
    for compute in ("local", "warehouse"):
        monkeypatch.setenv("BQ_COMPUTE", compute)
        challenger = head.copy()
        results[compute] = (BigQuerySource(load_settings()).learn(0, t, t - 900, challenger, production, frozen), challenger)
    (loc, loc_model), (wh, wh_model) = results["local"], results["warehouse"]
    assert wh["cleaning"] == loc["cleaning"]
    assert (wh["train_kept"], wh["holdout_kept"]) == (loc["train_kept"], loc["holdout_kept"])
    for k in ("production", "frozen"):
        for m in ("mae", "rmse"):
            assert relative(wh[k][m], loc[k][m]) < 1e-9, (k, m)
    for a, b in zip(wh_model.statistics(), loc_model.statistics(), strict=True):
        assert relative(a, b) < 1e-9
    probe = _core.generate_month("2012-10", 600, seed=4).read_all()
    got, want = wh_model.predict(probe), loc_model.predict(probe)
    assert np.nanmax(np.abs(got - want)) < 1e-9
    paired_wh, paired_loc = holdout_paired(wh), holdout_paired(loc)
    assert paired_wh is not None and paired_loc is not None and paired_wh.n == paired_loc.n > 0
    for field in ("challenger_sum", "production_sum", "diff_sum", "diff_sq_sum"):
        assert relative(getattr(paired_wh, field), getattr(paired_loc, field)) < 1e-9, field


def assert_same_profile(got: list[MonthProfile], want: list[MonthProfile]) -> None:
    """Counts exactly, sums to 1e-9 relative (the warehouse adds in another order)."""
    assert [m["month"] for m in got] == [m["month"] for m in want]
    for g, w in zip(got, want, strict=True):
        assert (g["raw"], g["kept"], g["drops"]) == (w["raw"], w["kept"], w["drops"]), g["month"]
        assert g["fields"].keys() == w["fields"].keys()
        for name, gf in g["fields"].items():
            wf = w["fields"][name]
            where = (g["month"], name)
            assert (gf["count"], gf["nan"], gf["zeros"]) == (wf["count"], wf["nan"], wf["zeros"]), where
            assert [tuple(b) for b in gf["hist"]] == [tuple(b) for b in wf["hist"]], where
            assert abs(gf["sum"] - wf["sum"]) <= 1e-9 * max(abs(wf["sum"]), 1.0), where


def test_the_warehouse_computes_the_local_statistics(source: BigQuerySource, monkeypatch: pytest.MonkeyPatch) -> None:
    """The data-validation statistics of query 1 equal the local pass's, month by month, on
    the edge-case rows (every cleaning reason, bad values, timestamps of other years and none,
    DST changes) and two generated months."""
    generated = [_core.generate_month(m, n, seed=s).read_all().select(_core.ride_schema().names).cast(_core.ride_schema())
                 for m, n, s in (("2012-10", 1200, 31), ("2012-11", 900, 32))]
    table = load(source, pa.concat_tables([edge_rides(), *generated]))
    t = table.num_rows
    local = _core.profile_rows(table.select(_core.ride_schema().names))
    monkeypatch.setenv("BQ_COMPUTE", "warehouse")
    wh = BigQuerySource(load_settings()).learn(0, t, t - 300, _core.Model(feature_version=2), None, None)
    assert wh["cleaning"] == local["cleaning"]
    months = [m["month"] for m in local["profile"]]
    assert None in months and {"2012-10", "2012-11", "1850-07"} <= set(months), months
    assert all(local["cleaning"][r] > 0 for r in ("missing", "zero_coordinates", "fare_out_of_range",
                                                  "passenger_count", "outside_nyc", "duplicate_key"))
    assert_same_profile(wh["profile"], local["profile"])
    monkeypatch.setenv("BQ_COMPUTE", "local")
    loc = BigQuerySource(load_settings()).learn(0, t, t - 300, _core.Model(feature_version=2), None, None)
    assert_same_profile(wh["profile"], loc["profile"])


def test_a_warehouse_lifecycle_is_gated(small_history, bigquery_env, monkeypatch: pytest.MonkeyPatch) -> None:
    """BQ_COMPUTE=warehouse: good months pass the gate (tagged so), a month in cents is
    refused with the one line before anything moves."""
    from test_validation import break_pending, cents

    from taxifare_flow.data.history import ensure_history
    from taxifare_flow.errors import DataValidationError
    from taxifare_flow.flow.lifecycle import run_lifecycle
    from taxifare_flow.ml_logic import get_latest_trained_row
    from taxifare_flow.ml_logic.registry import open_registry

    for k, v in (("HISTORY_ROWS_PER_MONTH", "1000"), ("HISTORY_FIRST_MONTH", "2012-05"),
                 ("HISTORY_LAST_MONTH", "2012-08"), ("BQ_COMPUTE", "warehouse")):
        monkeypatch.setenv(k, v)
    settings = load_settings()
    ensure_history(settings)
    src = BigQuerySource(settings)
    src.reset()
    for _ in range(3):
        assert src.bring_next_month() is not None
    assert run_lifecycle(settings).status == "trained"
    reg = open_registry(settings)
    [run] = reg.client.search_runs([reg.experiment_id], "params.context = 'train'")
    assert run.data.tags["validation"] == "passed", run.data.tags
    assert run.data.metrics["warehouse_result_rows"] > 0, "trained in the warehouse"
    break_pending(small_history, "2012-08", cents)
    assert src.bring_next_month() is not None
    with pytest.raises(DataValidationError, match=r"^month 2012-08 \(rows 3000\.\.4000\) refused: .*fare_amount median"):
        run_lifecycle(settings)
    assert get_latest_trained_row() == 3000
    assert len(reg.versions()) == 1


def test_an_empty_holdout_and_a_first_model(source: BigQuerySource, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new lineage (no production, no frozen model) and a range whose holdout is empty."""
    table = load(source, _core.generate_month("2012-10", 800, seed=5).read_all().select(_core.ride_schema().names))
    monkeypatch.setenv("BQ_COMPUTE", "warehouse")
    src = BigQuerySource(load_settings())
    first = _core.Model(feature_version=2)
    r = src.learn(0, table.num_rows, table.num_rows, first, None, None)
    assert r["production"] is None and r["frozen"] is None and r["holdout_kept"] == 0
    assert r["holdout_paired"] is not None and r["holdout_paired"]["n"] == 0
    assert first.n_rows == r["train_kept"] == r["cleaning"]["kept"] > 700
    local = _core.Model(feature_version=2)
    local.partial_fit(table)
    assert relative(first.statistics()[0], local.statistics()[0]) < 1e-9


def test_the_dry_run_and_the_byte_cap(source: BigQuerySource, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every warehouse query is dry-run first and runs under BQ_MAX_BYTES_BILLED (the
    emulator has no cost model: it announces 0 bytes, which is what is recorded)."""
    from taxifare_flow.data.bigquery import BigQueryError

    load(source, _core.generate_month("2012-10", 300, seed=5).read_all().select(_core.ride_schema().names))
    monkeypatch.setenv("BQ_COMPUTE", "warehouse")
    src = BigQuerySource(load_settings())
    sql = _core.warehouse_stats_query(src.table_id, 0, 300, 250, 2)
    assert src.dry_run(sql) == 0
    assert len(sql) < 1_024_000, "BigQuery's limit on a query's length"
    # The cap goes with every warehouse query to BigQuery itself (which refuses a query that
    # would bill more), whatever the dry run said: the client's queries are watched.
    sent: list[int | None] = []
    real = type(src.client).query

    def query(client: object, sql: str, job_config: object = None, **kw: object) -> object:
        sent.append(getattr(job_config, "maximum_bytes_billed", None))
        return real(client, sql, job_config=job_config, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(type(src.client), "query", query)
    r = src.learn(0, 300, 250, _core.Model(feature_version=2), None, None)
    assert r["warehouse_bytes_billed_estimate"] == 0
    assert sent and sent[-1] == 10 * 2**30 and sent.count(10 * 2**30) == 2, sent
    monkeypatch.undo()
    monkeypatch.setattr(BigQuerySource, "dry_run", lambda self, sql: 50 * 2**30)
    with pytest.raises(BigQueryError, match=r"would bill 50.00 GiB, over BQ_MAX_BYTES_BILLED=10737418240"):
        src.learn(0, 300, 250, _core.Model(feature_version=2), None, None)


def test_bq_cost_prices_the_next_lifecycle_without_running_it(small_history, bigquery_env) -> None:
    """`taxifare bq_cost`: the next lifecycle's queries from dry runs, for either BQ_COMPUTE;
    nothing is trained (the watermark stays at 0)."""
    from helpers import taxifare

    from taxifare_flow.data.history import ensure_history
    from taxifare_flow.ml_logic import get_latest_trained_row

    settings = load_settings()
    ensure_history(settings)
    src = BigQuerySource(settings)
    src.reset()
    out = taxifare("bq_cost")
    assert out.returncode == 0, out.stderr
    assert "nothing to train" in out.stdout
    src.bring_next_month()
    for compute, expected in (("warehouse", ["statistics query", "holdout query"]), ("local", ["Storage Read of the new rows"])):
        out = taxifare("bq_cost", env={"BQ_COMPUTE": compute})
        assert out.returncode == 0, out.stderr
        assert f"rows 0..2,500 of {src.table_id}, BQ_COMPUTE={compute}" in out.stdout
        for what in expected:
            assert what in out.stdout
        assert "under the cap" in out.stdout
    assert get_latest_trained_row() == 0
    out = taxifare("bq_cost", env={"BQ_API_ENDPOINT": "http://127.0.0.1:9", "BQ_TIMEOUT_SECONDS": "1"})
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "failed" in out.stderr, out.stderr
