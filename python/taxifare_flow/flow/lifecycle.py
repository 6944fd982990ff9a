"""One lifecycle run, as a state machine (README, "One lifecycle"): watermark → checks →
evaluate production → train challenger → compare → finalise → notify, under a lock so two
runs never train the same rows. Each step is a Prefect task in `prefect_flow`; `run_lifecycle`
runs the same steps without Prefect (for tests of the logic and for embedding).

Crash safety: the MLflow run is created RUNNING and only marked FINISHED after its model
version is registered, so the watermark (FINISHED runs only) never moves past rows whose model
was not saved. Aliases move after the run finished, by `Registry.reconcile_aliases`, which
every lifecycle also runs first: a stop between the two is repaired by the next run. The
checks (`taxifare_flow.check`) run before anything is trained: what a killed run left (a RUNNING
run, an orphan version, an alias on a retracted version) is repaired; a broken tiling or an
unsound source stops the lifecycle with `IntegrityError`.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, ParamSpec, Protocol, TypeVar

import numpy as np

from taxifare_flow import _core
from taxifare_flow.check import assert_sound, repair
from taxifare_flow.data import DataSource, open_source
from taxifare_flow.errors import RegistryError, SourceBehindError
from taxifare_flow.flow.lock import assert_lock_held, lifecycle_lock
from taxifare_flow.ml_logic.promotion import Decision, decide
from taxifare_flow.ml_logic.registry import PRODUCTION, Registry, open_registry
from taxifare_flow.ml_logic.watermark import get_latest_trained_row
from taxifare_flow.model import Model
from taxifare_flow.settings import Settings

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from taxifare_flow.core_types import Evaluation

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


def month_step(month: str | None) -> int:
    """Months since 2009-01: the `step` of metrics describing a month."""
    if not month:
        return 0
    year, m = month.split("-")
    return (int(year) - 2009) * 12 + int(m) - 1


@dataclass
class Outcome:
    """What one lifecycle run did."""

    status: str  # "nothing to do" | "trained"
    first_row: int
    end_row: int
    month: str | None = None
    run_id: str | None = None
    version: str | None = None
    production_version: str | None = None
    prequential_mae: float | None = None
    frozen_mae: float | None = None
    holdout_mae_challenger: float | None = None
    holdout_mae_production: float | None = None
    decision: str | None = None
    reason: str | None = None
    cleaned_rows: int = 0
    seconds: float = 0.0
    notify_error: str | None = None

    def summary(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Context:
    settings: Settings
    source: DataSource
    registry: Registry
    kernels: dict[str, Model] = field(default_factory=dict)

    def kernel(self, version: ModelVersion) -> Model:
        """A fresh copy of the kernel of a version (loaded once per lifecycle)."""
        key = str(version.version)
        if key not in self.kernels:
            self.kernels[key] = self.registry.load_kernel(version)
        return self.kernels[key].copy()

    def log_metric(self, run_id: str, key: str, value: float | None, step: int) -> None:
        if value is not None and np.isfinite(value):
            self.registry.client.log_metric(run_id, key, float(value), step=step)


@dataclass
class Production:
    version: ModelVersion | None
    model: Model | None
    metrics: Evaluation | None


@dataclass
class Challenger:
    model: Model
    parent_version: str | None
    holdout_start: int
    cleaned: int
    seconds: float


# -- the steps --------------------------------------------------------------------------


def watermark(ctx: Context) -> tuple[int, int]:
    """First untrained row (from MLflow's DB, read by the Rust core) and total rows."""
    w = get_latest_trained_row(settings=ctx.settings)
    t = ctx.source.row_count()
    if t < w:
        raise SourceBehindError(
            f"the data source has {t} rows but the model was trained on rows up to {w}: "
            "the source was reset without resetting MLflow (nothing was changed)"
        )
    return w, t


def evaluate_production(ctx: Context, run_id: str, w: int, t: int, step: int) -> Production:
    """Production scored on all new rows before any training on them (prequential error)."""
    version = ctx.registry.version_by_alias(PRODUCTION)
    root = ctx.registry.root()
    if root is not None:
        frozen = ctx.source.evaluate(ctx.kernel(root).core, w, t - w)
        ctx.log_metric(run_id, "frozen_mae", frozen["mae"], step)
    if version is None:
        ctx.registry.client.set_tag(run_id, "production_evaluated", "absent")
        return Production(None, None, None)
    model = ctx.kernel(version)
    metrics = ctx.source.evaluate(model.core, w, t - w)
    ctx.registry.client.set_tag(run_id, "production_evaluated", str(version.version))
    ctx.log_metric(run_id, "prequential_mae", metrics["mae"], step)
    ctx.log_metric(run_id, "prequential_rmse", metrics["rmse"], step)
    ctx.log_metric(run_id, "prequential_r2", metrics["r2"], step)
    return Production(version, model, metrics)


def train_challenger(ctx: Context, run_id: str, w: int, t: int) -> Challenger:
    """Continues the lineage head (the model that ends at `w`) on `[w, h)`; the newest rows
    `[h, t)` are held out for the comparison."""
    s = ctx.settings
    head = ctx.registry.head_for(w)
    if w > 0 and head is None:
        raise RegistryError(f"no valid model version ends at row {w} (its run is FINISHED but the version is missing): "
                            "cannot continue the lineage; run `taxifare check`")
    model = ctx.kernel(head) if head is not None else Model(s.ridge_alpha, s.half_life_months)
    h = t - int((t - w) * s.holdout_fraction)
    start = time.perf_counter()
    counts = ctx.source.fit(model.core, w, h - w)
    seconds = time.perf_counter() - start
    client = ctx.registry.client
    client.log_param(run_id, "parent_version", str(head.version) if head is not None else "none")
    client.log_param(run_id, "holdout_start", h)
    ctx.log_metric(run_id, "train_rows_per_second", (h - w) / seconds if seconds > 0 else None, 0)
    return Challenger(model, str(head.version) if head is not None else None, h, counts["kept"], seconds)


def compare(ctx: Context, run_id: str, production: Production, challenger: Challenger, t: int, step: int) -> Decision:
    """Both models on the same holdout rows; the policy decides."""
    s = ctx.settings
    h = challenger.holdout_start
    if challenger.model.n_rows <= 0:
        decision = Decision(False, "the challenger saw no clean rows", 0, float("nan"), None)
    else:
        chal = ctx.source.evaluate(challenger.model.core, h, t - h, True)
        prod = ctx.source.evaluate(production.model.core, h, t - h, True) if production.model is not None else None
        decision = decide(
            chal["abs_errors"], prod["abs_errors"] if prod is not None else None,
            s.promotion_policy, s.promotion_margin, s.promotion_min_rows,
        )
    ctx.log_metric(run_id, "holdout_mae_challenger", decision.challenger_mae, step)
    ctx.log_metric(run_id, "holdout_mae_production", decision.production_mae, step)
    ctx.log_metric(run_id, "promotion_z", decision.z, step)
    ctx.registry.client.set_tag(run_id, "decision", decision.label)
    ctx.registry.client.set_tag(run_id, "decision_reason", decision.reason)
    return decision


def finalise(ctx: Context, run_id: str, production: Production, challenger: Challenger, decision: Decision,
             w: int, t: int, month: str | None) -> str:
    """Adds the holdout to the challenger (the run consumed exactly `[w, t)`), logs and
    registers it. Returns the new version."""
    h = challenger.holdout_start
    counts = ctx.source.fit(challenger.model.core, h, t - h)
    cleaned = challenger.cleaned + counts["kept"]
    client = ctx.registry.client
    client.log_param(run_id, "cleaned_row_count", cleaned)
    lineage = ctx.source.content_hash(w, t - w)
    client.set_tag(run_id, "lineage_hash", lineage)
    evaluated = str(production.version.version) if production.version is not None else "none"
    version = ctx.registry.log_model_version(
        run_id,
        challenger.model,
        {
            "first_row": str(w),
            "end_row": str(t),
            "data_month": month or "",
            "decision": decision.label,
            "decision_reason": decision.reason,
            "evaluated_production": evaluated,
            "parent_version": challenger.parent_version or "none",
            "lineage_hash": lineage,
            "cleaned_row_count": str(cleaned),
        },
    )
    return str(version.version)


def notify(ctx: Context, outcome: Outcome) -> Outcome:
    """Logs the summary and POSTs it to `NOTIFY_WEBHOOK_URL` (a failure is reported, not raised)."""
    summary = outcome.summary()
    log.info("lifecycle: %s", json.dumps(summary, default=str))
    url = ctx.settings.notify_webhook_url
    if url:
        try:
            req = urllib.request.Request(url, data=json.dumps(summary, default=str).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                resp.read()
        except Exception as e:  # noqa: BLE001 - notification must never fail the lifecycle
            outcome.notify_error = f"{type(e).__name__}: {_core.mask_dsn(str(e))}"
            log.warning("notification to %s failed: %s", _core.mask_dsn(url), outcome.notify_error)
    return outcome


# -- the machine ------------------------------------------------------------------------

class Wrap(Protocol):
    """What turns a step into a Prefect task (or leaves it plain): the step's own signature."""

    def __call__(self, fn: Callable[P, R], name: str) -> Callable[P, R]: ...


def _identity(fn: Callable[P, R], name: str) -> Callable[P, R]:
    return fn


def checks(ctx: Context, w: int) -> None:
    """The safe repairs, then the cheap checks: nothing trains on a broken state."""
    repair(ctx.registry)
    assert_sound(ctx.settings, ctx.source, ctx.registry, w)
    ctx.registry.reconcile_aliases(w)


def lifecycle(settings: Settings, wrap: Wrap = _identity, *, lock: bool = True) -> Outcome:
    """Runs one lifecycle; `wrap` turns each step into a Prefect task (or leaves it plain).
    `lock=False` when the caller already holds the lifecycle lock (the Prefect flow takes it
    before its API server starts)."""
    with lifecycle_lock(settings) if lock else nullcontext():
        return _locked_lifecycle(settings, wrap)


def _locked_lifecycle(settings: Settings, wrap: Wrap) -> Outcome:
    started = time.perf_counter()
    source = open_source(settings)
    registry = open_registry(settings)
    ctx = Context(settings, source, registry)
    w, t = wrap(watermark, "watermark")(ctx)
    wrap(checks, "checks")(ctx, w)
    if t == w:
        log.info("nothing to do: all %d rows are trained", t)
        return Outcome("nothing to do", w, t, seconds=time.perf_counter() - started)
    month = source.month_of_row(t - 1)
    step = month_step(month)
    client = registry.client
    run = client.create_run(registry.experiment_id, run_name=f"train {month} rows {w}..{t}")
    run_id = run.info.run_id
    try:
        for key, value in {
            "context": "train", "first_row": w, "row_count": t - w, "data_source": source.name,
            "feature_version": _core.FEATURE_VERSION, "ridge_alpha": settings.ridge_alpha,
            "half_life_months": settings.half_life_months, "holdout_fraction": settings.holdout_fraction,
            "promotion_policy": settings.promotion_policy, "data_month": month,
        }.items():
            client.log_param(run_id, key, value)
        production = wrap(evaluate_production, "evaluate production")(ctx, run_id, w, t, step)
        challenger = wrap(train_challenger, "train challenger")(ctx, run_id, w, t)
        decision = wrap(compare, "compare")(ctx, run_id, production, challenger, t, step)
        version = wrap(finalise, "finalise")(ctx, run_id, production, challenger, decision, w, t, month)
        assert_lock_held()  # no other lifecycle can have taken these rows meanwhile
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    registry.reconcile_aliases(t)
    prod_now = registry.version_by_alias(PRODUCTION)
    outcome = Outcome(
        "trained", w, t, month, run_id, version,
        production_version=str(prod_now.version) if prod_now is not None else None,
        prequential_mae=production.metrics["mae"] if production.metrics else None,
        holdout_mae_challenger=decision.challenger_mae,
        holdout_mae_production=decision.production_mae,
        decision=decision.label, reason=decision.reason, cleaned_rows=challenger.cleaned,
    )
    outcome.seconds = time.perf_counter() - started
    return wrap(notify, "notify")(ctx, outcome)


def run_lifecycle(settings: Settings) -> Outcome:
    """One lifecycle without Prefect."""
    return lifecycle(settings)
