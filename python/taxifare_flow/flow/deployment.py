"""The lifecycle as a Prefect deployment: `taxifare_lifecycle` is the module-level flow (the
entrypoint of `prefect deploy`, see `prefect.yaml`), and `serve` serves it from this process
with a cron schedule and a trigger on `taxifare.month.arrived`.

Prefect is imported here at module level: import this module only after `configure_prefect`
(the CLI does), or from Prefect itself (`prefect deploy`, a served flow run)."""

from __future__ import annotations

import logging

from prefect import flow

from taxifare_flow.flow.events import MONTH_ARRIVED, resource_id
from taxifare_flow.settings import Settings, load_settings

log = logging.getLogger(__name__)

#: The deployment's name (the flow's name is PREFECT_FLOW_NAME).
DEPLOYMENT_NAME = "taxifare-lifecycle"


@flow(name="taxifare lifecycle", persist_result=False, log_prints=False)
def taxifare_lifecycle(month: str = "", rows: str = "") -> dict[str, object]:
    """One lifecycle over whatever rows are untrained (`month` and `rows` only say what
    triggered it). Settings come from the environment and `.env` of the process that runs it;
    the lifecycle lock makes a second run wait for the first."""
    from taxifare_flow.flow.lifecycle import lifecycle
    from taxifare_flow.flow.prefect_flow import as_task
    from taxifare_flow.ml_logic.store import ready_store

    settings = load_settings()
    if month:
        log.info("triggered by %s %s (rows %s)", MONTH_ARRIVED, month, rows)
    ready_store(settings)
    return lifecycle(settings, as_task).summary()


def serve(settings: Settings) -> None:
    """Serves the lifecycle until SIGINT/SIGTERM: a flow run on the cron schedule
    `PREFECT_FLOW_CRON` (empty: none) and one per `taxifare.month.arrived` event of this
    experiment; one flow run at a time (and the lifecycle lock besides). On SIGTERM Prefect's
    runner stops gracefully (a flow run in progress is cancelled; the next lifecycle repairs
    what it left, as after any crash)."""
    from prefect.events import DeploymentEventTrigger

    trigger = DeploymentEventTrigger(
        expect={MONTH_ARRIVED},
        match={"prefect.resource.id": resource_id(settings)},
        parameters={"month": "{{ event.payload.month }}",
                    "rows": "{{ event.payload.first_row }}..{{ event.payload.end_row }}"},
    )
    served = taxifare_lifecycle.with_options(name=settings.prefect_flow_name)
    try:
        served.serve(
            name=DEPLOYMENT_NAME,
            cron=settings.prefect_flow_cron or None,
            triggers=[trigger],
            limit=1,
            # A restart (a deploy, a reboot) must not leave the schedule paused.
            pause_on_shutdown=False,
            print_starting_message=False,
        )
    except KeyboardInterrupt:
        log.info("serve_flow stopped")
