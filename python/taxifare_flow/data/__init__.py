"""Data sources: the local Parquet/CSV source (default) and BigQuery."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from taxifare_flow import _core
    from taxifare_flow.core_types import CleaningCounts, Evaluation
    from taxifare_flow.settings import Settings


class DataSource(Protocol):
    """What the lifecycle needs of a data source: row counts, month names, and the kernel
    fed with a `row_id` range."""

    name: str

    def row_count(self) -> int: ...

    def pending(self) -> list[str]:
        """Months of the history not yet in the source, oldest first."""
        ...

    def month_of_row(self, row: int) -> str | None: ...

    def fit(self, model: _core.Model, first_row: int, row_count: int) -> CleaningCounts: ...

    def evaluate(self, model: _core.Model, first_row: int, row_count: int, return_errors: bool = False) -> Evaluation: ...

    def content_hash(self, first_row: int, row_count: int) -> str: ...

    def problems(self) -> list[str]:
        """Where the source is not what its names say (empty when sound)."""
        ...

    def pending_problems(self) -> list[str]:
        """Where the pending history lacks its provenance (empty when sound)."""
        ...


def open_source(settings: Settings) -> DataSource:
    """The data source the settings name."""
    if settings.data_source == "bigquery":
        from taxifare_flow.data.bigquery import BigQuerySource

        return BigQuerySource(settings)
    from taxifare_flow.data.local import LocalSource

    return LocalSource(settings)
