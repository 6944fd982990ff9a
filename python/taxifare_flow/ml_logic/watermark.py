"""`get_latest_trained_row`: the first row the model has not seen, from MLflow's own DB.

This module never imports mlflow: the `taxifare watermark` command answers in milliseconds.
"""

from __future__ import annotations

from taxifare_flow import _core
from taxifare_flow.errors import SettingsError
from taxifare_flow.settings import Settings, load_settings


def tracking_db(settings: Settings) -> str:
    """The DSN of the tracking database (PostgreSQL or SQLite)."""
    if not settings.mlflow_tracking_db:
        raise SettingsError(
            f"MLFLOW_TRACKING_URI={_core.mask_dsn(settings.mlflow_tracking_uri)!r} is a tracking server: set "
            "MLFLOW_TRACKING_DB (or the MLFLOW_DB_* parts) to its database so the watermark can be read"
        )
    return settings.mlflow_tracking_db


def get_latest_trained_row(experiment: str | None = None, settings: Settings | None = None) -> int:
    """`first_row + row_count` of the latest finished training run of `experiment` (default:
    `MLFLOW_EXPERIMENT`), or 0 when nothing was trained — including when the embedded SQLite
    store has not been created yet."""
    s = settings if settings is not None else load_settings()
    db = tracking_db(s)
    path = s.sqlite_path()
    if path is not None and not path.exists():
        return 0
    return _core.get_latest_trained_row(db, experiment if experiment is not None else s.mlflow_experiment)
