"""The local data source: one file per arrived month under `LOCAL_DATA_PATH/source`.

The Rust core decides which files and row groups hold which `row_id`s; this module only
orchestrates the data-engineer commands around it.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from taxifare_flow import _core
from taxifare_flow.data import SourceMonth
from taxifare_flow.data.history import ProgressFn, ensure_history, history_months, pending_file, pending_problems
from taxifare_flow.liveness import process_alive
from taxifare_flow.settings import Settings

if TYPE_CHECKING:
    import pyarrow as pa

    from taxifare_flow.core_types import MonthFile, PassResult

log = logging.getLogger(__name__)


#: Free disk space kept beyond twice the month when staging one (`stage_next_month`).
_STAGING_HEADROOM = 256 * 2**20


def _remove_dead_staged(source: Path) -> None:
    """Removes months staged by processes that are gone (a killed replay): `.staged-MONTH-PID.*`.
    Every arrival and staging sweeps them."""
    if not source.is_dir():
        return
    for path in source.glob(".staged-*"):
        pid = path.stem.rsplit("-", 1)[-1]
        if pid.isdigit() and not process_alive(int(pid)):
            path.unlink(missing_ok=True)


def _month(f: MonthFile) -> SourceMonth:
    return SourceMonth(f["month"], f["first_row"], f["end_row"], f["bytes"])


class LocalSource:
    """Parquet (or CSV) month files with contiguous `row_id`s."""

    name = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.source_dir

    def where(self) -> str:
        return str(self.dir)

    # -- state ---------------------------------------------------------------------------
    def months(self) -> list[SourceMonth]:
        """Months in the source, by `row_id` (gaps and overlaps raise `DataSourceError`)."""
        if not self.dir.is_dir():
            return []
        return [_month(f) for f in _core.source_files(self.dir)]

    def pending(self) -> list[str]:
        """Months of the pending history (its manifest's months, nothing else) that have not
        arrived, oldest first: what `bring_next_month` will bring, in order."""
        arrived = self.months()
        newest = arrived[-1].month if arrived else ""
        present = {m.month for m in arrived}
        return [m for m in history_months(self.settings.pending_dir) if m not in present and m > newest]

    def row_count(self) -> int:
        return _core.row_count(self.dir) if self.dir.is_dir() else 0

    def problems(self) -> list[str]:
        """Everything wrong with the source, one sentence each naming the file (empty: sound).
        Cheap: file names, Parquet footers, a CSV file's first and last rows."""
        return _core.source_problems(self.dir)

    def pending_problems(self) -> list[str]:
        return pending_problems(self.settings)

    def month_of_row(self, row: int) -> str | None:
        for m in self.months():
            if m.first_row <= row < m.end_row:
                return m.month
        return None

    # -- data-engineer commands -----------------------------------------------------------
    def reset(self, progress: ProgressFn | None = None) -> str:
        """Empties the source (its month files and leftover temporaries only) and makes sure the
        pending history exists: an imported one is kept, a generated one is regenerated when it
        disagrees with the settings (nothing depends on it once the source is empty)."""
        removed = 0
        if self.dir.is_dir():
            for p in self.dir.iterdir():
                if p.is_file() and (p.suffix in (".parquet", ".csv") or p.name.startswith(".")):
                    p.unlink()
                    removed += 1
        self.dir.mkdir(parents=True, exist_ok=True)
        ensure_history(self.settings, regenerate=True, progress=progress)
        return f"{self.dir} emptied ({removed} files removed)"

    def bring_next_month(self, staged: _core.StagedMonth | None = None) -> SourceMonth | None:
        """Moves the next pending month into the source; `None` when nothing is pending. The
        core refuses (`DataSourceError` naming the file, nothing changed) when the source is
        unsound: see `problems`. `staged` (`stage_next_month`) is moved in when it is that
        month and the source has not changed since it was written; else it is removed and the
        month is written now."""
        f = None
        try:
            _remove_dead_staged(self.dir)
            pending = self.pending()
            month = pending[0] if pending else None
            if staged is not None and month is not None and staged.month == month:
                try:
                    f = staged.publish()
                except _core.DataSourceError as e:
                    # The month is written now instead, and that write reports what is wrong.
                    log.debug("the staged month %s was not moved in: %s", month, e)
        finally:
            if staged is not None:
                staged.discard()  # a no-op once published
        if month is None:
            return None
        if f is None:
            f = _core.append_month(
                pending_file(self.settings.pending_dir, month), month, self.dir, self.settings.source_format
            )
        log.info("month %s arrived: rows %d..%d", month, f["first_row"], f["end_row"])
        return _month(f)

    def stage_next_month(self) -> _core.StagedMonth | None:
        pending = self.pending()
        if not pending:
            return None
        path = pending_file(self.settings.pending_dir, pending[0])
        _remove_dead_staged(self.dir)
        # Staged beside the model that the current month is saving: never with the last of the
        # disk, where it would make that save fail instead of the next month's arrival.
        if shutil.disk_usage(self.dir).free < 2 * path.stat().st_size + _STAGING_HEADROOM:
            return None
        return _core.stage_month(path, pending[0], self.dir, self.settings.source_format)

    # -- rows, read in Rust ----------------------------------------------------------------
    def read(self, first_row: int, row_count: int | None = None, batch_rows: int = _core.BATCH_ROWS) -> pa.RecordBatchReader:
        """Rows `[first_row, first_row + row_count)` as a `pyarrow.RecordBatchReader`."""
        return _core.read_rows(self.dir, first_row, row_count, batch_rows)

    def content_hash(self, first_row: int, row_count: int, like: str | None = None) -> str:
        return _core.hash_source_rows(self.dir, first_row, row_count)

    def learn(self, first_row: int, row_count: int, holdout_start: int, challenger: _core.Model,
              production: _core.Model | None, frozen: _core.Model | None,
              horizons: Sequence[_core.Model] = ()) -> PassResult:
        return _core.lifecycle_pass_source(self.dir, first_row, row_count, holdout_start, challenger, production, frozen,
                                           list(horizons))

    def ledger(self, first_row: int, row_count: int, feature_version: int) -> _core.Ledger | None:
        return _core.Ledger.of_source(self.dir, first_row, row_count, feature_version)
