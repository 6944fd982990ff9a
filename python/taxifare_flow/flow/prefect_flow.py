"""The lifecycle as a Prefect 3 flow: each step a task, visible in Prefect. With
`PREFECT_API_URL`, flow and task runs report to that Prefect server; without it, to a local
Prefect API this process starts (its state under `PREFECT_HOME`, see `prefect_server`)."""

from __future__ import annotations

import atexit
import gc
import os
from contextlib import contextmanager, nullcontext
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from taxifare_flow.errors import PrefectServerError
from taxifare_flow.settings import Settings

if TYPE_CHECKING:
    from taxifare_flow.flow.lifecycle import Outcome
    from taxifare_flow.flow.simulate import Tick

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


def as_task(fn: Callable[P, R], name: str, run_name: str | None = None) -> Callable[P, R]:
    """A lifecycle step as a Prefect task (after `configure_prefect`); `run_name` names its task
    run (default: Prefect's, the task's name and a suffix)."""
    import functools

    from prefect import task
    from prefect.cache_policies import NO_CACHE
    from prefect.utilities.annotations import quote

    # Models are not hashable inputs and results stay in memory: no cache, no persistence.
    prefect_task = task(name=name, cache_policy=NO_CACHE, persist_result=False, task_run_name=run_name)(fn)

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


#: The Prefect client this process's flows share, with the process and the settings it was
#: made under: (pid, settings, client).
_shared_client: list[tuple[int, Any, Any]] = []


def _close_shared_client() -> None:
    if _shared_client:
        pid, _, client = _shared_client.pop()
        if pid == os.getpid():  # a forked child leaves its parent's connections alone
            client.__exit__(None, None, None)


@contextmanager
def _client_context() -> Iterator[None]:
    """Prefect's client context for a flow, its client shared by every flow of this process
    under the same settings (`_settings_context`). The engine makes a client per flow run
    otherwise: its TLS context loads certifi's whole bundle, even for an http:// API, and it
    asks the API for a CSRF token, ~50 ms a `run_flow`. The client is entered once and kept
    open (Prefect's clients are reentrant); each flow's context enters and leaves it."""
    import prefect.context
    from prefect.client.orchestration import get_client

    settings = prefect.context.get_settings_context().settings
    if not (_shared_client and _shared_client[0][0] == os.getpid() and _shared_client[0][1] is settings):
        _close_shared_client()
        client = get_client(sync_client=True)
        client.__enter__()
        _shared_client.append((os.getpid(), settings, client))
    with prefect.context.SyncClientContext.model_construct(client=_shared_client[0][2]):
        yield


atexit.register(_close_shared_client)


#: Whether this process's first flow start ran (`_first_start_uncollected`).
_first_start_done: list[bool] = []


@contextmanager
def _first_start_uncollected() -> Iterator[None]:
    """The cyclic garbage collector paused during this process's first flow start, which
    imports Prefect and MLflow (and starts the store): the collector walked the ~10^6 objects
    their modules make again and again while they loaded, ~0.6 s of a 3.5 s start here. What
    the start made (modules, classes, the store's engine) is then frozen out of later
    collections rather than walked by each of them; it lives as long as the process anyway."""
    if _first_start_done or not gc.isenabled():
        yield
        return
    _first_start_done.append(True)
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _flow_settings_updates(settings: Settings, *, warm_registry: bool) -> dict[object, object]:
    """Under the lifecycle lock: the store ready and the Prefect API answering; Prefect's
    settings for the flow (after `configure_prefect`). A local API is started first and waited
    for last, so its start (seconds: Prefect's imports, its database's migration) overlaps this
    process's own start: importing Prefect, the store's checks and creation and, with
    `warm_registry`, opening the experiment (a replay trains every month). A wrong setting
    still fails in milliseconds, as one line, the API stopped."""
    import sys

    from taxifare_flow.flow.prefect_server import local_api_url, spawn_local_api, stop_starting_api
    from taxifare_flow.ml_logic.registry import open_registry
    from taxifare_flow.ml_logic.store import ready_store

    # Started before Prefect is imported when nothing configures a server that Prefect's
    # import could not change (`configure_prefect` put the settings' URL in the environment);
    # a URL in a Prefect profile, read at the import, stops it again.
    speculative = "prefect" not in sys.modules and not os.environ.get("PREFECT_API_URL")
    if speculative:
        spawn_local_api(settings.prefect_home)
    try:
        from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY

        # A server configured (the settings, a Prefect profile, or a test harness in Prefect's
        # own context); an empty value, as `.env.sample` has it, is none.
        api = settings.prefect_api_url or PREFECT_API_URL.value() or ""
        if api:
            stop_starting_api()
        else:
            spawn_local_api(settings.prefect_home)
        # The store is whole and answers (reachable, credentials, TLS, an MLflow store) before
        # the flow starts.
        ready_store(settings)
        if warm_registry:
            open_registry(settings, cached=True)
    except BaseException:
        stop_starting_api()
        raise
    if api:
        server_answers(api)
        return {PREFECT_API_URL: api}
    api = local_api_url(settings.prefect_home, settings.prefect_server_ephemeral_startup_timeout_seconds)
    # Heartbeats tell a server that a flow run crashed; the local API lives and dies with this
    # process, and the next lifecycle's checks repair a crashed run. They cost up to a second
    # a flow (the engine joins the heartbeat thread's 1 s sleep).
    return {PREFECT_API_URL: api, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}


def _idle_without_server(settings: Settings) -> Outcome | None:
    """The outcome of a lifecycle with nothing to do when no Prefect server is configured, read
    before any local API starts; `None` otherwise. Such a flow run would be the watermark's one
    task, recorded in a private API nobody watches, and starting that API costs seconds; a
    configured server keeps its flow run per tick (what its UI user sees)."""
    import time

    from taxifare_flow.data import open_source
    from taxifare_flow.flow.lifecycle import idle, watermark

    if os.environ.get("PREFECT_API_URL"):
        return None
    started = time.perf_counter()
    w, t = watermark(settings, open_source(settings))
    if w != t:
        return None
    from prefect.settings import PREFECT_API_URL  # a server named by a Prefect profile

    return None if PREFECT_API_URL.value() else idle(w, t, started)


def run_flow(settings: Settings) -> Outcome:
    """Runs one lifecycle as a Prefect flow named `PREFECT_FLOW_NAME`; returns its `Outcome`.
    The lifecycle lock is taken before any Prefect server starts."""
    configure_prefect(settings)
    from taxifare_flow.flow.lifecycle import lifecycle
    from taxifare_flow.flow.lock import lifecycle_lock

    with lifecycle_lock(settings):
        idle = _idle_without_server(settings)
        if idle is not None:
            return idle
        with _first_start_uncollected():
            updates = _flow_settings_updates(settings, warm_registry=False)
        from prefect import flow

        @flow(name=settings.prefect_flow_name, persist_result=False, log_prints=False)
        def taxifare_lifecycle() -> Outcome:
            return lifecycle(settings, as_task, lock=False)

        with _settings_context(updates), _client_context():
            return taxifare_lifecycle()


def replay(settings: Settings, months: int | None = None) -> Iterator[Tick]:
    """The simulation (`run_all_months`) as one Prefect flow run, `PREFECT_FLOW_NAME` + " replay",
    whose task runs are its months: each a task run named by the month (a catch-up over arrived,
    untrained rows first if there are any), in which the month arrives and its lifecycle runs
    (a refused or broken month fails its task, with the lifecycle's one-line error). Yields a
    `Tick` per month as it ends. The lifecycle lock is held while the Prefect API starts, then
    per month (arrival and lifecycle), as `run_flow` holds it for its one lifecycle.

    One flow run rather than one per month: a flow run is a dozen API round trips and the engine's
    set-up, which cost several times a 10,000-row month's lifecycle (docs/architecture.md,
    "The Prefect flow"); a month's steps are not task runs of their own here for the same reason."""
    configure_prefect(settings)
    from taxifare_flow.flow.lifecycle import lifecycle
    from taxifare_flow.flow.lock import lifecycle_lock
    from taxifare_flow.flow.simulate import MonthAhead, Tick, next_month, pending_work
    from taxifare_flow.ml_logic.store import fsync_file, sqlite_store_path, unsynced

    if months == 0 or pending_work(settings) == 0:
        return  # nothing arrives and nothing is untrained: no flow run, no server
    with lifecycle_lock(settings), _first_start_uncollected():
        updates = _flow_settings_updates(settings, warm_registry=True)
    from prefect import flow

    ahead = MonthAhead(settings)

    def month_lifecycle(settings: Settings, month: str, rows: int) -> Outcome:
        return lifecycle(settings, lock=False, after_learn=ahead.start)

    @flow(name=f"{settings.prefect_flow_name} replay", persist_result=False, log_prints=False)
    def taxifare_replay() -> Iterator[Tick]:
        done = 0
        while months is None or done < months:
            with lifecycle_lock(settings):
                arrived = next_month(settings, ahead.take())
                if arrived is None:
                    return
                month, rows = arrived
                ahead.wanted = months is None or done + 1 < months
                outcome = as_task(month_lifecycle, "month", run_name=month or "catch-up")(settings, month, rows)
                if store is not None:
                    fsync_file(store)  # the month is on disk before the next one starts
            done += 1
            yield Tick(month, rows, outcome)

    # An embedded store's commits are synced once a month, not one by one (`store.unsynced`).
    store = sqlite_store_path(settings)
    with _settings_context(updates), unsynced(store) if store is not None else nullcontext():
        try:
            yield from taxifare_replay()
        finally:
            ahead.discard()
