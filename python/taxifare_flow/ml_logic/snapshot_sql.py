"""The registry snapshot of a database store (SQLite, PostgreSQL) read by SQL: the experiment's
runs with their params, tags and latest metrics, and the registered model with its tags,
aliases and versions, as MLflow's own entities.

Why: MLflow's `search_runs` and `search_model_versions` build ORM objects row by row, and a
replay reads every run once a month, so their cost grew with the months (0.15 s of a 0.35 s
month at month 78 of a 10,000-ride replay, docs/architecture.md "The MLflow call budget");
the same rows read as plain tuples cost a tenth of that. The tables and columns are MLflow
3.17's (the version pinned; the Rust watermark reader checks the schema's revision the same
way), read in MLflow's default workspace. `tests/test_registry.py` checks this read against
MLflow's own, entity by entity. A tracking server over HTTP is read through the client.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion
    from sqlalchemy.engine import Engine

#: The SQLAlchemy schemes read by SQL (the stores this project tests).
SQL_SCHEMES = ("sqlite:", "postgresql:", "postgresql+", "postgres:")
#: MLflow's workspace when workspaces are off (every store this project makes).
WORKSPACE = "default"
#: A version MLflow keeps only internally after its deletion (its searches leave it out).
DELETED_INTERNAL = "Deleted_Internal"

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def reads_by_sql(uri: str) -> bool:
    """Whether a store's snapshot is read by SQL here (a database store in MLflow's default
    workspace) or through the client (a tracking server; MLflow's workspaces turned on, where
    the client knows which workspace it is in)."""
    from mlflow.environment_variables import MLFLOW_ENABLE_WORKSPACES

    return uri.startswith(SQL_SCHEMES) and not MLFLOW_ENABLE_WORKSPACES.get()  # type: ignore[no-untyped-call]


def _engine(uri: str) -> Engine:
    """One engine per store and process, made as MLflow makes its own (pool settings, TLS
    parameters in the URI). A SQLite file is opened anew for each read (a fraction of a
    millisecond): a pooled connection would go on reading a file replaced since."""
    from mlflow.store.db.utils import create_sqlalchemy_engine
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    with _engines_lock:
        engine = _engines.get(uri)
        if engine is None:
            engine = _engines[uri] = (
                create_engine(uri, poolclass=NullPool) if uri.startswith("sqlite:")
                else create_sqlalchemy_engine(uri)  # type: ignore[no-untyped-call]  # unannotated in mlflow
            )
        return engine


def _by_key(rows: Any) -> dict[Any, list[Any]]:
    grouped: dict[Any, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(row[1:])
    return grouped


def read_runs(uri: str, experiment_id: str) -> list[Run]:
    """Every run of the experiment, active and deleted, newest first (as `search_runs` with
    `ViewType.ALL` returns them)."""
    from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunTag
    from sqlalchemy import text

    exp = {"e": int(experiment_id)}
    with _engine(uri).connect() as conn:
        runs = conn.execute(text(
            "SELECT run_uuid, name, user_id, status, start_time, end_time, lifecycle_stage, artifact_uri "
            "FROM runs WHERE experiment_id = :e ORDER BY start_time DESC, run_uuid"), exp).all()
        of_exp = "JOIN runs r ON r.run_uuid = x.run_uuid WHERE r.experiment_id = :e"
        params = _by_key(conn.execute(text(f"SELECT x.run_uuid, x.key, x.value FROM params x {of_exp}"), exp))
        tags = _by_key(conn.execute(text(f"SELECT x.run_uuid, x.key, x.value FROM tags x {of_exp}"), exp))
        metrics = _by_key(conn.execute(text(
            f"SELECT x.run_uuid, x.key, x.value, x.timestamp, x.step, x.is_nan FROM latest_metrics x {of_exp}"), exp))
    found = []
    for run_id, name, user, status, start, end, stage, artifact_uri in runs:
        run_tags = [RunTag(k, v) for k, v in tags.get(run_id, [])]
        info = RunInfo(run_id=run_id, experiment_id=str(experiment_id), user_id=user, status=status, start_time=start,
                       end_time=end, lifecycle_stage=stage, artifact_uri=artifact_uri,
                       run_name=name or next((t.value for t in run_tags if t.key == "mlflow.runName"), None))
        data = RunData(
            metrics=[Metric(k, math.nan if nan else v, ts, step) for k, v, ts, step, nan in metrics.get(run_id, [])],
            params=[Param(k, v) for k, v in params.get(run_id, [])],
            tags=run_tags,
        )
        found.append(Run(run_info=info, run_data=data))
    return found


def read_model(uri: str, name: str) -> tuple[dict[str, str], dict[str, str], list[ModelVersion]] | None:
    """(tags, alias → version, versions oldest first) of the registered model; `None` when it
    does not exist."""
    from mlflow.entities.model_registry import ModelVersion, ModelVersionTag
    from sqlalchemy import text

    key = {"n": name, "w": WORKSPACE}
    with _engine(uri).connect() as conn:
        if conn.execute(text("SELECT 1 FROM registered_models WHERE name = :n AND workspace = :w"), key).first() is None:
            return None
        tags = {k: v for k, v in conn.execute(text(
            "SELECT key, value FROM registered_model_tags WHERE name = :n AND workspace = :w"), key)}
        aliases = {a: str(v) for a, v in conn.execute(text(
            "SELECT alias, version FROM registered_model_aliases WHERE name = :n AND workspace = :w"), key)}
        version_tags = _by_key(conn.execute(text(
            "SELECT version, key, value FROM model_version_tags WHERE name = :n AND workspace = :w"), key))
        rows = conn.execute(text(
            "SELECT version, creation_time, last_updated_time, description, user_id, current_stage, source, run_id, "
            "status, status_message, run_link FROM model_versions WHERE name = :n AND workspace = :w "
            "AND current_stage != :deleted ORDER BY version"), {**key, "deleted": DELETED_INTERNAL}).all()
    versions = [
        ModelVersion(name, version, created, updated, description, user, stage, source, run_id, status, message,
                     [ModelVersionTag(k, v) for k, v in version_tags.get(version, [])],  # type: ignore[no-untyped-call]
                     run_link, [])
        for version, created, updated, description, user, stage, source, run_id, status, message, run_link in rows
    ]
    return tags, aliases, versions
