"""The gate as a lifecycle step, between the pass and the finalisation: the pass computed the
statistics (no second read), nothing is registered yet. A refusal logs the statistics as a
`context=validation` run, tells the webhook and raises `DataValidationError`: the lifecycle's
training run ends FAILED, the watermark and production do not move. `run_flow --accept`
(`accept_next`) trains the refused range deliberately; the run says so."""

from __future__ import annotations

import getpass
import json
import logging
import socket
import threading
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from taxifare_flow.errors import DataValidationError
from taxifare_flow.validation import ledger
from taxifare_flow.validation.gate import Verdict, judge

if TYPE_CHECKING:
    from taxifare_flow.core_types import MonthProfile, PassResult
    from taxifare_flow.data import DataSource
    from taxifare_flow.flow.lifecycle import Context, Learned
    from taxifare_flow.ml_logic.registry import Registry
    from taxifare_flow.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Acceptance:
    """Who accepted a refused range, and when (UTC)."""

    who: str
    when: str

    @classmethod
    def now(cls) -> Acceptance:
        return cls(f"{getpass.getuser()}@{socket.gethostname()}", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


# The next lifecycle of this process trains a refused range (set by `run_flow --accept`). A
# process-wide value, not a setting: accepting is a decision about one range, never a default
# that an environment could leave on.
_accept: Acceptance | None = None
_accept_lock = threading.Lock()


def accept_next(acceptance: Acceptance | None) -> None:
    global _accept
    with _accept_lock:
        _accept = acceptance


def _take_acceptance() -> Acceptance | None:
    global _accept
    with _accept_lock:
        taken, _accept = _accept, None
        return taken


def range_months(source: DataSource, first_row: int, end_row: int) -> list[str]:
    """The source months holding rows of `[first_row, end_row)`."""
    return [m.month for m in source.months() if m.first_row < end_row and m.end_row > first_row]


def verdict_for(registry: Registry, source: DataSource, profile: list[MonthProfile], w: int, t: int) -> Verdict:
    return judge(profile, ledger.recent_months(registry), range_months(source, w, t), w, t)


def post(settings: Settings, payload: dict[str, object]) -> str | None:
    """POSTs `payload` to NOTIFY_WEBHOOK_URL; the error in words, never raised."""
    from taxifare_flow import _core

    url = settings.notify_webhook_url
    if not url:
        return None
    try:
        req = urllib.request.Request(url, data=json.dumps(payload, default=str).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()
    except Exception as e:  # noqa: BLE001 - an alert must never hide the refusal itself
        error = f"{type(e).__name__}: {_core.mask_dsn(str(e))}"
        log.warning("notification to %s failed: %s", _core.mask_dsn(url), error)
        return error
    return None


def gate(settings: Settings, source: DataSource, registry: Registry, run_id: str, result: PassResult,
         w: int, t: int) -> tuple[Verdict, dict[str, str]]:
    """Judges the pass's statistics; returns the verdict and the tags for the training run.
    Raises `DataValidationError` for a refused range that was not accepted, after logging
    the statistics with the training run; otherwise they are the caller's to log
    (`ledger.profile_texts`: the lifecycle uploads them with the model, in one call)."""
    profile = result["profile"]
    verdict = verdict_for(registry, source, profile, w, t)
    if not verdict.refused:
        return verdict, {"validation": "passed"}
    acceptance = _take_acceptance()
    if acceptance is None:
        ledger.log_profile(registry, run_id, profile, verdict)
        refusal_run = ledger.log_refusal(registry, verdict, profile, source.name)
        post(settings, {"event": "refused", "line": verdict.line(), "validation_run_id": refusal_run, **verdict.summary()})
        raise DataValidationError(verdict.line())
    note = f"validation refused this range and {acceptance.who} accepted it at {acceptance.when}: {verdict.line()}"
    log.warning("%s", note)
    post(settings, {"event": "accepted anomaly", "line": verdict.line(), "accepted_by": acceptance.who,
                    "accepted_at": acceptance.when, "run_id": run_id, **verdict.summary()})
    return verdict, {"validation": "accepted", ledger.NOTE: note}


def validate_step(ctx: Context, run_id: str, learned: Learned, w: int, t: int, step: int) -> Verdict:
    """The lifecycle's step: the gate on the pass's statistics; drift and drop rate are logged
    with the training run (metrics at the month's `step`, for the report and MLflow's charts)."""
    verdict, tags = gate(ctx.settings, ctx.source, ctx.registry, run_id, learned.result, w, t)
    ctx.texts.update(ledger.profile_texts(learned.result["profile"], verdict))
    ctx.record.tags.update(tags)
    ctx.record.metric("validation_max_ks", verdict.max_ks, step)
    drop = next((c.value for c in verdict.checks if c.name == "drop rate"), None)
    ctx.record.metric("validation_drop_rate", drop, step)
    return verdict
