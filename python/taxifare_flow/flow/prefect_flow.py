"""The lifecycle as a Prefect 3 flow: each step a task, visible in Prefect. With
`PREFECT_API_URL`, flow and task runs report to that Prefect server; without it, to a local
Prefect API this process starts (its state under `PREFECT_HOME`, see `prefect_server`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from taxifare_flow.errors import PrefectServerError
from taxifare_flow.settings import Settings

if TYPE_CHECKING:
    from taxifare_flow.flow.lifecycle import Outcome

P = ParamSpec("P")
R = TypeVar("R")


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


def server_answers(api: str) -> None:
    """A configured Prefect server answers before the flow starts (else Prefect's own retries
    and tracebacks)."""
    from taxifare_flow._core import mask_dsn
    from taxifare_flow.health import why_unhealthy

    why = why_unhealthy(api)
    if why is not None:
        raise PrefectServerError(f"the Prefect server at {mask_dsn(api)} {mask_dsn(why)}: start it, or unset "
                                 "PREFECT_API_URL for a local one")


def as_task(fn: Callable[P, R], name: str) -> Callable[P, R]:
    """A lifecycle step as a Prefect task (after `configure_prefect`)."""
    import functools

    from prefect import task
    from prefect.cache_policies import NO_CACHE
    from prefect.utilities.annotations import quote

    # Models are not hashable inputs and results stay in memory: no cache, no persistence.
    prefect_task = task(name=name, cache_policy=NO_CACHE, persist_result=False)(fn)

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        # Quoted: Prefect would otherwise walk every argument (the lifecycle's context holds the
        # registry's snapshot, models, the pass's arrays) looking for futures, which cost more
        # than the steps themselves at 10,000 rows a month. The task receives them unquoted.
        quoted_args = [quote(a) for a in args]
        quoted_kwargs = {k: quote(v) for k, v in kwargs.items()}
        return prefect_task(*quoted_args, **quoted_kwargs)  # type: ignore[arg-type]

    return call


#: The Prefect settings of the last flow: (base settings, key, settings with our updates).
_flow_settings: list[tuple[Any, Any, Any]] = []


def _settings_context(updates: dict[object, object]) -> Any:
    """Prefect's settings with `updates`, as `temporary_settings` makes them, built once per
    process: building them re-reads the environment through pydantic-settings, which cost
    more than a lifecycle's compute at 10,000 rows a month. Rebuilt when the base settings,
    the updates or a PREFECT_ variable change."""
    import prefect.context

    context = prefect.context.get_settings_context()
    key = (sorted((str(k), str(v)) for k, v in updates.items()),
           sorted((k, v) for k, v in os.environ.items() if k.startswith("PREFECT_")))
    if not (_flow_settings and _flow_settings[0][0] is context.settings and _flow_settings[0][1] == key):
        built = context.settings.copy_with_update(updates=updates)  # type: ignore[arg-type]
        _flow_settings[:] = [(context.settings, key, built)]
    return prefect.context.SettingsContext(profile=context.profile, settings=_flow_settings[0][2])


def run_flow(settings: Settings) -> Outcome:
    """Runs one lifecycle as a Prefect flow named `PREFECT_FLOW_NAME`; returns its `Outcome`.
    The lifecycle lock is taken before any Prefect server starts."""
    configure_prefect(settings)
    from prefect import flow
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY

    from taxifare_flow.flow.lifecycle import lifecycle
    from taxifare_flow.flow.lock import lifecycle_lock
    from taxifare_flow.flow.prefect_server import local_api_url
    from taxifare_flow.ml_logic.store import ready_store

    @flow(name=settings.prefect_flow_name, persist_result=False, log_prints=False)
    def taxifare_lifecycle() -> Outcome:
        return lifecycle(settings, as_task, lock=False)

    with lifecycle_lock(settings):
        # The store is whole and answers (reachable, credentials, TLS, an MLflow store) before a
        # Prefect server starts: a wrong setting fails in milliseconds, as one line.
        ready_store(settings)
        # A server configured (the settings, or a test harness in Prefect's own context); an
        # empty value, as `.env.sample` has it, is none.
        api = settings.prefect_api_url or PREFECT_API_URL.value() or ""
        updates: dict[object, object] = {PREFECT_API_URL: api}
        if api:
            server_answers(api)
        else:
            api = updates[PREFECT_API_URL] = local_api_url(settings.prefect_home,
                                                           settings.prefect_server_ephemeral_startup_timeout_seconds)
            # Heartbeats tell a server that a flow run crashed; the local API lives and dies
            # with this process, and the next lifecycle's checks repair a crashed run. They
            # cost up to a second a flow (the engine joins the heartbeat thread's 1 s sleep).
            updates[PREFECT_FLOWS_HEARTBEAT_FREQUENCY] = None
        with _settings_context(updates):
            return taxifare_lifecycle()
