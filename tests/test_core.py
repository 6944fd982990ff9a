"""The Rust core seen from Python: version, logging bridge, generator, slicing, errors."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from taxifare_flow import _core

#: A sample of Kaggle's train.csv: its header is the contract the ride schema follows.
KAGGLE_SAMPLE = Path(__file__).resolve().parent.parent / "benches" / "data" / "kaggle_sample_5k.csv"


def test_version_and_log_bridge(caplog: pytest.LogCaptureFixture) -> None:
    import taxifare_flow

    assert taxifare_flow.__version__ == _core.version() == "0.1.0"
    with caplog.at_level(logging.INFO):
        _core._testing.log_hello("hello from Rust")
    assert any(r.message == "hello from Rust" and r.name.startswith("_core") for r in caplog.records)


def test_the_exported_schemas_are_kaggle_s_columns() -> None:
    kaggle = KAGGLE_SAMPLE.read_text().split("\n", 1)[0].strip().split(",")
    assert _core.ride_schema().names == kaggle
    assert _core.ride_schema().field("passenger_count").type == pa.int64()
    assert _core.source_schema().names == ["row_id", *kaggle]
    assert not _core.source_schema().field("row_id").nullable


def test_generator_is_deterministic_and_has_the_kaggle_schema(tmp_path: Path) -> None:
    a = _core.generate_history(tmp_path / "a", seed=7, first_month="2010-03", last_month="2010-04", rows_per_month=2000)
    _core.generate_history(tmp_path / "b", seed=7, first_month="2010-03", last_month="2010-04", rows_per_month=2000)
    for m in ("2010-03", "2010-04"):
        da = hashlib.sha256((tmp_path / "a" / f"{m}.parquet").read_bytes()).hexdigest()
        db = hashlib.sha256((tmp_path / "b" / f"{m}.parquet").read_bytes()).hexdigest()
        assert da == db
    assert [m["rows"] for m in a] == [2000, 2000]
    t = pq.read_table(tmp_path / "a" / "2010-03.parquet")
    assert t.schema.equals(_core.ride_schema())
    first = t.column("pickup_datetime")[0].as_py()
    assert first.startswith("2010-03-01 ") and first.endswith(" UTC")
    assert t.column("key")[0].as_py().startswith(first[:19] + ".")
    floor = (tmp_path / "a" / "noise_floor.csv").read_text().splitlines()
    assert floor[0] == "month,rows,clean_rows,noise_floor_mae,noise_floor_rmse" and len(floor) == 3
    other = _core.generate_history(tmp_path / "c", seed=8, first_month="2010-03", last_month="2010-03", rows_per_month=2000)
    assert other[0]["noise_floor_mae"] != a[0]["noise_floor_mae"]


def _month(month: str, rows: int = 20_000) -> pa.Table:
    return _core.generate_month(month, rows, seed=3, with_expected=True).read_all()


def _clean(t: pa.Table) -> pa.Table:
    ok = pc.and_(pc.greater(t["fare_amount"], 0), pc.is_valid(t["dropoff_latitude"]))
    ok = pc.and_(ok, pc.and_(pc.greater(t["pickup_latitude"], 40.5), pc.less(t["pickup_latitude"], 40.9)))
    ok = pc.and_(ok, pc.and_(pc.greater(t["dropoff_latitude"], 40.5), pc.less(t["dropoff_latitude"], 40.9)))
    return t.filter(ok)


def test_fare_rules_show_in_generated_data() -> None:
    """Per-mile slope changes at 2012-09-04; JFK flat fares are $45 before and $52 after."""
    def near(t: pa.Table, lat: float, lon: float, end: str) -> np.ndarray:
        la, lo = t[f"{end}_latitude"].to_numpy(), t[f"{end}_longitude"].to_numpy()
        return (np.abs(la - lat) < 0.02) & (np.abs(lo - lon) < 0.025)

    def jfk_fares(t: pa.Table) -> np.ndarray:
        t = _clean(t)
        jfk = near(t, 40.6413, -73.7781, "dropoff") | near(t, 40.6413, -73.7781, "pickup")
        return t["fare_amount"].to_numpy()[jfk]

    before, after = _month("2012-06"), _month("2012-11")
    # Flat fare + $0.50 MTA tax (+ $4.50 peak surcharge after the change, + tolls) are the mode.
    fb, fa = jfk_fares(before), jfk_fares(after)
    assert np.mean(np.isin(fb, [45.5, 50.5, 50.83])) > 0.5, np.unique(fb, return_counts=True)
    assert np.mean(np.isin(fa, [52.5, 57.0, 57.83, 62.33])) > 0.5, np.unique(fa, return_counts=True)

    def slope(t: pa.Table) -> float:
        t = _clean(t)
        la1, lo1 = np.radians(t["pickup_latitude"].to_numpy()), np.radians(t["pickup_longitude"].to_numpy())
        la2, lo2 = np.radians(t["dropoff_latitude"].to_numpy()), np.radians(t["dropoff_longitude"].to_numpy())
        h = np.sin((la2 - la1) / 2) ** 2 + np.cos(la1) * np.cos(la2) * np.sin((lo2 - lo1) / 2) ** 2
        km = 2 * 6371 * np.arcsin(np.sqrt(h))
        f = t["fare_amount"].to_numpy()
        short = (km > 0.5) & (km < 8) & (f < 40)
        return float(np.polyfit(km[short], f[short], 1)[0])

    assert slope(after) / slope(before) > 1.15, (slope(before), slope(after))


def test_dirt_rates_are_within_bounds() -> None:
    t = _month("2011-05", 50_000)
    n = t.num_rows
    zero = pc.sum(pc.and_(pc.equal(t["pickup_latitude"], 0), pc.equal(t["dropoff_longitude"], 0))).as_py() / n
    assert 0.012 < zero < 0.026
    p0 = pc.sum(pc.equal(t["passenger_count"], 0)).as_py() / n
    assert 0.001 < p0 < 0.007
    missing = t["dropoff_latitude"].null_count / n
    assert 0 < missing < 0.002
    nonpositive = pc.sum(pc.less_equal(t["fare_amount"], 0)).as_py() / n
    assert 0 < nonpositive < 0.002
    keys = t["key"]
    assert 0 < n - len(pc.unique(keys)) < 0.002 * n, "a few duplicated rows"
    many = pc.sum(pc.greater(t["passenger_count"], 6)).as_py()
    assert many >= 1


def test_noise_floor_is_what_a_model_cannot_beat() -> None:
    t = _clean(_month("2013-03"))
    gap = np.abs(t["fare_amount"].to_numpy() - t["expected_fare"].to_numpy())
    assert 0.5 < gap.mean() < 3.0


@pytest.fixture
def source(tmp_path: Path) -> Path:
    pending, src = tmp_path / "pending", tmp_path / "source"
    _core.generate_history(pending, seed=1, first_month="2014-01", last_month="2014-03", rows_per_month=1000)
    for m in ("2014-01", "2014-02", "2014-03"):
        _core.append_month(pending / f"{m}.parquet", m, src)
    return src


def test_read_rows_boundaries_zero_copy(source: Path) -> None:
    assert _core.row_count(source) == 3000
    reader = _core.read_rows(source, 990, 20, batch_rows=7)
    assert isinstance(reader, pa.RecordBatchReader)
    t = reader.read_all()
    assert t.column("row_id").to_pylist() == list(range(990, 1010))
    assert t.schema.equals(_core.source_schema())
    assert _core.read_rows(source, 2999).read_all().column("row_id").to_pylist() == [2999]
    assert _core.read_rows(source, 3000).read_all().num_rows == 0
    assert _core.read_rows(source, 5000, 10).read_all().num_rows == 0
    assert _core.read_rows(source, 0, 0).read_all().num_rows == 0
    assert _core.read_rows(source, 0).read_all().num_rows == 3000
    files = _core.source_files(source)
    assert [(f["month"], f["first_row"], f["end_row"]) for f in files] == [
        ("2014-01", 0, 1000), ("2014-02", 1000, 2000), ("2014-03", 2000, 3000)]


def test_source_errors_name_the_file(source: Path) -> None:
    files = sorted(source.glob("*.parquet"))
    files[1].rename(source / "2014-02_r000000001000-000000001999.parquet")
    with pytest.raises(_core.DataSourceError, match="gap"):
        _core.read_rows(source, 0)
    (source / "2014-02_r000000001000-000000001999.parquet").rename(files[1])
    pq.write_table(pq.read_table(files[2]).drop_columns(["fare_amount"]), files[2])
    with pytest.raises(_core.SchemaError, match=r"2014-03_r.*fare_amount"):
        _core.read_rows(source, 0)
    files[2].write_bytes(b"PAR1 not really")
    with pytest.raises(_core.DataSourceError, match="2014-03_r.*corrupt"):
        _core.read_rows(source, 2500)
    # Rows before the broken file still read: only the files that hold the range are opened.
    assert _core.read_rows(source, 0, 1500).read_all().num_rows == 1500
    with pytest.raises(_core.DataSourceError, match="not found"):
        _core.read_rows(source / "nope", 0)


def test_append_is_idempotent_and_ordered(source: Path, tmp_path: Path) -> None:
    with pytest.raises(_core.MonthAlreadyPresentError):
        _core.append_month(tmp_path / "pending" / "2014-03.parquet", "2014-03", source)
    with pytest.raises(_core.DataSourceError, match="older"):
        _core.append_month(tmp_path / "pending" / "2014-01.parquet", "2013-12", source)
    assert _core.row_count(source) == 3000


def test_csv_source_reads_like_parquet(tmp_path: Path) -> None:
    pending, src = tmp_path / "pending", tmp_path / "csv"
    _core.generate_history(pending, seed=1, first_month="2014-01", last_month="2014-02", rows_per_month=500)
    for m in ("2014-01", "2014-02"):
        _core.append_month(pending / f"{m}.parquet", m, src, "csv")
    t = _core.read_rows(src, 495, 10).read_all()
    assert t.column("row_id").to_pylist() == list(range(495, 505))
    assert (src / "2014-01_r000000000000-000000000500.csv").read_text().startswith("row_id,key,fare_amount")


def test_kaggle_csv_import_splits_by_month(tmp_path: Path) -> None:
    rows = _month("2013-05", 300).drop_columns(["expected_fare"]).to_pandas()
    rows.loc[5, "pickup_datetime"] = "2013-06-02 10:00:00 UTC"
    rows.loc[6, "pickup_datetime"] = "not a date"
    rows["fare_amount"] = rows["fare_amount"].astype(object)
    rows.loc[7, "fare_amount"] = "twelve dollars"  # malformed: kept as a null, dropped by cleaning
    csv_path = tmp_path / "train.csv"
    rows.to_csv(csv_path, index=False)
    r = _core.import_kaggle_csv(csv_path, tmp_path / "pending")
    assert dict(r["months"]) == {"2013-05": 298, "2013-06": 1}
    assert r["skipped"] == {"unparseable_time": 1} and r["malformed_values"] == {"fare_amount": 1}
    may = pq.read_table(tmp_path / "pending" / "2013-05.parquet")
    assert may["fare_amount"].null_count == 1
    from taxifare_flow import Model

    assert Model().partial_fit(may)["missing"] >= 1


def test_hash_rows_is_a_content_hash(source: Path) -> None:
    a = _core.hash_rows(_core.read_rows(source, 100, 500, batch_rows=3))
    b = _core.hash_rows(_core.read_rows(source, 100, 500))
    c = _core.hash_rows(_core.read_rows(source, 101, 500))
    assert a == b != c
