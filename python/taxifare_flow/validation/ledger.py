"""The statistics kept with the runs: each training run's per-month profile is an artifact
(`validation/profile.json`, kilobytes); the reference is read back from the latest training
runs; a refused range becomes a run of its own (`context=validation`), never counted by the
watermark (it counts `context=train` only)."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from taxifare_flow.core_types import MonthProfile
from taxifare_flow.validation.gate import REFERENCE_MONTHS, Verdict

if TYPE_CHECKING:
    from mlflow.entities import Run

    from taxifare_flow.ml_logic.registry import Registry

log = logging.getLogger(__name__)

PROFILE_ARTIFACT = "validation/profile.json"
VERDICT_ARTIFACT = "validation/verdict.json"
#: Training runs looked at for the reference (a run holds one month, or a few after a catch-up).
RECENT_RUNS = 12
NOTE = "mlflow.note.content"


#: Profiles by (tracking URI, run id), as this process logged or read them: a run's artifacts do
#: not change, and each lifecycle's reference is mostly the previous lifecycles' months.
_profiles: dict[tuple[str, str], list[MonthProfile] | None] = {}
_PROFILES_KEPT = 4 * RECENT_RUNS


def _remember(registry: Registry, run_id: str, profile: list[MonthProfile] | None) -> None:
    _profiles[(registry.settings.mlflow_tracking_uri, run_id)] = profile
    while len(_profiles) > _PROFILES_KEPT:
        del _profiles[next(iter(_profiles))]


def profile_texts(profile: list[MonthProfile], verdict: Verdict | None) -> dict[str, str]:
    """The range's statistics (and the gate's verdict) as artifacts: path → text."""
    texts = {PROFILE_ARTIFACT: json.dumps(profile, separators=(",", ":"))}
    if verdict is not None:
        texts[VERDICT_ARTIFACT] = json.dumps(verdict.summary(), indent=1)
    return texts


def remember_profile(registry: Registry, run_id: str, profile: list[MonthProfile]) -> None:
    """`profile` is what `run_id` logged (the lifecycle uploads it with the model)."""
    _remember(registry, run_id, profile)


def log_profile(registry: Registry, run_id: str, profile: list[MonthProfile], verdict: Verdict | None) -> None:
    """The range's statistics (and the gate's verdict) as artifacts of `run_id`."""
    for path, text in profile_texts(profile, verdict).items():
        registry.client.log_text(run_id, text, path)
    _remember(registry, run_id, profile)


def _profile_of(registry: Registry, run: Run) -> list[MonthProfile] | None:
    from mlflow.exceptions import MlflowException

    key = (registry.settings.mlflow_tracking_uri, run.info.run_id)
    if key in _profiles:
        return _profiles[key]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = registry.client.download_artifacts(run.info.run_id, PROFILE_ARTIFACT, tmp)
        except (MlflowException, OSError):
            loaded = None  # a run from before the gate
        else:
            loaded = json.loads(Path(path).read_text())
    _remember(registry, run.info.run_id, loaded)
    return loaded


def recent_months(registry: Registry, months: int = REFERENCE_MONTHS) -> list[MonthProfile]:
    """The statistics of the last `months` ride months trained (by the latest FINISHED, active
    training runs), oldest first; empty before the first run with statistics. A month of which
    cleaning kept no row taught the model nothing and is no reference (an accepted month of
    broken fares would otherwise make every good month after it look broken), nor is a month
    or a run's range that `taxifare unlearn` removed."""
    # The latest runs by start time, as the training runs the registry has (one search, or
    # none inside a lifecycle's snapshot).
    latest = sorted(registry.training_runs(), key=lambda r: -(r.info.start_time or 0))[:RECENT_RUNS]
    runs = sorted(latest, key=lambda r: -int(r.data.params.get("first_row", "0")))
    # Rows `taxifare unlearn` removed were not learnt (a broken delivery, most likely): no reference.
    from taxifare_flow.flow.unlearn import UNLEARN  # late, as in check.py: flow.unlearn imports check and the flow

    unlearnt = registry.finished_runs(UNLEARN)
    removed = [(int(u.data.params["first_row"]), int(u.data.params["first_row"]) + int(u.data.params["row_count"]))
               for u in unlearnt]
    removed_months = {u.data.params.get("unlearnt_month") for u in unlearnt} - {None, ""}
    found: dict[str, MonthProfile] = {}
    for run in runs:
        first = int(run.data.params.get("first_row", "0"))
        end = first + int(run.data.params.get("row_count", "0"))
        if any(a <= first and end <= b for a, b in removed):
            continue
        profile = _profile_of(registry, run)
        for p in reversed(profile or []):
            if p["month"] in removed_months:
                continue
            if p["month"] is not None and p["kept"] > 0 and p["month"] not in found and len(found) < months:
                found[p["month"]] = p
        if len(found) >= months:
            break
    return [found[m] for m in sorted(found)]


def log_refusal(registry: Registry, verdict: Verdict, profile: list[MonthProfile], data_source: str) -> str:
    """The refused range's statistics as a FINISHED run with `context=validation`; its id."""
    from mlflow.entities import Metric, Param, RunTag

    client = registry.client
    run = client.create_run(registry.experiment_id,
                            run_name=f"validation {verdict.month} rows {verdict.first_row}..{verdict.end_row} refused")
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    # `step`: months since 2009-01 of the data, as the training runs' metrics.
    year, _, mon = verdict.month[-7:].partition("-")
    step = (int(year) - 2009) * 12 + int(mon) - 1 if year.isdigit() and mon.isdigit() else 0
    params = {"context": "validation", "first_row": verdict.first_row, "row_count": verdict.end_row - verdict.first_row,
              "data_month": verdict.month, "data_source": data_source}
    metrics = [Metric(f"validation_{c.name.replace(' ', '_')}", c.value, now, step) for c in verdict.checks]
    metrics.append(Metric("validation_max_ks", verdict.max_ks, now, step))
    client.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()],
                     tags=[RunTag("validation", "refused"), RunTag(NOTE, verdict.line())])
    log_profile(registry, run_id, profile, verdict)
    client.set_terminated(run_id, "FINISHED")
    return str(run_id)


def last_unresolved_refusal(registry: Registry, watermark: int) -> Run | None:
    """The latest refused range that is still untrained (its first row at or after the
    watermark): what `check` shows."""
    runs = registry.client.search_runs(
        [registry.experiment_id], "params.context = 'validation' and tags.validation = 'refused'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    if not runs:
        return None
    run = runs[0]
    return run if int(run.data.params.get("first_row", "0")) >= watermark else None
