"""The lifecycle as a Prefect 3 flow: each step a task, visible in Prefect. Without
`PREFECT_API_URL` it runs in ephemeral mode (no server to configure), with its state under
`PREFECT_HOME`; with it, flow and task runs report to that Prefect server."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from taxifare_flow.settings import Settings


def _default(name: str, value: str) -> None:
    # An empty variable counts as unset (`.env.sample` lists them empty, and direnv's `dotenv`
    # exports them so): Prefect would take `PREFECT_HOME=` for the current directory.
    if not os.environ.get(name):
        os.environ[name] = value


def configure_prefect(settings: Settings) -> None:
    """Prefect reads its settings at import: set them first (the user's environment wins)."""
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    _default("PREFECT_HOME", str(settings.prefect_home))
    _default("PREFECT_LOGGING_LEVEL", settings.prefect_log_level)
    _default("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    _default("PREFECT_LOGGING_EXTRA_LOGGERS", "taxifare_flow")
    if settings.prefect_api_url:
        # The settings already let the environment win over `.env`; this also covers a value
        # that came from a `.env` somewhere other than the working directory.
        os.environ["PREFECT_API_URL"] = settings.prefect_api_url
    elif "PREFECT_API_URL" in os.environ:
        del os.environ["PREFECT_API_URL"]


@contextlib.contextmanager
def _prefect_api(settings: Settings) -> Iterator[None]:
    """No `PREFECT_API_URL` means ephemeral mode. Prefect reads `./.env` itself and takes an
    empty `PREFECT_API_URL=` there for a server at '' (its events then fail on every task):
    restore Prefect's own default (none) for the duration of the flow."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # Only an empty value is replaced: a test harness sets its own server in Prefect's context.
    if settings.prefect_api_url or PREFECT_API_URL.value() != "":
        yield
        return
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        yield


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

    with _prefect_api(settings):
        return taxifare_lifecycle()
