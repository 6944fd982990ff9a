"""The event `taxifare.month.arrived`: `get_new_month` and `push_month_to_bq` emit it to the
configured Prefect server, and the served deployment (`taxifare serve_flow`) runs a lifecycle
when it sees one. Without a Prefect server nothing is emitted (nothing could listen)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from taxifare_flow.settings import Settings

if TYPE_CHECKING:
    from taxifare_flow.data import SourceMonth

log = logging.getLogger(__name__)

MONTH_ARRIVED = "taxifare.month.arrived"


def resource_id(settings: Settings) -> str:
    """The resource the event concerns: the experiment whose source received rows. A deployment
    matches on it, so two experiments on one Prefect server do not trigger each other."""
    return f"taxifare.experiment.{settings.mlflow_experiment}"


def emit_month_arrived(settings: Settings, month: SourceMonth) -> bool:
    """Sends `taxifare.month.arrived` (month, row range, source) to the Prefect server of the
    settings and waits until it is sent; False when no server is configured."""
    if not settings.prefect_api_url:
        return False
    from taxifare_flow.flow.prefect_flow import configure_prefect

    configure_prefect(settings)
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    emit_event(
        event=MONTH_ARRIVED,
        resource={"prefect.resource.id": resource_id(settings), "prefect.resource.name": settings.mlflow_experiment},
        payload={"month": month.month, "first_row": month.first_row, "end_row": month.end_row,
                 "rows": month.rows, "data_source": settings.data_source},
    )
    # The events worker sends in the background: a command's process must not end before it has.
    EventsWorker.drain_all()
    log.info("emitted %s for %s (rows %s..%s)", MONTH_ARRIVED, month.month, month.first_row, month.end_row)
    return True
