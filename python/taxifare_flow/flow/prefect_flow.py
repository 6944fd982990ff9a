"""The lifecycle as a Prefect 3 flow: each step a task, visible in Prefect. Reports to the
server named by `PREFECT_API_URL`; without one, to a local API this process starts (its state
under `PREFECT_HOME`, see `prefect_server`)."""

from __future__ import annotations

import os
from typing import Any

from taxifare_flow.settings import Settings


def configure_prefect(settings: Settings) -> None:
    """Prefect reads its settings at import: set them first (the user's environment wins)."""
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(settings.prefect_home))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", settings.prefect_log_level)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "taxifare_flow")


def run_flow(settings: Settings) -> Any:
    """Runs one lifecycle as a Prefect flow named `PREFECT_FLOW_NAME`; returns its `Outcome`.
    The lifecycle lock is taken before any Prefect server starts."""
    configure_prefect(settings)
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from taxifare_flow.flow.lifecycle import lifecycle
    from taxifare_flow.flow.lock import lifecycle_lock
    from taxifare_flow.flow.prefect_server import local_api_url
    from taxifare_flow.ml_logic.watermark import get_latest_trained_row

    def as_task(fn: Any, name: str) -> Any:
        # Models are not hashable inputs and results stay in memory: no cache, no persistence.
        return task(fn, name=name, cache_policy=NO_CACHE, persist_result=False)

    @flow(name=settings.prefect_flow_name, persist_result=False, log_prints=False)
    def taxifare_lifecycle() -> Any:
        return lifecycle(settings, as_task, lock=False)

    with lifecycle_lock(settings):
        # The tracking DB answers (reachable, credentials, TLS, an MLflow store) before a Prefect
        # server starts: a wrong setting fails in milliseconds, as one line.
        get_latest_trained_row(settings=settings)
        api = PREFECT_API_URL.value() or local_api_url(settings.prefect_home, settings.prefect_server_ephemeral_startup_timeout_seconds)
        with temporary_settings({PREFECT_API_URL: api}):
            return taxifare_lifecycle()
