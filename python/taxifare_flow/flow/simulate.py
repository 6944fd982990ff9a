"""The passing of time: a month arrives, one lifecycle runs; again until no data is left."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from taxifare_flow.settings import Settings


@dataclass
class Tick:
    month: str
    rows: int
    outcome: Any


def arrive(settings: Settings) -> tuple[str, int] | None:
    """The next month arrives in the configured source; `None` when nothing is pending."""
    if settings.data_source == "bigquery":
        from taxifare_flow.data.bigquery import BigQuerySource

        pushed = BigQuerySource(settings).push_next_month()
        return (pushed.month, pushed.rows) if pushed else None
    from taxifare_flow.data.local import LocalSource

    arrived = LocalSource(settings).get_new_month()
    return (arrived.month, arrived.rows) if arrived else None


def simulate(settings: Settings, months: int | None = None, run: Callable[[Settings], Any] | None = None) -> Iterator[Tick]:
    """Yields one `Tick` per month: arrival then lifecycle (a Prefect flow by default)."""
    if run is None:
        from taxifare_flow.flow.prefect_flow import run_flow

        run = run_flow
    done = 0
    while months is None or done < months:
        arrived = arrive(settings)
        if arrived is None:
            return
        outcome = run(settings)
        done += 1
        yield Tick(arrived[0], arrived[1], outcome)
