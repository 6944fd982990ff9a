"""The BigQuery data source against a real BigQuery API implementation (the emulator) on
loopback: explicit schema, idempotent month loads, row_id slicing by both read paths."""

from __future__ import annotations

import time

import pytest

from taxifare_flow import _core
from taxifare_flow.data.bigquery import BigQueryError, BigQuerySource
from taxifare_flow.data.history import ensure_history
from taxifare_flow.settings import load_settings


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
        pushed = bq.bring_next_month()
        assert (pushed.month, pushed.first_row, pushed.end_row) == (month, first, first + 1000)
    assert bq.bring_next_month() is None, "no more data"
    assert [(m.month, m.first_row, m.end_row) for m in bq.months()] == [
        ("2012-08", 0, 1000), ("2012-09", 1000, 2000), ("2012-10", 2000, 3000)]


def test_a_repeated_load_is_not_appended_twice(bq: BigQuerySource, monkeypatch: pytest.MonkeyPatch) -> None:
    bq.bring_next_month()
    # As if the first push had timed out on the client after BigQuery ran it: same month, same
    # position, so the same job id.
    months = bq.months()
    monkeypatch.setattr(BigQuerySource, "pending", lambda self: ["2012-08"])
    monkeypatch.setattr(BigQuerySource, "row_count", lambda self: 0)
    with pytest.raises(_core.MonthAlreadyPresentError, match="2012-08 is not loaded again"):
        bq.bring_next_month()
    monkeypatch.undo()
    assert bq.months() == months and bq.row_count() == 1000


def test_storage_read_and_parametrised_query_agree(bq: BigQuerySource, monkeypatch: pytest.MonkeyPatch) -> None:
    bq.bring_next_month()
    bq.bring_next_month()
    via_storage = bq.read(990, 20).read_all()
    assert via_storage.column("row_id").to_pylist() == list(range(990, 1010))
    monkeypatch.setenv("BQ_STORAGE_ENDPOINT", "")
    via_query = BigQuerySource(load_settings()).read(990, 20).read_all()
    assert via_query.column("row_id").to_pylist() == list(range(990, 1010))
    assert via_storage.select(via_query.column_names).equals(via_query.cast(via_storage.select(via_query.column_names).schema))
    # The Arrow data goes to the kernel as is, and hashes like the same rows from the local source.
    local = _core.generate_month("2012-08", 1000, seed=42).read_all()  # same seed as the history
    assert _core.hash_rows(bq.read(0, 1000).read_all().drop_columns(["row_id"])) == _core.hash_rows(local)


@pytest.mark.slow
def test_a_kaggle_size_month_is_read_once_through_the_storage_api(small_history, bigquery_env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A month the size of a Kaggle month (700k rows) through the Storage Read path (its pages
    pass gRPC's 4 MiB default cap), read once by the lifecycle pass, and the same result as
    the local source's pass over the same rows."""
    import numpy as np

    from taxifare_flow.data import open_source

    monkeypatch.setenv("HISTORY_FIRST_MONTH", "2012-08")
    monkeypatch.setenv("HISTORY_LAST_MONTH", "2012-08")
    monkeypatch.setenv("HISTORY_ROWS_PER_MONTH", "700000")
    settings = load_settings()
    bq, local = open_source(settings, "bigquery"), open_source(settings, "local")
    local.reset()
    bq.reset()
    n = 700_000
    assert bq.bring_next_month() is not None and local.bring_next_month() is not None
    assert bq.row_count() == n
    h = n - n * 15 // 100
    results, models = [], []
    for source in (bq, local):
        production = _core.Model()
        production.partial_fit(_core.generate_month("2012-07", 5000, seed=3))
        challenger = production.copy()  # a lineage head: two months, so every feature varies
        before = _core.rows_decoded()
        results.append(source.learn(0, n, h, challenger, production, None))
        assert _core.rows_decoded() - before == n, f"{source.name}: each row is read once"
        models.append(challenger)
    via_bq, via_local = results
    assert via_bq["rows"] == via_local["rows"] == n
    assert via_bq["lineage_hash"] == via_local["lineage_hash"]
    assert via_bq["cleaning"] == via_local["cleaning"] and via_bq["train_kept"] == via_local["train_kept"]
    assert via_bq["production"]["n"] == via_local["production"]["n"]
    np.testing.assert_allclose(via_bq["holdout_production_errors"], via_local["holdout_production_errors"], rtol=1e-12)
    np.testing.assert_allclose(models[0].coefficients()[1], models[1].coefficients()[1], rtol=1e-6, atol=1e-9)
    assert models[0].n_rows == models[1].n_rows == production.n_rows + via_bq["cleaning"]["kept"]


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
