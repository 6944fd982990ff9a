"""The passing of time: a month arrives, one lifecycle runs; again until no data is left.

Rows that arrived but were never trained (a killed `run_all_months`, `get_new_month` run by
hand) are trained first: no month is brought while the watermark is behind the source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from taxifare_flow.settings import Settings

if TYPE_CHECKING:
    from taxifare_flow.flow.lifecycle import Outcome


@dataclass
class Tick:
    month: str
    rows: int
    outcome: Outcome


def arrive(settings: Settings) -> tuple[str, int] | None:
    """The next month arrives in the configured source; `None` when nothing is pending."""
    from taxifare_flow.data import open_source

    arrived = open_source(settings).bring_next_month()
    return (arrived.month, arrived.rows) if arrived else None


def untrained(settings: Settings) -> tuple[int, int]:
    """(watermark, rows in the source): rows in between arrived but are not trained yet."""
    from taxifare_flow.data import open_source
    from taxifare_flow.ml_logic.watermark import get_latest_trained_row

    return get_latest_trained_row(settings=settings), open_source(settings).row_count()


def pending_work(settings: Settings) -> int:
    """Lifecycles `simulate` will run: one to catch up if the watermark is behind, then one
    per pending month."""
    from taxifare_flow.data import open_source

    w, t = untrained(settings)
    return int(w < t) + len(open_source(settings).pending())


def next_month(settings: Settings) -> tuple[str, int] | None:
    """What the next lifecycle of a simulation trains: the arrived, untrained rows if there are
    any (the month of the last of them, their count), else the month that arrives now; `None`
    when nothing is left."""
    from taxifare_flow.data import open_source

    w, t = untrained(settings)
    if w < t:
        return open_source(settings).month_of_row(t - 1) or "", t - w
    return arrive(settings)


def simulate(settings: Settings, months: int | None = None, run: Callable[[Settings], Outcome] | None = None) -> Iterator[Tick]:
    """Yields one `Tick` per lifecycle: first a catch-up over the arrived, untrained rows if
    there are any, then arrival + lifecycle per month. By default the whole simulation is one
    Prefect flow run, each month a task run of it (`prefect_flow.replay`); `run` runs each
    lifecycle by itself instead (`run_flow`: a flow run a month; `run_lifecycle`: no Prefect)."""
    from taxifare_flow.ml_logic.lineage import assert_may_arrive

    # No month of another history arrives under this lineage (the lifecycle would refuse it,
    # after the month had moved).
    assert_may_arrive(settings)
    if run is None:
        from taxifare_flow.flow.prefect_flow import replay

        yield from replay(settings, months)
        return
    done = 0
    while months is None or done < months:
        arrived = next_month(settings)
        if arrived is None:
            return
        month, rows = arrived
        outcome = run(settings)
        done += 1
        yield Tick(month, rows, outcome)
