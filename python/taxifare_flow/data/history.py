"""The pending ride history: months waiting to arrive, and where they come from.

`pending/manifest.json` records the provenance of the history (this module is its only
writer, always atomically, always last):

- `generated`: seed, span (first/last month), the rows-a-month setting, rows per month;
- `imported`: the CSV's name, path, size and SHA-256, rows read, rows per month, rows skipped
  by reason, malformed values kept as nulls by column.

Rules a data engineer can rely on:

- The months of the history are the manifest's months: a stray `YYYY-MM.parquet` is ignored.
- Months are generated only into a generated history: `ensure_history` never fills an
  imported history's gaps.
- A generated history whose manifest disagrees with the `HISTORY_*` settings is refused
  (naming the setting) by the commands that continue it; `reset_data_sources`, which empties
  the source anyway, regenerates it from the settings.
- A `pending/` holding month files but no manifest (written by an older version, or an import
  interrupted while replacing the history) is refused the same way: its origin is unknown.
- An import replaces a non-empty history only when asked (`replace=True`), and never under a
  local source that already holds months of the current history.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from taxifare_flow import _core
from taxifare_flow.settings import Settings

if TYPE_CHECKING:
    import pyarrow.parquet as pq

log = logging.getLogger(__name__)
NOISE_FLOOR_FILE = "noise_floor.csv"
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
#: The key-value metadata of a month file recording its rides' month (`schema::MONTH_METADATA_KEY`).
MONTH_METADATA_KEY = "taxifare.month"
#: `progress(done, total, rows)`: done/total in rows when generating, in bytes when importing.
ProgressFn = Callable[[int, int, int], None]


class HistoryError(_core.DataSourceError):
    """The pending history cannot be used or changed as asked; the message says what to do."""


@dataclass(frozen=True)
class Provenance:
    """Where the pending history comes from: the content of `pending/manifest.json`."""

    kind: str  # "generated" | "imported"
    months: dict[str, int]
    created: str = ""
    # generated
    seed: int | None = None
    first_month: str | None = None
    last_month: str | None = None
    rows_per_month: int | str | None = None  # the setting: a number or "kaggle"
    # imported
    file: str | None = None
    path: str | None = None
    bytes: int | None = None
    sha256: str | None = None
    rows_read: int | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    malformed_values: dict[str, int] = field(default_factory=dict)
    has_key: bool | None = None

    @property
    def rows(self) -> int:
        return sum(self.months.values())

    @property
    def identity(self) -> str:
        """What the rows are, as every training run records it (`history_id`): a generated
        history's seed, first month and rows a month (a month's rows depend on the seed, the
        month and the size; `row_id`s on the first month; a later last month continues the same
        rows), or an imported CSV's SHA-256."""
        if self.kind == "generated":
            return f"generated:seed={self.seed}:from={self.first_month}:rows={self.rows_per_month}"
        return f"imported:sha256={self.sha256}"

    def span(self) -> str:
        names = sorted(self.months)
        return f"{names[0]} … {names[-1]}" if names else "no months"

    def describe(self) -> list[str]:
        """One or two plain lines for `show_data_sources`."""
        n = len(self.months)
        if self.kind == "generated":
            size = "the Kaggle size" if self.rows_per_month == "kaggle" else f"{self.rows_per_month:,} rows a month"
            return [f"pending history: generated, seed {self.seed}, {size}: {self.rows:,} rows in {n} months ({self.span()})"]
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in sorted(self.skipped.items()) if v) or "none"
        malformed = sum(self.malformed_values.values())
        return [
            f"pending history: imported from {self.file} (sha256 {(self.sha256 or '')[:12]}…, {self.bytes or 0:,} bytes): "
            f"{self.rows:,} rows in {n} months ({self.span()})",
            f"  {self.rows_read or 0:,} rows read; {skipped:,} skipped ({reasons}); "
            f"{malformed:,} malformed values kept as nulls (cleaning drops their rows)",
        ]

    def to_json(self) -> dict[str, object]:
        keys = ("seed", "first_month", "last_month", "rows_per_month") if self.kind == "generated" else (
            "file", "path", "bytes", "sha256", "rows_read", "skipped", "malformed_values", "has_key")
        d = asdict(self)
        return {"manifest_version": MANIFEST_VERSION, "kind": self.kind, "created": self.created,
                **{k: d[k] for k in keys}, "months": dict(sorted(self.months.items()))}


def _month_files(pending_dir: Path) -> list[Path]:
    return sorted(pending_dir.glob("????-??.parquet")) if pending_dir.is_dir() else []


def read_manifest(pending_dir: Path) -> Provenance | None:
    """The manifest of `pending_dir`, `None` when there is none."""
    path = pending_dir / MANIFEST_FILE
    try:
        raw = json.loads(path.read_text())
        if raw.get("kind") not in ("generated", "imported") or not isinstance(raw.get("months"), dict):
            raise ValueError("no kind or months")
        fields = set(Provenance.__dataclass_fields__)
        return Provenance(**{k: v for k, v in raw.items() if k in fields})
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, AttributeError) as e:
        raise HistoryError(f"{path} is not a valid history manifest ({e}): import the history again "
                           "(`taxifare import_csv --replace FILE`) or regenerate it (`taxifare reset_data_sources`)") from None


def provenance(pending_dir: Path) -> Provenance | None:
    """The provenance of the pending history; `None` when there is no history at all. Month
    files without a manifest are refused: nobody can tell where they come from."""
    manifest = read_manifest(pending_dir)
    if manifest is None and (files := _month_files(pending_dir)):
        raise HistoryError(
            f"{pending_dir} holds {len(files)} month files but no {MANIFEST_FILE} (written by an older version, "
            "or an import interrupted while replacing the history), so its origin is unknown: regenerate it with "
            "`taxifare reset_data_sources` or import a CSV with `taxifare import_csv --replace FILE`"
        )
    return manifest


def history_months(pending_dir: Path) -> list[str]:
    """Months of the history, oldest first: the manifest's, nothing else."""
    p = provenance(pending_dir)
    return sorted(p.months) if p else []


def pending_problems(settings: Settings) -> list[str]:
    """Where the pending history is missing, lacks its provenance, or differs from it."""
    pending = settings.pending_dir
    try:
        p = provenance(pending)
    except HistoryError as e:
        return [str(e)]
    if p is None:
        return [f"{pending} holds no history: run reset_data_sources (or import_csv)"]
    problems = []
    if p.kind == "generated":
        problems += [f"{m}: the history no longer matches the settings (set it back, or regenerate it with "
                     "`taxifare reset_data_sources`)" for m in _setting_mismatches(p, settings)]
        if p.first_month and p.last_month:
            dropped = [m for m in _month_span(p.first_month, p.last_month) if m not in p.months]
            if dropped:
                problems.append(f"{pending / MANIFEST_FILE} lacks {len(dropped)} months of its span ({', '.join(dropped[:3])}"
                                f"{' …' if len(dropped) > 3 else ''}): they would never arrive; regenerate the history")
    strays = [f.stem for f in _month_files(pending) if f.stem not in p.months]
    if strays:
        problems.append(f"{pending} holds month files its manifest does not list ({', '.join(strays[:3])}"
                        f"{' …' if len(strays) > 3 else ''}; removed from {MANIFEST_FILE}?): they would never arrive")
    for month, rows in sorted(p.months.items()):
        problem = _month_file_problem(pending / f"{month}.parquet", rows, p.kind)
        if problem:
            problems.append(problem)
    return problems


def _month_span(first: str, last: str) -> list[str]:
    """`first` … `last` (YYYY-MM), every month."""
    y, m = map(int, first.split("-"))
    out = []
    while (month := f"{y:04d}-{m:02d}") <= last:
        out.append(month)
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _month_file_problem(path: Path, rows: int, kind: str) -> str | None:
    """What is wrong with a pending month file against its manifest entry (`None`: nothing)."""
    import pyarrow.parquet as pq

    if not path.is_file():
        return f"{path.name} of the {kind} history is missing from {path.parent}"
    try:
        meta = pq.read_metadata(path)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        return f"{path} is not a readable Parquet file ({e})"
    if meta.num_rows != rows:
        return f"{path} holds {meta.num_rows:,} rows but the manifest says {rows:,}"
    held = _months_held(meta)
    if held and held != {path.stem}:
        return (f"{path} holds the rides of {', '.join(sorted(held))}, not of {path.stem} (a month file copied or renamed): "
                "regenerate the history (`taxifare reset_data_sources`) or import it again")
    return None


def _months_held(meta: pq.FileMetaData) -> set[str]:
    """The months a pending file's rows are of, from its footer: the month recorded when it
    was written, else its pickup times' statistics (empty: it cannot tell)."""
    recorded = (meta.metadata or {}).get(MONTH_METADATA_KEY.encode())
    if recorded is not None:
        return {recorded.decode(errors="replace")}
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if "pickup_datetime" not in names:
        return set()
    col = names.index("pickup_datetime")
    held = set()
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(col).statistics
        if stats is None or not stats.has_min_max:
            return set()
        held |= {str(stats.min)[:7], str(stats.max)[:7]}
    return held


def _write_manifest(pending_dir: Path, p: Provenance) -> None:
    """Writes the manifest atomically (temporary file, fsync, rename, fsync of the folder)."""
    path = pending_dir / MANIFEST_FILE
    tmp = pending_dir / f".{MANIFEST_FILE}.tmp-{os.getpid()}"
    with tmp.open("w") as f:
        json.dump(p.to_json(), f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(pending_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _clear(pending_dir: Path) -> None:
    """Removes a history: the manifest first (a crash then leaves files without one, which is
    refused), then the month files, the noise floor and leftover temporaries."""
    (pending_dir / MANIFEST_FILE).unlink(missing_ok=True)
    for p in [*_month_files(pending_dir), pending_dir / NOISE_FLOOR_FILE, *pending_dir.glob(".*.tmp*")]:
        p.unlink(missing_ok=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _setting_mismatches(p: Provenance, s: Settings) -> list[str]:
    wanted = s.history_rows_per_month if s.history_rows_per_month is not None else "kaggle"
    pairs = [("HISTORY_SEED", s.history_seed, p.seed, "seed {}"),
             ("HISTORY_ROWS_PER_MONTH", wanted, p.rows_per_month, "{} rows a month"),
             ("HISTORY_FIRST_MONTH", s.history_first_month, p.first_month, "first month {}"),
             ("HISTORY_LAST_MONTH", s.history_last_month, p.last_month, "last month {}")]
    return [f"{name}={now} but pending/ was generated with {what.format(then)}" for name, now, then, what in pairs if now != then]


def ensure_history(settings: Settings, regenerate: bool = False, progress: ProgressFn | None = None) -> Provenance:
    """The pending history, generated from the settings when there is none.

    An imported history is returned as it is (never filled with generated months). A generated
    one must match the `HISTORY_*` settings; its missing month files are regenerated (the
    generator is deterministic). With `regenerate` (what `reset_data_sources` asks, as it
    empties the source anyway), a generated history that disagrees with the settings, or month
    files without a manifest, are replaced by a history generated from the settings; without
    it, they are refused with a `HistoryError` naming the setting and what to do.
    """
    pending = settings.pending_dir
    try:
        current = provenance(pending)
    except HistoryError:
        if not regenerate:
            raise
        log.warning("%s had month files but no manifest: regenerating the history from the settings", pending)
        _clear(pending)
        current = None
    if current is not None and current.kind == "imported":
        return current
    if current is not None:
        mismatches = _setting_mismatches(current, settings)
        if mismatches and not regenerate:
            raise HistoryError(f"{'; '.join(mismatches)}: set it back, or regenerate the history with "
                               "`taxifare reset_data_sources` (it empties the local source)")
        if mismatches:
            log.warning("%s: regenerating the history", "; ".join(mismatches))
            _clear(pending)
        else:
            # A truncated or damaged month file is regenerated (the generator is
            # deterministic) like a missing one; `reset_data_sources` would otherwise keep it.
            damaged = [m for m, rows in current.months.items()
                       if (pending / f"{m}.parquet").is_file() and _month_file_problem(pending / f"{m}.parquet", rows, current.kind)]
            for m in damaged:
                log.warning("%s is damaged: regenerating it", pending / f"{m}.parquet")
                (pending / f"{m}.parquet").unlink()
            if all((pending / f"{m}.parquet").is_file() for m in current.months):
                return current
    months = _core.generate_history(
        pending,
        seed=settings.history_seed,
        first_month=settings.history_first_month,
        last_month=settings.history_last_month,
        rows_per_month=settings.history_rows_per_month,
        keep_existing=True,
        progress=progress,
    )
    made = Provenance(
        kind="generated", months={m["month"]: m["rows"] for m in months}, created=_now(), seed=settings.history_seed,
        first_month=settings.history_first_month, last_month=settings.history_last_month,
        rows_per_month=settings.history_rows_per_month if settings.history_rows_per_month is not None else "kaggle",
    )
    _write_manifest(pending, made)
    return made


def _source_months(settings: Settings) -> int:
    src = settings.source_dir
    return len(_core.source_files(src)) if src.is_dir() else 0


def _remove_stale_imports(root: Path) -> None:
    """Removes staging folders left by imports that were killed (their process is gone)."""
    for d in root.glob(".pending-import-*"):
        pid = d.name.rsplit("-", 1)[-1]
        try:
            os.kill(int(pid), 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass


def _not_a_file(path: Path) -> str:
    """Why `path` cannot be imported, when it is not a regular file."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "no such file to import"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if stat.S_ISDIR(mode):
        return "is a folder, not a CSV file: name the train.csv inside it"
    kinds = [(stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device")]
    kind = next((name for test, name in kinds if test(mode)), "a special file")
    # The import reads the file with two readers at once (its SHA-256, its rows) and measures its size.
    return f"is {kind}, not a regular file: the import reads a file twice over and needs its size; copy the rows into a file first"


def import_csv(settings: Settings, csv_path: Path, replace: bool = False, progress: ProgressFn | None = None,
               batch_rows: int | None = None) -> Provenance:
    """Imports a Kaggle-format CSV as the pending history (one file per month) and records its
    provenance. Refuses, changing nothing, to replace a non-empty history unless `replace`,
    and to replace any history while the local source holds months of it. The CSV is split in
    a staging folder beside `pending/`; only a complete import replaces the history."""
    pending = settings.pending_dir
    csv_path = csv_path.resolve()
    if not csv_path.is_file():
        raise HistoryError(f"{csv_path}: {_not_a_file(csv_path)}")
    current = read_manifest(pending)
    existing = len(current.months) if current else len(_month_files(pending))
    if existing and not replace:
        kind = f"an {current.kind}" if current and current.kind == "imported" else ("a generated" if current else "a")
        raise HistoryError(f"{pending} already holds {kind} history of {existing} months: pass --replace "
                           "to replace it with this CSV")
    if arrived := _source_months(settings):
        raise HistoryError(f"the local source {settings.source_dir} holds {arrived} months of the current history: "
                           "empty it first (`taxifare reset_data_sources --fresh` also drops the runs trained on it), then import")
    settings.local_data_path.mkdir(parents=True, exist_ok=True)
    _remove_stale_imports(settings.local_data_path)
    staging = settings.local_data_path / f".pending-import-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        r = _core.import_kaggle_csv(csv_path, staging, batch_rows=batch_rows, progress=progress)
        made = Provenance(
            kind="imported", months=dict(r["months"]), created=_now(), file=csv_path.name, path=str(csv_path),
            bytes=r["bytes"], sha256=r["sha256"], rows_read=r["rows_read"], skipped=dict(r["skipped"]),
            malformed_values=dict(r["malformed_values"]), has_key=r["has_key"],
        )
        pending.mkdir(parents=True, exist_ok=True)
        _clear(pending)
        for f in staging.glob("????-??.parquet"):
            os.replace(f, pending / f.name)
        _write_manifest(pending, made)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("imported %s: %d rows in %d months", csv_path, made.rows, len(made.months))
    return made


def noise_floor(pending_dir: Path) -> dict[str, float]:
    """The generator's noise floor (MAE of the expected fare) per month, when known."""
    path = pending_dir / NOISE_FLOOR_FILE
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {row["month"]: float(row["noise_floor_mae"]) for row in csv.DictReader(f)}
