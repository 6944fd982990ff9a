"""The lifecycle as a Prefect 3 flow: each step a task, visible in Prefect. Runs locally in
ephemeral mode (no server to configure), with its state under `PREFECT_HOME`."""

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
    """Runs one lifecycle as a Prefect flow named `PREFECT_FLOW_NAME`; returns its `Outcome`."""
    configure_prefect(settings)
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    from taxifare_flow.flow.lifecycle import lifecycle

    def as_task(fn: Any, name: str) -> Any:
        # Models are not hashable inputs and results stay in memory: no cache, no persistence.
        return task(fn, name=name, cache_policy=NO_CACHE, persist_result=False)

    @flow(name=settings.prefect_flow_name, persist_result=False, log_prints=False)
    def taxifare_lifecycle() -> Any:
        return lifecycle(settings, as_task)

    return taxifare_lifecycle()
