"""The BigQuery data source: the same rides and `row_id`s as the local source, in a table.

- `reset`: the dataset and the table, with an explicit schema (ride columns + `row_id INT64
  NOT NULL`), partitioned by ranges of a million `row_id`s and clustered by `row_id`, so that
  a `row_id` range reads (and a dry run prices) only the partitions and blocks it needs.
- `bring_next_month` (`push_month_to_bq`): the next pending month as one Parquet load job with a deterministic job
  id (month + first row), so a retried or repeated push never appends a month twice.
- reading `[first, end)`: the Storage Read API with a `row_restriction` where an endpoint for
  it is known, else a parametrised query (`@first_row`, `@end_row`) read with `to_arrow`;
  the Arrow data goes to the Rust kernel as is, sorted by `row_id` in Arrow (no Python loop).
  A lifecycle reads its range once (`learn`): one read, one pass in the kernel, no cache.

Credentials: Application Default Credentials; anonymous only when an emulator endpoint is set.
Every call has a bounded timeout and retry deadline, so an unreachable endpoint fails in
seconds instead of retrying for minutes.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from taxifare_flow import _core
from taxifare_flow.core_types import PassCounts
from taxifare_flow.data import WAREHOUSE_HASH_PREFIX, SourceMonth
from taxifare_flow.data.history import ProgressFn, ensure_history, history_months, pending_file, pending_problems
from taxifare_flow.errors import BigQueryError, SettingsError
from taxifare_flow.settings import Settings

if TYPE_CHECKING:
    from google.api_core.retry import Retry
    from google.cloud.bigquery import Client, SchemaField
    from google.cloud.bigquery_storage import BigQueryReadClient

    from taxifare_flow.core_types import HoldoutSums, PassResult

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The Arrow schema of a slice (the core's data-source schema: `row_id`, then the ride
#: columns), also for an empty one; the table's schema follows it.
SLICE_SCHEMA = _core.source_schema()
#: The ride columns, as a pending month file holds them.
RIDE_COLUMNS = _core.ride_schema().names
#: BigQuery's names of the Arrow types of those columns.
BQ_TYPES = {pa.string(): "STRING", pa.float64(): "FLOAT64", pa.int64(): "INT64"}
#: gRPC's default cap on a received message is 4 MiB; a Storage Read page of a month's rows is
#: larger (real BigQuery's pages reach ~128 MiB). The library's own channel lifts the cap; a
#: channel made here must too.
GRPC_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


#: Rows per partition of the table (`row_id` ranges), and BigQuery's limit on partitions: room
#: for 10 billion rows; a Kaggle-size month spans 1–2 partitions, a TLC month ~15.
PARTITION_ROWS = 1_000_000
MAX_PARTITIONS = 10_000
#: BigQuery's on-demand price per TiB scanned (US multi-region, 2026), for the logs' estimates.
ON_DEMAND_USD_PER_TIB = 6.25
#: The Storage Read API's price per TiB read.
STORAGE_READ_USD_PER_TIB = 1.10


@dataclass(frozen=True)
class QueryCost:
    """What one query of a lifecycle would bill, from its dry run."""

    what: str
    bytes: int
    usd_per_tib: float

    @property
    def usd(self) -> float:
        return self.bytes / 2**40 * self.usd_per_tib


def _bytes(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n < 2**30 else f"{n / 2**30:,.2f} GiB"


def _schema() -> list[SchemaField]:
    from google.cloud.bigquery import SchemaField

    return [SchemaField(f.name, BQ_TYPES[f.type], mode="NULLABLE" if f.nullable else "REQUIRED") for f in SLICE_SCHEMA]


class BigQuerySource:
    """Rides in `GCP_PROJECT.BQ_DATASET.BQ_TABLE`."""

    name = "bigquery"

    def __init__(self, settings: Settings) -> None:
        if not settings.gcp_project:
            raise SettingsError("GCP_PROJECT is empty but DATA_SOURCE=bigquery needs it")
        self.settings = settings
        self.table_id = f"{settings.gcp_project}.{settings.bq_dataset}.{settings.bq_table}"
        self._client: Client | None = None
        self._read_client: BigQueryReadClient | None = None

    def where(self) -> str:
        return self.table_id

    # -- clients ---------------------------------------------------------------------------
    @property
    def client(self) -> Client:
        if self._client is None:
            from google.api_core.client_options import ClientOptions
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import bigquery

            s = self.settings
            emulated = bool(s.bq_api_endpoint)
            self._client = bigquery.Client(
                project=s.gcp_project,
                location=s.bq_location,
                # google-auth is unannotated.
                credentials=AnonymousCredentials() if emulated else None,  # type: ignore[no-untyped-call]
                client_options=ClientOptions(api_endpoint=s.bq_api_endpoint) if emulated else None,
            )
        return self._client

    @property
    def read_client(self) -> BigQueryReadClient | None:
        """A Storage Read client, when an endpoint for it is configured or on real GCP."""
        if self._read_client is None:
            s = self.settings
            if s.bq_api_endpoint and not s.bq_storage_endpoint:
                return None
            from google.cloud.bigquery_storage import BigQueryReadClient

            # The generated client's __init__ carries no annotations.
            if s.bq_storage_endpoint:
                import grpc  # type: ignore[import-untyped]  # no stubs; one call
                from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport

                channel = grpc.insecure_channel(s.bq_storage_endpoint.removeprefix("http://"), options=GRPC_OPTIONS)
                transport = BigQueryReadGrpcTransport(channel=channel)
                self._read_client = BigQueryReadClient(transport=transport)  # type: ignore[no-untyped-call]
            else:
                self._read_client = BigQueryReadClient()  # type: ignore[no-untyped-call]
        return self._read_client

    def _retry(self) -> Retry:
        from google.api_core.retry import Retry

        return Retry(timeout=self.settings.bq_timeout_seconds, initial=0.2, maximum=2.0)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Runs a BigQuery call, turning transport and API errors into `BigQueryError`."""
        from google.api_core import exceptions as gexc

        try:
            return fn()
        except (gexc.GoogleAPIError, OSError, ValueError) as e:
            endpoint = self.settings.bq_api_endpoint or "BigQuery"
            raise BigQueryError(f"{what} on {_core.mask_dsn(endpoint)} ({self.table_id}) failed: "
                                f"{type(e).__name__}: {_core.mask_dsn(str(e))[:500]}") from None

    def _query(self, sql: str, params: dict[str, int] | None = None, *, capped: bool = False) -> pa.Table:
        """Runs a query; `capped` ones carry `BQ_MAX_BYTES_BILLED`, so BigQuery refuses them
        before they bill more."""
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter(k, "INT64", v) for k, v in (params or {}).items()],
            maximum_bytes_billed=self.settings.bq_max_bytes_billed if capped else None,
        )
        t = self.settings.bq_timeout_seconds

        def run() -> pa.Table:
            # job_retry=None: any other value wraps jobs.insert in the library's own retry, which
            # re-runs a failing insert for up to 10 minutes; our `retry` bounds each call.
            job = self.client.query(sql, job_config=config, retry=self._retry(), timeout=t, job_retry=None)
            return job.result(timeout=t, retry=self._retry(), job_retry=self._retry()).to_arrow(create_bqstorage_client=False)

        return self._call("query", run)

    def dry_run(self, sql: str) -> int:
        """The bytes BigQuery says a query will bill (its upper bound: clustering prunes more
        at run time), without running it."""
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False)
        t = self.settings.bq_timeout_seconds
        job = self._call("dry run", lambda: self.client.query(sql, job_config=config, retry=self._retry(), timeout=t, job_retry=None))
        return int(job.total_bytes_processed or 0)

    def lifecycle_cost(self, w: int, t: int, holdout_start: int, feature_version: int) -> list[QueryCost]:
        """What a lifecycle over `[w, t)` would bill, from BigQuery's dry runs (nothing runs),
        for the configured `BQ_COMPUTE`."""
        if self.settings.bq_compute == "warehouse":
            sql = _core.warehouse_stats_query(self.table_id, w, t, holdout_start, feature_version)
            billed = self.dry_run(sql)
            # Query 2 needs the trained challenger to be written; it references the same
            # columns of the same rows, so it bills what query 1 does.
            return [QueryCost("statistics query", billed, ON_DEMAND_USD_PER_TIB),
                    QueryCost("holdout query (same columns, same rows)", billed, ON_DEMAND_USD_PER_TIB)]
        sql = (f"SELECT {', '.join(SLICE_SCHEMA.names)} FROM `{self.table_id}` "
               f"WHERE row_id >= {int(w)} AND row_id < {int(t)}")
        return [QueryCost("Storage Read of the new rows", self.dry_run(sql), STORAGE_READ_USD_PER_TIB)]

    def _priced_query(self, what: str, sql: str) -> tuple[pa.Table, int]:
        """A lifecycle query: its dry run first (logged, and refused over the cap), then the
        query under the same cap. Returns its rows and the bytes the dry run announced."""
        billed = self.dry_run(sql)
        cap = self.settings.bq_max_bytes_billed
        log.info("%s: BigQuery will bill at most %s (dry run), ~$%.4f on demand", what, _bytes(billed),
                 billed / 2**40 * ON_DEMAND_USD_PER_TIB)
        if cap is not None and billed > cap:
            raise BigQueryError(f"{what} would bill {_bytes(billed)}, over BQ_MAX_BYTES_BILLED={cap} ({_bytes(cap)}): "
                                "nothing was run; raise the cap or train with BQ_COMPUTE=local")
        return self._query(sql, capped=True), billed

    # -- data-engineer commands -----------------------------------------------------------
    def reset(self, progress: ProgressFn | None = None) -> str:
        """(Re)creates the dataset and an empty table with the explicit schema, and makes sure
        the pending history exists (as the local reset does), so that pushes can follow."""
        from google.cloud import bigquery

        s = self.settings
        ensure_history(s, progress=progress)
        t = s.bq_timeout_seconds
        dataset = bigquery.Dataset(f"{s.gcp_project}.{s.bq_dataset}")
        dataset.location = s.bq_location
        self._call("create dataset", lambda: self.client.create_dataset(dataset, exists_ok=True, retry=self._retry(), timeout=t))
        self._call("delete table", lambda: self.client.delete_table(self.table_id, not_found_ok=True, retry=self._retry(), timeout=t))
        table = bigquery.Table(self.table_id, schema=_schema())
        # Partitions of `row_id` ranges: a lifecycle's query names its partitions, so a dry
        # run (and BQ_MAX_BYTES_BILLED) sees the range's bytes, not the whole table's;
        # clustering then prunes the blocks inside them at run time.
        table.range_partitioning = bigquery.RangePartitioning(
            field="row_id", range_=bigquery.PartitionRange(start=0, end=PARTITION_ROWS * MAX_PARTITIONS, interval=PARTITION_ROWS))
        table.clustering_fields = ["row_id"]
        self._call("create table", lambda: self.client.create_table(table, retry=self._retry(), timeout=t))
        return f"{self.table_id} is empty and ready"

    def months(self) -> list[SourceMonth]:
        """Months present, by `row_id`."""
        t = self._query(
            f"SELECT SUBSTR(pickup_datetime, 1, 7) AS month, MIN(row_id) AS first_row, MAX(row_id) + 1 AS end_row, "
            f"COUNT(*) AS n FROM `{self.table_id}` GROUP BY month ORDER BY first_row"
        )
        return [SourceMonth(r["month"], r["first_row"], r["end_row"]) for r in t.to_pylist()]

    def pending(self) -> list[str]:
        present = self.months()
        newest = present[-1].month if present else ""
        return [m for m in history_months(self.settings.pending_dir) if m > newest]

    def row_count(self) -> int:
        t = self._query(f"SELECT COALESCE(MAX(row_id) + 1, 0) AS n, COUNT(*) AS c FROM `{self.table_id}`")
        n, c = t.column("n")[0].as_py(), t.column("c")[0].as_py()
        if n != c:
            raise BigQueryError(f"{self.table_id}: row_id gap or overlap ({c} rows but row_ids reach {n})")
        return int(n)

    def problems(self) -> list[str]:
        try:
            self.row_count()
        except BigQueryError as e:
            return [str(e)]
        return []

    def pending_problems(self) -> list[str]:
        return pending_problems(self.settings)

    def month_of_row(self, row: int) -> str | None:
        t = self._query(f"SELECT SUBSTR(pickup_datetime, 1, 7) AS m FROM `{self.table_id}` WHERE row_id = @row", {"row": row})
        return t.column("m")[0].as_py() if t.num_rows else None

    def stage_next_month(self) -> _core.StagedMonth | None:
        return None  # a month is loaded in one job: nothing to write ahead

    def bring_next_month(self, staged: _core.StagedMonth | None = None) -> SourceMonth | None:
        """Loads the next pending month with the next `row_id`s, as one Parquet load job."""
        from google.api_core.exceptions import Conflict
        from google.cloud import bigquery

        pending = self.pending()
        if not pending:
            return None
        month = pending[0]
        first = self.row_count()
        rides = pq.read_table(pending_file(self.settings.pending_dir, month), columns=RIDE_COLUMNS)
        table = rides.add_column(0, SLICE_SCHEMA.field("row_id"),
                                 pa.array(np.arange(first, first + rides.num_rows, dtype=np.int64)))
        # Checked right before the load (not from the month listing, which may be stale), and
        # the job id below is deterministic: BigQuery refuses a second job with the same id.
        clash = self._query(
            f"SELECT COUNT(*) AS n FROM `{self.table_id}` WHERE row_id >= @first_row AND row_id < @end_row",
            {"first_row": first, "end_row": first + table.num_rows},
        ).column("n")[0].as_py()
        if clash:
            raise _core.MonthAlreadyPresentError(
                f"{self.table_id} already holds {clash} rows in row_id {first}..{first + table.num_rows}: "
                f"month {month} is not loaded again"
            )
        config = bigquery.LoadJobConfig(schema=_schema(), source_format=bigquery.SourceFormat.PARQUET,
                                        write_disposition=bigquery.WriteDisposition.WRITE_APPEND)
        # Same month at the same position → same job id: a repeated push is refused by BigQuery.
        job_id = f"taxifare_{self.settings.bq_dataset}_{self.settings.bq_table}_{month.replace('-', '_')}_r{first}"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{month}.parquet"
            pq.write_table(table, path)

            def load() -> None:
                with path.open("rb") as f:
                    job = self.client.load_table_from_file(f, self.table_id, job_id=job_id, job_config=config, num_retries=2,
                                                           timeout=self.settings.bq_timeout_seconds)
                job.result(timeout=max(self.settings.bq_timeout_seconds, 300))

            try:
                self._call("load", load)
            except BigQueryError as e:
                if not isinstance(e.__context__, Conflict) and "Already Exists" not in str(e):
                    raise
                # BigQuery keeps job ids for months: after reset_bq_tables, or when that job
                # failed, the id is taken but the rows are not in this table.
                loaded = self._query(
                    f"SELECT COUNT(*) AS n FROM `{self.table_id}` WHERE row_id >= @first_row AND row_id < @end_row",
                    {"first_row": first, "end_row": first + table.num_rows},
                ).column("n")[0].as_py()
                if loaded != table.num_rows:
                    raise BigQueryError(
                        f"load job {job_id} already exists but {self.table_id} holds {loaded} of the {table.num_rows} rows of "
                        f"{month}: the id belongs to an earlier table or a failed load; run reset_bq_tables with a new "
                        "BQ_TABLE name, or load the month by hand"
                    ) from None
                log.warning("load job %s already ran: month %s not appended again", job_id, month)
        return SourceMonth(month, first, first + table.num_rows)

    # -- rows ------------------------------------------------------------------------------
    def read(self, first_row: int, row_count: int) -> pa.RecordBatchReader:
        """Rows `[first_row, first_row + row_count)` ordered by `row_id`, as Arrow."""
        table = self._read(first_row, first_row + row_count)
        return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())

    def content_hash(self, first_row: int, row_count: int, like: str | None = None) -> str:
        if like is not None and like.startswith(WAREHOUSE_HASH_PREFIX):
            # Recorded by a warehouse pass: computed again in BigQuery (no row leaves).
            sql = _core.warehouse_hash_query(self.table_id, first_row, first_row + row_count)
            return _core.warehouse_hash(self._priced_query("lineage hash query", sql)[0])
        return _core.hash_rows(self._read(first_row, first_row + row_count))

    def learn(self, first_row: int, row_count: int, holdout_start: int, challenger: _core.Model,
              production: _core.Model | None, frozen: _core.Model | None,
              horizons: Sequence[_core.Model] = ()) -> PassResult:
        if self.settings.bq_compute == "warehouse":
            # The warehouse sums the challenger's statistics in SQL, not per month: no ledger
            # and no horizons there yet (docs/architecture.md, "The ledger").
            return self._learn_in_warehouse(first_row, first_row + row_count, holdout_start, challenger, production, frozen)
        table = self._read(first_row, first_row + row_count)
        return _core.lifecycle_pass(table, holdout_start - first_row, challenger, production, frozen, list(horizons))

    def ledger(self, first_row: int, row_count: int, feature_version: int) -> _core.Ledger | None:
        return _core.Ledger.of_rows(self._read(first_row, first_row + row_count), feature_version)

    def _learn_in_warehouse(self, w: int, t: int, h: int, challenger: _core.Model, production: _core.Model | None,
                            frozen: _core.Model | None) -> PassResult:
        """The pass as two queries (`_core.warehouse_*`): statistics, cleaning, scores and
        lineage hash of `[w, t)`; then the challenger trained on `[w, h)` and production on
        the holdout. No ride leaves BigQuery: only the aggregates do."""
        sql = _core.warehouse_stats_query(self.table_id, w, t, h, challenger.feature_version, production, frozen)
        rows, billed = self._priced_query("statistics query", sql)
        holdout = challenger.empty_like()
        part = _core.warehouse_absorb(rows, challenger, holdout)
        numbers = part["numbers"]
        paired: HoldoutSums | None = None
        if challenger.n_rows > 0 and part["holdout_kept"]:
            sql = _core.warehouse_holdout_query(self.table_id, w, t, h, challenger, production)
            rows, more = self._priced_query("holdout query", sql)
            billed += more
            numbers += rows.num_rows
            paired = _core.warehouse_paired(rows, production is not None)
        elif challenger.n_rows > 0:
            # No clean holdout row: nothing to compare on, and no query to pay for.
            paired = {"n": 0, "challenger_sum": 0.0, "production_sum": 0.0 if production is not None else None,
                      "diff_sum": 0.0, "diff_sq_sum": 0.0}
        challenger.merge(holdout)
        counts = {k: v for k, v in part.items() if k in PassCounts.__required_keys__}
        return cast("PassResult", {**counts, "rows": 0, "holdout_paired": paired,
                                   "warehouse_result_rows": numbers, "warehouse_bytes_billed_estimate": billed})

    def removal_statistics(self, clean_from: int, first: int, end: int, like: _core.Model) -> tuple[_core.Model, int]:
        """The statistics of the clean rows `[first, end)` per ride month, computed in BigQuery
        (`taxifare unlearn` with `BQ_COMPUTE=warehouse`), as a model of `like`'s settings and
        feature version, and how many clean rows they are. The rows are cleaned from
        `clean_from` on, as the pass that learnt them cleaned them: it is query 1 of a
        lifecycle over `[clean_from, end)` whose "holdout" starts at `first`."""
        sql = _core.warehouse_stats_query(self.table_id, clean_from, end, first, like.feature_version)
        rows, _ = self._priced_query("unlearn statistics query", sql)
        before, removed = like.empty_like(), like.empty_like()
        part = _core.warehouse_absorb(rows, before, removed)
        return removed, int(part["holdout_kept"])

    def _read(self, first_row: int, end: int) -> pa.Table:
        row_count = end - first_row
        if row_count <= 0:
            return SLICE_SCHEMA.empty_table()
        reader = self.read_client
        if reader is not None:
            table = self._call("storage read", lambda: self._storage_read(reader, first_row, end))
        else:
            table = self._query(
                f"SELECT {', '.join(SLICE_SCHEMA.names)} FROM `{self.table_id}` "
                "WHERE row_id >= @first_row AND row_id < @end_row ORDER BY row_id",
                {"first_row": first_row, "end_row": end},
            )
        table = table.sort_by("row_id")
        ids = table.column("row_id")
        if table.num_rows != row_count or (table.num_rows and (ids[0].as_py() != first_row or ids[-1].as_py() != end - 1)):
            raise BigQueryError(f"{self.table_id}: expected rows {first_row}..{end}, got {table.num_rows} rows")
        return table

    def _storage_read(self, reader: BigQueryReadClient, first: int, end: int) -> pa.Table:
        from google.cloud.bigquery_storage import DataFormat, ReadSession

        s = self.settings
        session = ReadSession(
            table=f"projects/{s.gcp_project}/datasets/{s.bq_dataset}/tables/{s.bq_table}",
            data_format=DataFormat.ARROW,
            read_options=ReadSession.TableReadOptions(
                row_restriction=f"row_id >= {int(first)} AND row_id < {int(end)}",
                selected_fields=SLICE_SCHEMA.names,
            ),
        )
        session = reader.create_read_session(parent=f"projects/{s.gcp_project}", read_session=session,
                                             max_stream_count=1, timeout=s.bq_timeout_seconds)
        if not session.streams:
            return SLICE_SCHEMA.empty_table()
        schema = pa.ipc.read_schema(pa.py_buffer(session.arrow_schema.serialized_schema))
        batches = []
        pages = reader.read_rows(session.streams[0].name, timeout=s.bq_timeout_seconds)  # type: ignore[no-untyped-call]
        for page in pages:
            batches.append(pa.ipc.read_record_batch(pa.py_buffer(page.arrow_record_batch.serialized_record_batch), schema))
        return pa.Table.from_batches(batches, schema=schema)
