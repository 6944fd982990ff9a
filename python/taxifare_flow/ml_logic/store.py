"""A SQLite MLflow store is created whole or not at all.

MLflow migrates a new SQLite file in place: a full disk or a kill part-way leaves a file that
every later command trips over ("table spans already exists") while the watermark reads 0.
Here the migration runs on a hidden temporary file, which is then linked into place (a link,
not a rename: a store another process created meanwhile is never replaced).
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from taxifare_flow.errors import TrackingStoreError
from taxifare_flow.liveness import process_alive
from taxifare_flow.settings import Settings, with_tls_params

log = logging.getLogger(__name__)


def no_space(e: BaseException) -> bool:
    """Whether `e`, or an error it came from, is a full disk (ENOSPC, SQLite's "disk is full")."""
    seen: BaseException | None = e
    while seen is not None:
        if getattr(seen, "errno", None) == errno.ENOSPC or "disk is full" in str(seen) or "No space left" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _remove_dead_temporaries(path: Path) -> None:
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if not (pid.isdigit() and process_alive(int(pid))):
            tmp.unlink(missing_ok=True)


def _read_schema(path: Path, mode: str) -> tuple[int, str | None]:
    conn = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, timeout=10)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "alembic_version" not in tables:
            return len(tables), None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return len(tables), row[0] if row else None
    finally:
        conn.close()


def _hot_journal(e: sqlite3.Error) -> bool:
    return getattr(e, "sqlite_errorcode", None) == getattr(sqlite3, "SQLITE_READONLY_ROLLBACK", 776)


def _schema_version(path: Path) -> tuple[int, str | None]:
    """(tables, alembic revision) of a SQLite file, read-only; a hot journal (a writer killed
    mid-transaction) is rolled back first, as the Rust reader does: a read-only connection
    cannot, and would take the store for something else."""
    try:
        try:
            return _read_schema(path, "ro")
        except sqlite3.OperationalError as e:
            if not _hot_journal(e):
                raise
        # Only a connection that may write rolls the journal back to the last commit (what
        # MLflow's next connection would do anyway); the reads are the same.
        log.warning("%s has the rollback journal of a writer that was stopped mid-transaction: rolled back to its "
                    "last commit", path)
        return _read_schema(path, "rw")
    except sqlite3.DatabaseError as e:
        if _hot_journal(e) or isinstance(e, sqlite3.OperationalError):
            raise TrackingStoreError(f"the MLflow store {path} cannot be read ({e}): check its permissions and "
                                     f"that {path.name}-journal beside it can be written") from None
        raise TrackingStoreError(f"{path} is not a SQLite MLflow store ({e}): point MLFLOW_TRACKING_URI elsewhere") from None


#: SQLite files whose connections do not sync each commit (`unsynced`), resolved paths.
_unsynced_files: set[str] = set()
_checkout_listener: list[object] = []


def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    """Each SQLite connection MLflow takes from its pool syncs its commits or not, as
    `unsynced` says for its file at that moment (a pooled connection outlives a replay)."""
    if not isinstance(dbapi_conn, sqlite3.Connection):
        return
    info = record.info
    if "taxifare_main" not in info:
        info["taxifare_main"] = next((str(Path(row[2]).resolve()) for row in dbapi_conn.execute("PRAGMA database_list")
                                      if row[1] == "main" and row[2]), "")
    off = info["taxifare_main"] in _unsynced_files
    if off and "taxifare_synchronous" not in info:
        info["taxifare_synchronous"] = dbapi_conn.execute("PRAGMA synchronous").fetchone()[0]
        dbapi_conn.execute("PRAGMA synchronous = OFF")
    elif not off and "taxifare_synchronous" in info:
        dbapi_conn.execute(f"PRAGMA synchronous = {int(info.pop('taxifare_synchronous'))}")


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def unsynced(path: Path) -> Iterator[None]:
    """Inside the block, this process's SQLite connections to `path` do not sync each commit
    (`PRAGMA synchronous = OFF`); the file is synced when the block ends. A killed process
    loses nothing (the operating system holds every write); a power loss or a kernel crash
    inside the block may leave the file damaged. For a store being created (nothing sees it
    before it is linked into place) and for a replay's months (`prefect_flow.replay` syncs the
    store at the end of each month): a sync a commit is ~15 ms here and a month commits ~14
    times, half a 10,000-row lifecycle; MLflow's migration of a new store commits ~60 times."""
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    if not _checkout_listener:
        event.listen(Pool, "checkout", _on_checkout)
        _checkout_listener.append(_on_checkout)
    key = str(path.resolve())
    nested = key in _unsynced_files
    _unsynced_files.add(key)
    try:
        yield
    finally:
        if not nested:
            _unsynced_files.discard(key)
            if path.exists():
                fsync_file(path)


def sqlite_store_path(settings: Settings) -> Path | None:
    """The file of an embedded SQLite store, `None` for another store."""
    uri = settings.mlflow_tracking_uri
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def ensure_sqlite_store(path: Path, artifact_root: str) -> None:
    """Creates the store at `path` if there is none; refuses a half-created one."""
    if path.exists() and path.stat().st_size > 0:
        tables, revision = _schema_version(path)
        if revision is None:
            raise TrackingStoreError(
                f"{path} is a half-created MLflow store ({tables} tables but no schema version: its creation was "
                "interrupted, e.g. by a full disk); it holds no runs: delete it (or run reset_data_sources --fresh) and retry"
            )
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_dead_temporaries(path)
        # An empty file is what an interrupted `sqlite3.connect` leaves: nothing to keep.
        if path.exists():
            path.unlink()
    except OSError as e:
        raise TrackingStoreError(f"cannot create the MLflow store {path}: {e.strerror or e}") from None
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        from taxifare_flow.ml_logic import store_template

        if store_template.seed(tmp, artifact_root):
            fsync_file(tmp)
        else:
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            # Synced whole when the block ends, before its name appears.
            with unsynced(tmp):
                store = SqlAlchemyStore(f"sqlite:///{tmp}", artifact_root)  # type: ignore[no-untyped-call]  # unannotated in mlflow
                store.engine.dispose()
            store_template.keep(tmp)
        try:
            os.link(tmp, path)
        except FileExistsError:
            log.info("another process created %s meanwhile: keeping it", path)
    except Exception as e:
        if no_space(e):
            raise TrackingStoreError(
                f"no space left on the device of {path} while creating the MLflow store: free some space and retry "
                "(nothing was created)"
            ) from None
        raise TrackingStoreError(f"cannot create the MLflow store {path}: {str(e).splitlines()[0]}") from None
    finally:
        for leftover in tmp.parent.glob(f"{tmp.name}*"):  # the file and its journal
            leftover.unlink(missing_ok=True)
    log.info("created the MLflow store %s", path)


def probe_tracking_db(settings: Settings) -> None:
    """The tracking DB through the Rust reader: an unreachable server, a refused password, TLS
    refused or a file that is no MLflow store is a typed error in seconds, where SQLAlchemy
    under MLflow retries for minutes and libpq under the lock says it its own way. A database
    without MLflow's tables is fine: MLflow creates them."""
    from taxifare_flow import _core
    from taxifare_flow._core import NotAnMlflowStoreError
    from taxifare_flow.ml_logic.watermark import get_latest_trained_row

    if not settings.mlflow_tracking_db:
        return
    try:
        get_latest_trained_row(settings=settings)
    except NotAnMlflowStoreError:
        pass
    uri = settings.mlflow_tracking_uri
    if uri.startswith(("postgresql://", "postgres://", "postgresql+")):
        # MLflow's own DSN, when MLFLOW_DB_* name another for the watermark: a wrong password,
        # port or database there would cost minutes of SQLAlchemy retries and its logs.
        dsn = with_tls_params("postgresql://" + uri.split("://", 1)[1], settings.mlflow_db_sslmode,
                              settings.mlflow_db_sslrootcert)
        if dsn != settings.mlflow_tracking_db:
            try:
                _core.get_latest_trained_row(dsn, settings.mlflow_experiment)
            except NotAnMlflowStoreError:
                pass


def ready_store(settings: Settings) -> None:
    """The store can be used: a SQLite store exists whole (created now if missing), and the
    tracking DB answers."""
    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        ensure_sqlite_store(Path(uri.removeprefix("sqlite:///")), settings.artifact_location)
    elif uri.startswith(("http://", "https://")):
        _server_answers(uri)
    probe_tracking_db(settings)


def _server_answers(uri: str) -> None:
    """A tracking server answers its health check in seconds, where MLflow's client retries
    for minutes before it gives up."""
    from taxifare_flow._core import mask_dsn
    from taxifare_flow.health import why_unhealthy

    why = why_unhealthy(uri)
    if why is not None:
        raise TrackingStoreError(f"the MLflow tracking server {mask_dsn(uri)} {mask_dsn(why)}: start it, or check "
                                 "MLFLOW_TRACKING_URI")
