"""Moving a lineage to another feature version: the explicit, recorded step.

A model keeps the feature version it was trained with, and a lifecycle continues the lineage
head in the head's version: statistics of different feature sets cannot be added. `backfill`
trains a model of the target version on every trained row `[0, w)` in one pass (cheap with
sufficient statistics: one read of the source, no holdout) and registers it as a new version
that ends at `w`. It then is the lineage head (the newest version ending at `w`), so the next
lifecycle continues it; production is untouched until a challenger of the new version wins the
usual comparison against it.

What it does not touch: the watermark and the tiling of training intervals are made of the
FINISHED runs with `context = train`; the backfill run has `context = backfill`, so both stay
exactly as they were (the backfill trains rows that are already trained, it does not consume
new ones). Rows removed by `taxifare unlearn` stay out: the backfill trains the segments
between them, and records them on its version (tag `segments`). Crash safety is the lifecycle's: the run is FINISHED only after its version is
registered, and a version whose run did not finish is never a head.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from taxifare_flow.check import assert_sound, repair
from taxifare_flow.data import DataSource, open_source
from taxifare_flow.errors import RegistryError, SettingsError
from taxifare_flow.flow.lock import lifecycle_lock
from taxifare_flow.flow.training_run import RunRecord, run_params, training_run, version_tags
from taxifare_flow.flow.unlearn import SEGMENTS_TAG, kept_segments, unlearnt_ranges
from taxifare_flow.ml_logic.lineage import HISTORY_TAG, assert_lineage
from taxifare_flow.ml_logic.registry import PRODUCTION, Registry, open_registry
from taxifare_flow.ml_logic.watermark import get_latest_trained_row
from taxifare_flow.model import Model
from taxifare_flow.settings import FEATURE_VERSIONS, Settings

log = logging.getLogger(__name__)


@dataclass
class Backfilled:
    """What a backfill did."""

    status: str  # "backfilled" | "nothing to do"
    feature_version: int
    end_row: int
    version: str | None = None
    run_id: str | None = None
    previous_head: str | None = None
    cleaned_rows: int = 0
    seconds: float = 0.0


def backfill(settings: Settings, feature_version: int | None = None) -> Backfilled:
    """Moves the lineage to `feature_version` (default: `FEATURE_VERSION`), under the lock."""
    target = feature_version or settings.feature_version
    if str(target) not in FEATURE_VERSIONS:
        raise SettingsError(f"feature version {target} does not exist (one of {', '.join(FEATURE_VERSIONS)})")
    started = time.perf_counter()
    with lifecycle_lock(settings):
        source = open_source(settings)
        registry = open_registry(settings)
        with registry.pinned():
            return _backfill(settings, source, registry, target, started)


def _backfill(settings: Settings, source: DataSource, registry: Registry, target: int, started: float) -> Backfilled:
    history_id = assert_lineage(settings, registry)
    w = get_latest_trained_row(settings=settings)
    repair(registry)
    assert_sound(settings, source, registry, w)
    if w == 0:
        log.info("nothing trained yet: the first lifecycle starts with feature version %d", settings.feature_version)
        return Backfilled("nothing to do", target, 0)
    head = registry.head_for(w)
    if head is None:
        raise RegistryError(f"no valid model version ends at row {w}: run `taxifare check`")
    if registry.load_kernel(head).feature_version == target:
        return Backfilled("nothing to do", target, w, previous_head=str(head.version))
    client = registry.client
    record = RunRecord()
    with training_run(registry, f"backfill features v{target} rows 0..{w}") as run_id:
        record.params.update(run_params("backfill", 0, w, source.name, settings))
        record.params.update({"feature_version": target, "parent_version": str(head.version)})
        if history_id is not None:
            record.tags[HISTORY_TAG] = history_id
        record.send(client, run_id)
        model = Model(settings.ridge_alpha, settings.half_life_months, feature_version=target)
        # No holdout: every trained row goes into the statistics, read once; rows unlearnt
        # (`taxifare unlearn`) are left out, each remaining segment one pass.
        segments = kept_segments(w, unlearnt_ranges(registry))
        results = [source.learn(a, b - a, b, model.core, None, None) for a, b in segments]
        result = results[0]
        kept = sum(r["cleaning"]["kept"] for r in results)
        result["cleaning"]["kept"] = kept
        result["lineage_hash"] = ",".join(r["lineage_hash"] for r in results)
        seconds = time.perf_counter() - started
        record.params["cleaned_row_count"] = kept
        record.tags.update(lineage_hash=result["lineage_hash"], decision="backfill")
        record.metric("pass_rows_per_second", w / seconds if seconds > 0 else None, 0)
        record.send(client, run_id)
        production = registry.version_by_alias(PRODUCTION)
        tags = version_tags(
            first_row=0, end_row=w, data_month=source.month_of_row(w - 1), decision="backfill",
            decision_reason=f"feature version {target} trained on rows 0..{w}, replacing head version {head.version}",
            evaluated_production=str(production.version) if production is not None else "none",
            parent_version=str(head.version), result=result, feature_version=target,
        )
        if len(segments) > 1 or segments[0] != (0, w):
            tags[SEGMENTS_TAG] = ",".join(f"{a}..{b}" for a, b in segments)
        version = registry.log_model_version(run_id, model, tags)
    registry.reconcile_aliases(w)
    log.info("lineage moved to feature version %d: version %s ends at row %d", target, version.version, w)
    return Backfilled("backfilled", target, w, str(version.version), run_id, str(head.version),
                      kept, time.perf_counter() - started)
