"""One lifecycle run, as a state machine (docs/architecture.md, "One lifecycle"): watermark → checks →
learn → validate → compare → finalise → notify, under a lock so two runs never train the same
rows. In `prefect_flow` the steps that take time or can fail are Prefect tasks (watermark,
checks, learn, validate, finalise); `run_lifecycle` runs the same steps without Prefect (for
tests of the logic and for embedding).

One pass: `learn` reads each new row once (`DataSource.learn` → `_core.lifecycle_pass`). That
pass scores production and the frozen model on `[w, t)`, trains the challenger on `[w, h)`,
scores it and production row by row on the holdout `[h, t)`, hashes the rows for lineage, and
leaves the challenger trained on all of `[w, t)`. MLflow gets the run's params, metrics and
tags in two batches (`log_batch`): when the run starts, and when it is finalised.

Horizons (issue 22): the challengers are composed from the lineage's ledger (`ml_logic.ledger`,
`ml_logic.horizons`): all history as the lineage weighs it, and the last 12, 3 and 1 months;
the pass gives each the new month's statistics, computed once, and scores each on the holdout;
`compare` tests the best of them against production (`promotion.decide_horizons`), and the
chosen one is the version registered (param and tag `horizon`). The run keeps the ledger of
its rows (`ledger/ledger.bin`, logged with the model). A lineage whose ledger is incomplete
(trained before the ledger, or in the warehouse) continues its head alone, as before.

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

from taxifare_flow import _core
from taxifare_flow.check import assert_sound, repair
from taxifare_flow.data import DataSource, open_source
from taxifare_flow.errors import IntegrityError, RegistryError, SourceBehindError
from taxifare_flow.flow.lock import lifecycle_lock
from taxifare_flow.flow.training_run import RunRecord, run_params, training_run, version_tags
from taxifare_flow.ml_logic import horizons
from taxifare_flow.ml_logic.ledger import lineage_ledger
from taxifare_flow.ml_logic.lineage import HISTORY_TAG, assert_lineage
from taxifare_flow.ml_logic.promotion import Decision, Paired, decide_horizons
from taxifare_flow.ml_logic.registry import (PRODUCTION, PROMOTED_AT, Registry, assert_experiment_active, now_utc,
                                             open_registry)
from taxifare_flow.ml_logic.watermark import get_latest_trained_row
from taxifare_flow.model import Model
from taxifare_flow.settings import Settings
from taxifare_flow.validation import ledger
from taxifare_flow.validation.step import validate_step

if TYPE_CHECKING:
    import numpy as np
    from mlflow.entities.model_registry import ModelVersion
    from numpy.typing import NDArray

    from taxifare_flow.core_types import PassResult

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


def month_step(month: str | None) -> int:
    """Months since 2009-01: the `step` of metrics describing a month."""
    if not month:
        return 0
    year, m = month.split("-")
    return (int(year) - 2009) * 12 + int(m) - 1


def step_month(step: int) -> str:
    """The month of a `month_step`."""
    return f"{2009 + step // 12:04d}-{step % 12 + 1:02d}"


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
    #: The horizon of the version registered (`horizons.HORIZONS`).
    horizon: str | None = None
    #: Clean rows of `[first_row, end_row)`: what the new version learnt (as MLflow's `cleaned_row_count`).
    cleaned_rows: int = 0
    #: Rows the pass read (each row of the range once).
    rows_decoded: int = 0
    learn_seconds: float = 0.0
    seconds: float = 0.0
    notify_error: str | None = None

    def summary(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Context:
    settings: Settings
    source: DataSource
    registry: Registry
    record: RunRecord = field(default_factory=RunRecord)
    kernels: dict[str, Model] = field(default_factory=dict)
    #: Artifacts uploaded with the model (path → text): the gate's statistics and verdict.
    texts: dict[str, str] = field(default_factory=dict)

    def kernel(self, version: ModelVersion) -> Model:
        """A fresh copy of the kernel of a version (loaded once per lifecycle)."""
        key = str(version.version)
        if key not in self.kernels:
            self.kernels[key] = self.registry.load_kernel(version)
        return self.kernels[key].copy()


@dataclass
class Learned:
    """What the one pass over `[w, t)` gave."""

    challenger: Model  # trained on all of [w, t); after `compare`, the chosen horizon's
    parent_version: str | None
    production_version: ModelVersion | None
    holdout_start: int
    result: PassResult
    seconds: float
    #: Every challenger by horizon, the lineage's own (`all`, or the head alone) first.
    candidates: dict[str, Model] = field(default_factory=dict)
    horizon: str = "all"
    #: The month the candidates were composed for (each window's start is counted from it).
    new_month: str | None = None
    #: The window tags of a head continued alone (`horizons.WINDOW_SINCE_TAG`): the new
    #: version holds what the head held, so it keeps them.
    held: dict[str, str] = field(default_factory=dict)

    @property
    def prequential_mae(self) -> float | None:
        production = self.result["production"]
        return production["mae"] if production is not None else None


# -- the steps --------------------------------------------------------------------------


def watermark(settings: Settings, source: DataSource) -> tuple[int, int]:
    """First untrained row (from MLflow's DB, read by the Rust core) and total rows. No MLflow
    client call: when they are equal, the lifecycle is over."""
    try:
        w = get_latest_trained_row(settings=settings)
    except _core.NotAnMlflowStoreError:
        # A database MLflow has not made its tables in yet (a new PostgreSQL database):
        # opening the registry makes them, as it did before the watermark was read first.
        open_registry(settings, cached=True)
        w = get_latest_trained_row(settings=settings)
    t = source.row_count()
    if t < w:
        # A swapped history under a kept store is named as such, not as a source behind the
        # watermark.
        assert_lineage(settings, open_registry(settings, cached=True))
        raise SourceBehindError(
            f"the data source has {t} rows but the model was trained on rows up to {w}: "
            "the source was reset without resetting MLflow (nothing was changed)"
        )
    return w, t


def _scored(ctx: Context, version: ModelVersion | None) -> _core.Model | None:
    """The kernel of a version to score with, `None` when it learnt no row: a first month
    without a clean row registers an empty version, which is a valid lineage head but scores
    nothing (a production or frozen model that cannot predict is absent, not an error)."""
    if version is None:
        return None
    kernel = ctx.kernel(version)
    return kernel.core if kernel.n_rows > 0 else None


def learn(ctx: Context, w: int, t: int, step: int) -> Learned:
    """The one pass: production (prequential) and the frozen first model scored on `[w, t)`;
    the lineage head continued on `[w, h)` as the challenger, both scored on the holdout
    `[h, t)`, then the holdout added, so the challenger consumed exactly `[w, t)`."""
    s = ctx.settings
    production = ctx.registry.version_by_alias(PRODUCTION)  # the snapshot's: read under the lock
    root = ctx.registry.root()
    head = ctx.registry.head_for(w)
    if w > 0 and head is None:
        raise RegistryError(f"no valid model version ends at row {w} (its run is FINISHED but the version is missing): "
                            "cannot continue the lineage; run `taxifare check`")
    new_month = step_month(step)
    candidates, alone = challengers(ctx, head, new_month)
    held = {k: head.tags[k] for k in (horizons.WINDOW_SINCE_TAG, horizons.WINDOW_ROW_TAG)
            if alone and head is not None and k in head.tags}
    challenger, *others = candidates.values()
    h = t - int((t - w) * s.holdout_fraction)
    started = time.perf_counter()
    result = ctx.source.learn(w, t - w, h, challenger.core, _scored(ctx, production), _scored(ctx, root),
                              horizons=[m.core for m in others])
    seconds = time.perf_counter() - started
    rec = ctx.record
    rec.params.update(parent_version=str(head.version) if head is not None else "none", holdout_start=h,
                      cleaned_row_count=result["cleaning"]["kept"], feature_version=challenger.feature_version)
    rec.tags.update(lineage_hash=result["lineage_hash"],
                    production_evaluated=str(production.version) if production is not None else "absent")
    rec.metric("pass_rows_per_second", (t - w) / seconds if seconds > 0 else None, step)
    if "warehouse_result_rows" in result:
        # Computed inside BigQuery: what came out, and what its dry runs said it would bill.
        rec.params.update(compute="warehouse")
        rec.metric("warehouse_result_rows", result["warehouse_result_rows"], step)
        rec.metric("warehouse_bytes_billed_estimate", result.get("warehouse_bytes_billed_estimate"), step)
    if result["frozen"] is not None:
        rec.metric("frozen_mae", result["frozen"]["mae"], step)
    if result["production"] is not None:
        for key in ("mae", "rmse", "r2"):
            rec.metric(f"prequential_{key}", result["production"][key], step)
    return Learned(challenger, str(head.version) if head is not None else None, production, h, result, seconds,
                   candidates, new_month=new_month, held=held)


def challengers(ctx: Context, head: ModelVersion | None, new_month: str) -> tuple[dict[str, Model], bool]:
    """The challengers before the new rows, by horizon, composed from the lineage's ledger; the
    head alone (`all`) when its ledger is incomplete (then `True`). The lineage keeps the head's
    feature version (`taxifare backfill` moves it); a new lineage starts with FEATURE_VERSION."""
    s = ctx.settings
    ledger = _core.Ledger(s.feature_version) if head is None else lineage_ledger(s, ctx.registry, head)
    if ledger is None:
        assert head is not None
        return {"all": ctx.kernel(head)}, True
    return horizons.compose(ledger, new_month, s.ridge_alpha, s.half_life_months), False


def holdout_paired(result: PassResult) -> Paired | None:
    """The holdout comparison of a pass, whether it kept per-row errors (local) or sums
    (warehouse); `None` when the challenger had no rows to be scored with."""
    if "holdout_paired" in result:
        sums = result["holdout_paired"]
        return None if sums is None else Paired(**sums)
    errors = result.get("holdout_challenger_errors")
    return None if errors is None else Paired.of(errors, result.get("holdout_production_errors"))


def compare(ctx: Context, learned: Learned, step: int) -> Decision:
    """Production and every challenger on the same holdout rows (scored in the pass): the best
    challenger is tested against production (`decide_horizons`) and becomes the one registered."""
    s = ctx.settings
    result = learned.result
    names = list(learned.candidates) or ["all"]
    paired: dict[str, Paired] = {}
    errors: dict[str, NDArray[np.float64]] = {}
    own = holdout_paired(result)
    if own is not None:
        paired[names[0]] = own
        if result.get("holdout_challenger_errors") is not None:
            errors[names[0]] = result["holdout_challenger_errors"]  # type: ignore[assignment]
    production_errors = result.get("holdout_production_errors")
    for name, horizon_errors in zip(names[1:], result.get("holdout_horizon_errors") or [], strict=False):
        if horizon_errors is not None:
            paired[name] = Paired.of(horizon_errors, production_errors)
            errors[name] = horizon_errors
    if not paired:
        decision = Decision(False, "the challenger saw no clean rows", 0, float("nan"), None, horizon=names[0])
    else:
        decision = decide_horizons(paired, s.promotion_policy, s.promotion_margin, s.promotion_min_rows, errors)
    learned.horizon = decision.horizon or names[0]
    if learned.candidates:
        learned.challenger = learned.candidates[learned.horizon]
    rec = ctx.record
    rec.params.update(horizon=learned.horizon, horizons_compared=decision.compared)
    if len(paired) > 1:
        for name, p in paired.items():
            rec.metric(f"holdout_mae_{name}", p.challenger_sum / p.n if p.n else None, step)
    rec.metric("holdout_mae_challenger", decision.challenger_mae, step)
    rec.metric("holdout_mae_production", decision.production_mae, step)
    rec.metric("promotion_z", decision.z, step)
    rec.tags.update(decision=decision.label, decision_reason=decision.reason)
    return decision


def finalise(ctx: Context, run_id: str, learned: Learned, decision: Decision, w: int, t: int, month: str | None) -> str:
    """Logs the run's record in one batch and registers the challenger. Returns the new version."""
    ctx.record.send(ctx.registry.client, run_id)
    evaluated = str(learned.production_version.version) if learned.production_version is not None else "none"
    tags = version_tags(
        first_row=w, end_row=t, data_month=month, decision=decision.label, decision_reason=decision.reason,
        evaluated_production=evaluated, parent_version=learned.parent_version or "none", result=learned.result,
        feature_version=learned.challenger.feature_version,
    )
    tags["horizon"] = learned.horizon
    window_since = horizons.since(learned.horizon, learned.new_month) if learned.new_month else None
    if window_since is not None:
        # What `taxifare unlearn` needs to know which rows this model holds (tags ride along
        # with the registration: no call of their own).
        tags.update({horizons.WINDOW_SINCE_TAG: window_since, horizons.WINDOW_ROW_TAG: str(w)})
    else:
        tags.update(learned.held)
    if decision.label == "promote":
        # Stamped with the version rather than by a call of its own when production moves
        # (`reconcile_aliases` removes it if production cannot move to it).
        tags[PROMOTED_AT] = now_utc()
    rows_ledger = learned.result.get("ledger")
    version = ctx.registry.log_model_version(run_id, learned.challenger, tags, texts=ctx.texts,
                                             ledger=rows_ledger.to_bytes() if rows_ledger is not None else None)
    ledger.remember_profile(ctx.registry, run_id, learned.result["profile"])
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


def checks(ctx: Context, w: int) -> str | None:
    """The lineage (this experiment's model, the pending history), the safe repairs, then the
    cheap checks: nothing trains on a broken state. All from the registry's snapshot, read
    here (in the Prefect task that a store failing then names). Returns the history's
    identity, recorded on the run."""
    ctx.registry.snapshot = ctx.registry.read_snapshot()
    history_id = assert_lineage(ctx.settings, ctx.registry)
    repair(ctx.registry)
    try:
        assert_sound(ctx.settings, ctx.source, ctx.registry, w)
    except IntegrityError:
        # The experiment's id is this process's: deleted since, the watermark reads 0.
        assert_experiment_active(ctx.registry)
        raise
    ctx.registry.reconcile_aliases(w)
    return history_id


def idle(w: int, t: int, started: float) -> Outcome:
    """The outcome of a lifecycle that found every row trained (`w == t`)."""
    log.info("nothing to do: all %d rows are trained", t)
    return Outcome("nothing to do", w, t, seconds=time.perf_counter() - started)


def lifecycle(settings: Settings, wrap: Wrap = _identity, *, lock: bool = True,
              after_learn: Callable[[], None] | None = None) -> Outcome:
    """Runs one lifecycle; `wrap` turns each step into a Prefect task (or leaves it plain).
    `lock=False` when the caller already holds the lifecycle lock (the Prefect flow takes it
    before its API server starts). `after_learn` is called once the pass is done, before the
    model is validated and saved (a replay starts writing the next month then)."""
    with lifecycle_lock(settings) if lock else nullcontext():
        return _locked_lifecycle(settings, wrap, after_learn)


def _locked_lifecycle(settings: Settings, wrap: Wrap, after_learn: Callable[[], None] | None = None) -> Outcome:
    started = time.perf_counter()
    source = open_source(settings)
    # The watermark and the checks are reads of milliseconds: in the flow's body, not tasks of
    # their own (each task costs Prefect's engine and its API more than they do; their error
    # fails the flow run with its one line). Prefect shows the steps that take time or decide:
    # learn, validate, finalise (docs/architecture.md, "The Prefect flow").
    w, t = watermark(settings, source)
    if t == w:
        # Nothing new: no MLflow client call at all. What a crash left is repaired by the
        # next lifecycle that has rows to train, before it trains them (and by `check --repair`).
        return idle(w, t, started)
    registry = open_registry(settings, cached=True)
    # One read of the registry for the whole lifecycle, by the checks (docs/architecture.md,
    # "The MLflow call budget"): the writes below keep the snapshot current.
    try:
        return _trained(settings, wrap, source, registry, w, t, started, after_learn)
    finally:
        registry.snapshot = None


def _trained(settings: Settings, wrap: Wrap, source: DataSource, registry: Registry, w: int, t: int,
             started: float, after_learn: Callable[[], None] | None = None) -> Outcome:
    ctx = Context(settings, source, registry)
    history_id = checks(ctx, w)
    month = source.month_of_row(t - 1)
    step = month_step(month)
    client = registry.client
    with training_run(registry, f"train {month} rows {w}..{t}") as run_id:
        ctx.record.params.update(run_params("train", w, t - w, source.name, settings))
        ctx.record.params.update({
            "holdout_fraction": settings.holdout_fraction,
            "promotion_policy": settings.promotion_policy, "data_month": month,
        })
        if history_id is not None:
            ctx.record.tags[HISTORY_TAG] = history_id
        ctx.record.send(client, run_id)
        learned = wrap(learn, "learn")(ctx, w, t, step)
        if after_learn is not None:
            after_learn()
        wrap(validate_step, "validate")(ctx, run_id, learned, w, t, step)  # before anything is registered
        # Not tasks of their own (the Prefect flow's shape: docs/architecture.md): the comparison
        # is arithmetic on what the pass scored and the notification never fails the lifecycle;
        # each task costs Prefect's engine and its server more than these steps do.
        decision = compare(ctx, learned, step)
        version = wrap(finalise, "finalise")(ctx, run_id, learned, decision, w, t, month)
    registry.reconcile_aliases(t)
    prod_now = registry.version_by_alias(PRODUCTION)
    outcome = Outcome(
        "trained", w, t, month, run_id, version,
        production_version=str(prod_now.version) if prod_now is not None else None,
        prequential_mae=learned.prequential_mae,
        frozen_mae=learned.result["frozen"]["mae"] if learned.result["frozen"] is not None else None,
        holdout_mae_challenger=decision.challenger_mae,
        holdout_mae_production=decision.production_mae,
        decision=decision.label, reason=decision.reason, horizon=learned.horizon, cleaned_rows=learned.result["cleaning"]["kept"],
        rows_decoded=learned.result["rows"], learn_seconds=learned.seconds,
    )
    outcome.seconds = time.perf_counter() - started
    return notify(ctx, outcome)


def run_lifecycle(settings: Settings) -> Outcome:
    """One lifecycle without Prefect."""
    return lifecycle(settings)
