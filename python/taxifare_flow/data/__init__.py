"""Data sources: the local Parquet/CSV source (default) and BigQuery, behind one protocol.

`open_source` is the only place that tells them apart: the commands, the simulation and the
lifecycle see a `DataSource`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    import pyarrow as pa

    from taxifare_flow import _core
    from taxifare_flow.core_types import PassResult
    from taxifare_flow.data.history import ProgressFn
    from taxifare_flow.settings import Settings

#: Lineage hashes computed by a warehouse pass (`BQ_COMPUTE=warehouse`) start with this: two
#: FARM_FINGERPRINT lanes computed in BigQuery, not the kernel's FNV digest of the rows.
WAREHOUSE_HASH_PREFIX = "bq:"

#: The kinds of source `open_source` knows.
SourceKind = Literal["local", "bigquery"]


@dataclass(frozen=True)
class SourceMonth:
    """One month present in a source: its rows are `row_id` `first_row..end_row`."""

    month: str
    first_row: int
    end_row: int
    #: Bytes on disk where the source knows them (local files), else `None`.
    bytes: int | None = None

    @property
    def rows(self) -> int:
        return self.end_row - self.first_row


class DataSource(Protocol):
    """Everything the commands and the lifecycle need of a data source."""

    #: `local` or `bigquery`: recorded with every training run.
    name: str

    def where(self) -> str:
        """The folder or table, for messages."""
        ...

    # -- state ---------------------------------------------------------------------------
    def months(self) -> list[SourceMonth]:
        """Months present, in `row_id` order."""
        ...

    def row_count(self) -> int: ...

    def pending(self) -> list[str]:
        """Months of the pending history not yet in the source, oldest first."""
        ...

    def month_of_row(self, row: int) -> str | None: ...

    def problems(self) -> list[str]:
        """Where the source is not what its names say (empty when sound)."""
        ...

    def pending_problems(self) -> list[str]:
        """Where the pending history lacks its provenance (empty when sound)."""
        ...

    # -- the data engineer's commands ----------------------------------------------------
    def reset(self, progress: ProgressFn | None = None) -> str:
        """Empties the source and makes sure the pending history exists; says what was done."""
        ...

    def bring_next_month(self, staged: _core.StagedMonth | None = None) -> SourceMonth | None:
        """The next pending month arrives (moved in from `staged` when that is it and the source
        did not change since it was staged); `None` when nothing is pending."""
        ...

    def stage_next_month(self) -> _core.StagedMonth | None:
        """The next pending month written ahead beside the source, not in it yet; `None` when
        nothing is pending or the source cannot stage (BigQuery loads a month in one job)."""
        ...

    # -- rows ----------------------------------------------------------------------------
    def read(self, first_row: int, row_count: int) -> pa.RecordBatchReader:
        """Rows `[first_row, first_row + row_count)` in `row_id` order."""
        ...

    def content_hash(self, first_row: int, row_count: int, like: str | None = None) -> str:
        """The lineage hash of a range (as a training run records it), in the scheme of the
        recorded hash `like` where the source has several (BigQuery's warehouse hash)."""
        ...

    def learn(self, first_row: int, row_count: int, holdout_start: int, challenger: _core.Model,
              production: _core.Model | None, frozen: _core.Model | None,
              horizons: Sequence[_core.Model] = ()) -> PassResult:
        """One lifecycle's pass over `[first_row, first_row + row_count)`, reading each row once
        (`_core.lifecycle_pass`): `challenger` (and each of `horizons`) ends trained on the whole
        range; the result holds the rows' ledger. The warehouse pass trains `challenger` only
        and keeps no ledger."""
        ...

    def ledger(self, first_row: int, row_count: int, feature_version: int) -> _core.Ledger | None:
        """The ledger of rows `[first_row, first_row + row_count)`, rebuilt from the rows
        (`check --deep`); `None` where the source cannot rebuild one."""
        ...


def open_source(settings: Settings, kind: SourceKind | None = None) -> DataSource:
    """The source `kind` names (default: `DATA_SOURCE`)."""
    if (kind or settings.data_source) == "bigquery":
        from taxifare_flow.data.bigquery import BigQuerySource

        return BigQuerySource(settings)
    from taxifare_flow.data.local import LocalSource

    return LocalSource(settings)
