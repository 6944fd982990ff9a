"""The skeleton every run that registers a model version shares (a lifecycle's `train` run, a
`backfill` run): the run is created RUNNING, its record goes to MLflow in batches, its model
version carries the lineage tags, and the run is marked FINISHED only after the version is
registered and while the lifecycle lock is still held (FAILED on any exception). The watermark
counts FINISHED runs only, so it never moves past rows whose model was not saved.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from taxifare_flow import _core
from taxifare_flow.errors import TrackingStoreError
from taxifare_flow.flow.lock import assert_lock_held
from taxifare_flow.ml_logic.store import no_space

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from taxifare_flow.core_types import PassCounts
    from taxifare_flow.ml_logic.registry import Registry
    from taxifare_flow.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class RunRecord:
    """What a run logs, sent to MLflow in batches: params, metrics (with their step), tags."""

    params: dict[str, object] = field(default_factory=dict)
    metrics: dict[str, tuple[float, int]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def metric(self, key: str, value: float | None, step: int) -> None:
        if value is not None and np.isfinite(value):
            self.metrics[key] = (float(value), step)

    def send(self, client: MlflowClient, run_id: str) -> None:
        """One `log_batch` (MLflow caps a batch at 100 params and 1,000 metrics; a run has ~15 of each)."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, step) for k, (v, step) in self.metrics.items()],
            params=[Param(k, str(v)) for k, v in self.params.items()],
            tags=[RunTag(k, v) for k, v in self.tags.items()],
        )
        self.params, self.metrics, self.tags = {}, {}, {}


@contextmanager
def training_run(registry: Registry, run_name: str) -> Iterator[str]:
    """A new RUNNING run's id; FINISHED when the block ends (the lock still held), FAILED if it
    raises. A full disk is one `TrackingStoreError` line."""
    run_id = registry.create_run(run_name).info.run_id
    try:
        yield run_id
        assert_lock_held()  # no other lifecycle can have taken these rows meanwhile
        registry.set_terminated(run_id, "FINISHED")
    except BaseException as e:
        mark_failed(registry, run_id)
        if no_space(e):
            raise TrackingStoreError(
                f"no space left on the device while run {run_id} saved its model ({_core.mask_dsn(str(e))}): free some "
                "space and run it again (the run is FAILED: nothing was trained)"
            ) from e
        raise


def mark_failed(registry: Registry, run_id: str) -> None:
    """Marks the run of a failed lifecycle FAILED. On a full disk that write may fail as well:
    the run's partial model artifacts (no version uses them) are removed to make room, and it
    is tried again; failing that, the run stays RUNNING and the next lifecycle marks it KILLED
    (the original error is the one reported, not this one)."""
    # MLflow logs a failed write with its traceback at ERROR before raising it.
    db_log = logging.getLogger("mlflow.store.db.utils")
    level = db_log.level
    db_log.setLevel(logging.CRITICAL)
    try:
        for attempt in range(2):
            try:
                registry.set_terminated(run_id, "FAILED")
                return
            except Exception as e:  # noqa: BLE001 - the lifecycle's own error is the one to report
                if attempt == 0 and no_space(e) and registry.free_unregistered_artifacts(run_id):
                    continue
                log.warning("run %s could not be marked FAILED (%s): the next lifecycle marks it KILLED", run_id,
                            _core.mask_dsn(" ".join(str(e).split())[:300]))
                return
    finally:
        db_log.setLevel(level)


def run_params(context: str, first_row: int, row_count: int, data_source: str, settings: Settings) -> dict[str, object]:
    """The params every such run starts with (DESIGN.md, "MLflow conventions")."""
    return {
        "context": context, "first_row": first_row, "row_count": row_count, "data_source": data_source,
        "ridge_alpha": settings.ridge_alpha, "half_life_months": settings.half_life_months,
    }


def version_tags(*, first_row: int, end_row: int, data_month: str | None, decision: str, decision_reason: str,
                 evaluated_production: str, parent_version: str, result: PassCounts,
                 feature_version: int) -> dict[str, str]:
    """The tags of a registered model version: the rows it ends at, why it exists, its lineage."""
    return {
        "first_row": str(first_row),
        "end_row": str(end_row),
        "data_month": data_month or "",
        "decision": decision,
        "decision_reason": decision_reason,
        "evaluated_production": evaluated_production,
        "parent_version": parent_version,
        "lineage_hash": result["lineage_hash"],
        "cleaned_row_count": str(result["cleaning"]["kept"]),
        "feature_version": str(feature_version),
    }
