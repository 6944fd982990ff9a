"""The lifecycle lock: two lifecycle runs never train the same rows.

PostgreSQL tracking DB → a session-level advisory lock keyed by the experiment; otherwise an
exclusive `flock` on a file beside the embedded store. The second run waits up to
`LOCK_TIMEOUT_SECONDS`, then gives up with `LockTimeout`.

An advisory lock lives as long as its connection: keepalives notice a dropped one, and
`assert_lock_held` asks before a run is marked FINISHED, so a lifecycle that lost its lock
(an idle cut, a laptop asleep) fails instead of training rows another lifecycle took.
"""

from __future__ import annotations

import fcntl
import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from taxifare_flow import _core
from taxifare_flow.errors import LockLost, LockTimeout, TrackingStoreError
from taxifare_flow.settings import Settings

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

__all__ = ["LockTimeout", "assert_lock_held", "lifecycle_lock"]

#: Checks of the locks this process holds (a PostgreSQL session must still be alive).
_held: list[Callable[[], None]] = []


def assert_lock_held() -> None:
    """Raises `LockLost` if a lifecycle lock this process holds was lost meanwhile."""
    for check in _held:
        check()


def _key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"taxifare-flow:{name}".encode()).digest()[:8], "big", signed=True)


def _try_advisory_lock(conn: psycopg.Connection[TupleRow], key: int) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    return row is not None and bool(row[0])


@contextmanager
def lifecycle_lock(settings: Settings, poll_seconds: float = 0.2, timeout_seconds: float | None = None) -> Iterator[None]:
    wait = settings.lock_timeout_seconds if timeout_seconds is None else timeout_seconds
    deadline = time.monotonic() + wait
    db = settings.mlflow_tracking_db
    if db.startswith(("postgresql://", "postgres://")):
        import psycopg

        from taxifare_flow.ml_logic.store import probe_tracking_db

        probe_tracking_db(settings)  # its typed error, rather than libpq's words
        try:
            conn = psycopg.connect(db, autocommit=True, connect_timeout=5, keepalives=1, keepalives_idle=30,
                                   keepalives_interval=10, keepalives_count=3)
        except psycopg.OperationalError as e:
            cause = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise TrackingStoreError(f"cannot take the lifecycle lock on {_core.mask_dsn(db)}: {_core.mask_dsn(cause)}") from None
        with conn:
            key = _key(settings.mlflow_experiment)
            while not _try_advisory_lock(conn, key):
                if time.monotonic() > deadline:
                    raise LockTimeout(f"another lifecycle run holds the advisory lock on {_core.mask_dsn(db)}")
                time.sleep(poll_seconds)

            def alive() -> None:
                try:
                    conn.execute("SELECT 1")
                except psycopg.Error:
                    raise LockLost(f"the connection holding the advisory lock on {_core.mask_dsn(db)} was lost: "
                                   "another lifecycle may have taken it; nothing was finished, rerun") from None

            _held.append(alive)
            try:
                yield
            finally:
                _held.remove(alive)
                try:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                except psycopg.Error:  # the session is gone, and its lock with it
                    pass
        return
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    path = settings.mlflow_dir / f"lifecycle-{_key(settings.mlflow_experiment) & 0xFFFFFFFF:08x}.lock"
    with path.open("a") as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockTimeout(f"another lifecycle run holds {path}") from None
                time.sleep(poll_seconds)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
