"""Migrated, empty SQLite databases kept in the user's cache, one per version of the package
that migrates them (Prefect's server database, MLflow's store): a new database starts from a
copy instead of running every migration again (`flow/prefect_db_template.py`,
`ml_logic/store_template.py`)."""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
from contextlib import closing
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

log = logging.getLogger(__name__)


def copy_path(kind: str, package: str, name: str) -> Path | None:
    """Where the copy of `kind` migrated by the installed `package` is kept
    (`$XDG_CACHE_HOME/taxifare-flow/KIND/VERSION/NAME`); `None` when `package` is not installed."""
    try:
        package_version = version(package)
    except PackageNotFoundError:
        return None
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "taxifare-flow" / kind / package_version / name


def keep(source: Path, copy: Path) -> None:
    """Keeps a copy of the database `source` at `copy` unless one is there. SQLite's backup
    copies a consistent state, even of a database in use; the copy appears whole or not at all."""
    if copy.exists() or not source.is_file():
        return
    try:
        copy.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=copy.parent, prefix=f".{copy.name}.")
        os.close(fd)
        try:
            with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(tmp)) as dst:
                src.backup(dst)
            os.replace(tmp, copy)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except (OSError, sqlite3.Error) as e:  # no copy: the next new database is migrated
        log.debug("migrated copy %s not kept: %s", copy, e)
