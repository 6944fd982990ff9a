"""A migrated, empty MLflow store, kept once per MLflow version.

MLflow creates a new SQLite store by running its ~60 schema migrations: about a second of CPU
on a quiet 2-core machine, paid by every new store (each project's first run, each test). The
first store this machine creates leaves a copy under the user's cache; a new store starts from
that copy, and only what a creation writes that depends on the store is written again: the
default experiment's artifact location (under the store's artifact root) and its times.
`tests/test_store.py` checks a store made so against one MLflow made, table by table. Skipped
when MLflow's workspaces are on (a store's default rows then depend on more than its path).
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from taxifare_flow import migrated_copies

log = logging.getLogger(__name__)

_DB = "mlflow.db"
#: MLflow's default experiment, the one row a creation writes that depends on the store.
DEFAULT_EXPERIMENT_ID = 0


def _template() -> Path | None:
    """The template's path for the installed MLflow (`None`: no MLflow, or workspaces on)."""
    from mlflow.environment_variables import MLFLOW_ENABLE_WORKSPACES

    if MLFLOW_ENABLE_WORKSPACES.get():  # type: ignore[no-untyped-call]  # unannotated in mlflow
        return None
    return migrated_copies.copy_path("mlflow-db", "mlflow", _DB)


def default_artifact_location(artifact_root: str) -> str:
    """Where MLflow puts the default experiment's artifacts in a store with this root."""
    from mlflow.utils.uri import append_to_uri_path, resolve_uri_if_local

    root = resolve_uri_if_local(artifact_root)  # type: ignore[no-untyped-call]  # unannotated in mlflow
    return str(append_to_uri_path(root, str(DEFAULT_EXPERIMENT_ID)))  # type: ignore[no-untyped-call]


def seed(target: Path, artifact_root: str) -> bool:
    """Writes a new store at `target` (a file that does not exist yet) from the template; True
    if it did. The caller syncs and links it into place, as a store MLflow creates."""
    template = _template()
    if template is None or not template.is_file():
        return False
    try:
        shutil.copyfile(template, target)
        now = int(time.time() * 1000)
        with closing(sqlite3.connect(target)) as db, db:
            updated = db.execute(
                "UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                "WHERE experiment_id = ?", (default_artifact_location(artifact_root), now, now, DEFAULT_EXPERIMENT_ID),
            ).rowcount
        if updated != 1:
            raise sqlite3.DatabaseError("the template has no default experiment")
    except (OSError, sqlite3.Error) as e:  # a cache that cannot be read: MLflow creates the store
        log.debug("MLflow store template not used: %s", e)
        target.unlink(missing_ok=True)
        if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError):
            # A damaged template (not a full disk): the store MLflow makes now replaces it.
            template.unlink(missing_ok=True)
        return False
    return True


def keep(created: Path) -> None:
    """After MLflow created a new store at `created` (nothing else written to it yet): keeps a
    copy as the template (a no-op when one exists)."""
    template = _template()
    if template is not None:
        migrated_copies.keep(created, template)
