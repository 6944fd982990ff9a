"""Whose lineage this is: the experiment that owns the registered model, and the history its
runs were trained on.

A lineage is one experiment's runs and one registered model's versions, trained on one history.
Two teams sharing a tracking store with the same `MLFLOW_MODEL_NAME` would otherwise continue
each other's models; a history swapped under a kept store (`HISTORY_SEED=7
reset_data_sources`, `import_csv --replace`) would otherwise be trained on top of a model of
another history. Both are refused before anything moves (`LineageError`, one line saying what
to do), and `taxifare check` reports what is already crossed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taxifare_flow.errors import LineageError

if TYPE_CHECKING:
    from mlflow.entities import Run

    from taxifare_flow.ml_logic.registry import Registry
    from taxifare_flow.settings import Settings

#: Run tag of a training run (and a backfill run): the identity of the history it trained on.
HISTORY_TAG = "history_id"

_ELSEWHERE = "restore that history, or start over with `taxifare reset_data_sources --fresh` or a new MLFLOW_EXPERIMENT"


def pending_history_id(settings: Settings) -> str | None:
    """The identity of the pending history (its manifest's), `None` when there is none.
    Raises `HistoryError` for month files whose origin is unknown."""
    from taxifare_flow.data.history import provenance

    p = provenance(settings.pending_dir)
    return p.identity if p is not None else None


def recorded_histories(runs: list[Run]) -> dict[str, list[str]]:
    """History identity → the training runs that recorded it (runs from before identities
    were recorded have none and are not counted)."""
    found: dict[str, list[str]] = {}
    for r in runs:
        hid = r.data.tags.get(HISTORY_TAG)
        if hid:
            found.setdefault(hid, []).append(r.info.run_id)
    return found


def history_problems(settings: Settings, runs: list[Run]) -> list[str]:
    """Where the lineage's runs were trained on several histories, or on another history than
    the pending one."""
    from taxifare_flow.errors import HistoryError

    recorded = recorded_histories(runs)
    experiment = settings.mlflow_experiment
    if len(recorded) > 1:
        counts = ", ".join(f"{len(v)} on {k}" for k, v in sorted(recorded.items()))
        return [f"the training runs of experiment {experiment!r} come from {len(recorded)} histories ({counts})"]
    try:
        pending = pending_history_id(settings)
    except HistoryError:
        return []  # the pending history's own finding says why
    if recorded and pending is not None and pending not in recorded:
        (trained,) = recorded
        return [f"the pending history is {pending} but experiment {experiment!r} was trained on {trained}: {_ELSEWHERE}"]
    return []


def assert_same_history(settings: Settings, runs: list[Run]) -> str | None:
    """Refuses (`LineageError`) a pending history other than the lineage's; returns its
    identity, to be recorded on the run."""
    from taxifare_flow.errors import HistoryError

    problems = history_problems(settings, runs)
    if problems:
        raise LineageError(f"{problems[0]} (nothing was changed)")
    try:
        return pending_history_id(settings)
    except HistoryError:
        return None  # month files of unknown origin: no month of them arrives (`provenance` refuses)


def assert_may_arrive(settings: Settings) -> None:
    """Before a month arrives (`get_new_month`, `push_month_to_bq`, `run_all_months`): the
    pending history is the lineage's. A store that does not exist yet holds no lineage (and is
    not created here)."""
    path = settings.sqlite_path()
    if path is not None and not path.exists():
        return
    from taxifare_flow.ml_logic.registry import open_registry

    assert_same_history(settings, open_registry(settings).training_runs())


def assert_lineage(settings: Settings, registry: Registry) -> str | None:
    """What a lifecycle (or a backfill) checks before anything moves: the registered model is
    this experiment's lineage, and the pending history is the one it was trained on. Returns
    the history's identity, to be recorded on the run."""
    registry.assert_owned()
    return assert_same_history(settings, registry.training_runs())
