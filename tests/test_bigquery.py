"""The BigQuery data source against a real BigQuery API implementation (the emulator) on
loopback: explicit schema, idempotent month loads, row_id slicing by both read paths."""

from __future__ import annotations

import time

import pytest

from taxifare_flow import _core
from taxifare_flow.data.bigquery import BigQueryError, BigQuerySource
from taxifare_flow.data.history import ensure_history
from taxifare_flow.settings import load_settings

pytestmark = pytest.mark.bigquery


@pytest.fixture
def bq(small_history, bigquery_env, monkeypatch) -> BigQuerySource:
    monkeypatch.setenv("HISTORY_FIRST_MONTH", "2012-08")
    monkeypatch.setenv("HISTORY_LAST_MONTH", "2012-10")
    monkeypatch.setenv("HISTORY_ROWS_PER_MONTH", "1000")
    settings = load_settings()
    ensure_history(settings)
    src = BigQuerySource(settings)
    src.reset()
    return src


def test_reset_push_show(bq: BigQuerySource) -> None:
    table = bq.client.get_table(bq.table_id)
    kinds = {"INTEGER": "INT64", "FLOAT": "FLOAT64"}  # legacy and standard SQL names
    got = [(f.name, kinds.get(f.field_type, f.field_type), f.mode) for f in table.schema]
    assert got[:3] == [("row_id", "INT64", "REQUIRED"), ("key", "STRING", "NULLABLE"), ("fare_amount", "FLOAT64", "NULLABLE")]
    assert table.clustering_fields == ["row_id"]
    assert bq.row_count() == 0 and bq.pending() == ["2012-08", "2012-09", "2012-10"]
    for month, first in (("2012-08", 0), ("2012-09", 1000), ("2012-10", 2000)):
        pushed = bq.push_next_month()
        assert (pushed.month, pushed.first_row, pushed.end_row) == (month, first, first + 1000)
    assert bq.push_next_month() is None, "no more data"
    assert [(m.month, m.first_row, m.end_row) for m in bq.months()] == [
        ("2012-08", 0, 1000), ("2012-09", 1000, 2000), ("2012-10", 2000, 3000)]


def test_a_repeated_load_is_not_appended_twice(bq: BigQuerySource, monkeypatch: pytest.MonkeyPatch) -> None:
    bq.push_next_month()
    # As if the first push had timed out on the client after BigQuery ran it: same month, same
    # position, so the same job id.
    months = bq.months()
    monkeypatch.setattr(BigQuerySource, "pending", lambda self: ["2012-08"])
    monkeypatch.setattr(BigQuerySource, "row_count", lambda self: 0)
    with pytest.raises(_core.MonthAlreadyPresentError, match="2012-08 is not loaded again"):
        bq.push_next_month()
    monkeypatch.undo()
    assert bq.months() == months and bq.row_count() == 1000


def test_storage_read_and_parametrised_query_agree(bq: BigQuerySource, monkeypatch: pytest.MonkeyPatch) -> None:
    bq.push_next_month()
    bq.push_next_month()
    via_storage = bq.read(990, 20)
    assert via_storage.column("row_id").to_pylist() == list(range(990, 1010))
    monkeypatch.setenv("BQ_STORAGE_ENDPOINT", "")
    via_query = BigQuerySource(load_settings()).read(990, 20)
    assert via_query.column("row_id").to_pylist() == list(range(990, 1010))
    assert via_storage.select(via_query.column_names).equals(via_query.cast(via_storage.select(via_query.column_names).schema))
    # The Arrow data goes to the kernel as is, and hashes like the same rows from the local source.
    local = _core.generate_month("2012-08", 1000, seed=42).read_all()  # same seed as the history
    assert _core.hash_rows(bq.read(0, 1000).drop_columns(["row_id"])) == _core.hash_rows(local)


def test_unreachable_endpoint_fails_fast(small_history, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_SOURCE", "bigquery")
    monkeypatch.setenv("GCP_PROJECT", "test-project")
    monkeypatch.setenv("BQ_API_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("BQ_TIMEOUT_SECONDS", "2")
    started = time.perf_counter()
    with pytest.raises(BigQueryError, match="127.0.0.1:1"):
        BigQuerySource(load_settings()).row_count()
    assert time.perf_counter() - started < 15


def test_missing_project_is_a_clear_error(small_history, monkeypatch: pytest.MonkeyPatch) -> None:
    from taxifare_flow.settings import SettingsError

    monkeypatch.setenv("DATA_SOURCE", "bigquery")
    with pytest.raises(SettingsError, match="GCP_PROJECT"):
        BigQuerySource(load_settings())
