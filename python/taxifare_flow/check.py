"""`taxifare check`: the stored state against the guarantees (README, "Guarantees"), in plain
words. Every lifecycle runs the safe repairs and the cheap checks first (`repair`,
`assert_sound`), so nothing is trained on top of a broken state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from taxifare_flow._core import DataSourceError
from taxifare_flow.data import WAREHOUSE_HASH_PREFIX
from taxifare_flow.errors import IntegrityError, LockTimeout

if TYPE_CHECKING:
    from taxifare_flow.data import DataSource
    from taxifare_flow.ml_logic.registry import Registry
    from taxifare_flow.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    """One verified guarantee: `problems` is empty when it holds."""

    what: str
    problems: list[str]
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def repair(registry: Registry, thorough: bool = False) -> list[str]:
    """The safe repairs, only under the lifecycle lock: a RUNNING training run is what a killed
    lifecycle left (marked KILLED), a version whose run is not FINISHED and active is tagged
    `orphaned`, and no alias stays on such a version. `thorough` (`check --repair`) also reads
    every version, for those whose run the experiment's searches cannot find (registered
    without a run, or whose run was deleted for good): too slow for every lifecycle."""
    notes = [f"run {r} was left RUNNING: marked KILLED" for r in registry.kill_stale_runs()]
    notes += [f"version {v} tagged orphaned" for v in registry.tag_orphans()]
    if thorough:
        notes += [f"version {v} tagged orphaned" for v in registry.tag_unreachable_orphans()]
    notes += registry.retract_aliases()
    return notes


def tiling_problems(intervals: list[tuple[int, int]], watermark: int) -> list[str]:
    """Where `[first, first + count)` intervals fail to tile `[0, watermark)`."""
    problems, end = [], 0
    for first, count in sorted(intervals):
        if count <= 0:
            problems.append(f"a training run claims {count} rows at row {first}")
        elif first > end:
            problems.append(f"rows {end}..{first} were trained by no finished run (a run deleted or failed after the fact?)")
        elif first < end:
            problems.append(f"rows {first}..{min(end, first + count)} were trained twice")
        end = max(end, first + count)
    if end != watermark:
        # The watermark is where the runs' rows stop tiling from row 0 (docs/watermark.md).
        problems.append(f"the finished training runs reach row {end} but tile from row 0 only up to the watermark {watermark}")
    return problems


def training_intervals(registry: Registry) -> list[tuple[int, int]]:
    return [(int(r.data.params["first_row"]), int(r.data.params["row_count"])) for r in registry.training_runs()]


def assert_sound(settings: Settings, source: DataSource, registry: Registry, watermark: int) -> None:
    """The cheap checks a lifecycle runs before training: raises `IntegrityError`."""
    problems = source.problems() + tiling_problems(training_intervals(registry), watermark)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise IntegrityError(f"{problems[0]}{more}: nothing was trained; run `taxifare check` for the whole state")


def _alias_problems(registry: Registry) -> list[str]:
    from taxifare_flow.ml_logic.registry import CHALLENGER, PRODUCTION

    problems = []
    for alias in (PRODUCTION, CHALLENGER):
        v = registry.version_by_alias(alias)
        if v is not None and not registry.is_valid(v):
            problems.append(f"{alias} points at version {v.version}, whose run {v.run_id} is {registry.run_state(v.run_id)}: "
                            f"models:/{registry.model_name}@{alias} still loads it until `taxifare check --repair` or the "
                            "next lifecycle moves the alias off it")
    return problems


def _orphan_problems(registry: Registry) -> list[str]:
    return [f"version {v.version} comes from run {v.run_id}, which is {registry.run_state(v.run_id)}, and is not tagged orphaned"
            for v in registry.versions() if "orphaned" not in v.tags and not registry.is_valid(v)]


def _stale_runs(registry: Registry) -> list[str]:
    return [f"{r.data.params['context']} run {r.info.run_id} is RUNNING with no lifecycle running" for r in registry.running_runs()]


def _running_runs(registry: Registry) -> set[str]:
    return {r.info.run_id for r in registry.running_runs()}


def _rows_problems(rows: int | None, watermark: int) -> list[str]:
    if rows is None:
        return ["the source's row count is unknown: its file names leave a gap or overlap (see above)"]
    if rows < watermark:
        return [f"the source holds {rows:,} rows but the model was trained on rows up to {watermark:,} (the source was "
                "reset, MLflow was not)"]
    return []


def _head_problems(registry: Registry, watermark: int) -> list[str]:
    """The next lifecycle continues the version that ends at the watermark: a model renamed
    (MLFLOW_MODEL_NAME changed) or a deleted version leaves none, and every lifecycle fails."""
    from mlflow.exceptions import MlflowException

    if watermark == 0 or registry.head_for(watermark) is not None:
        return []
    where = ""
    latest = [r for r in registry.training_runs()
              if int(r.data.params["first_row"]) + int(r.data.params["row_count"]) == watermark]
    if latest:
        try:
            names = sorted({v.name for v in registry.client.search_model_versions(f"run_id = '{latest[0].info.run_id}'")
                            if v.name != registry.model_name})
        except MlflowException:
            names = []
        if names:
            where = (f": run {latest[0].info.run_id} registered it as model {names[0]!r}; set MLFLOW_MODEL_NAME={names[0]} "
                     "(or start a new experiment)")
    return [f"no valid version of {registry.model_name!r} ends at row {watermark:,}, so every lifecycle will fail"
            + (where or ": its version was deleted, or MLFLOW_MODEL_NAME changed since it was registered")]


def _ledger_problems(settings: Settings, source: DataSource, registry: Registry, run_id: str, first: int,
                     count: int) -> list[str]:
    """A run whose rows match its lineage hash: its ledger (if it kept one) rebuilt from those
    rows must be the one it logged (`ml_logic.ledger`)."""
    from taxifare_flow.ml_logic.ledger import run_ledger

    stored = run_ledger(settings, registry, run_id)
    if stored is None:
        return []
    rebuilt = source.ledger(first, count, stored.feature_version)
    if rebuilt is None:
        return []
    differs = rebuilt.mismatch(stored)
    if differs is None:
        return []
    return [f"the ledger of run {run_id} (rows {first}..{first + count}) is not the ledger of those rows: {differs}"]


def _lineage_problems(settings: Settings, source: DataSource, registry: Registry) -> list[str]:
    from taxifare_flow.flow.unlearn import UNLEARN

    problems = []
    # The rows an unlearn run removed are hashed too: it removed the rows it names.
    for run in registry.training_runs() + registry.finished_runs(UNLEARN):
        first, count = int(run.data.params["first_row"]), int(run.data.params["row_count"])
        stored = run.data.tags.get("lineage_hash")
        if stored is None:
            problems.append(f"run {run.info.run_id} (rows {first}..{first + count}) has no lineage_hash")
        elif stored.startswith(WAREHOUSE_HASH_PREFIX) and source.name != "bigquery":
            problems.append(f"run {run.info.run_id} (rows {first}..{first + count}) was hashed inside BigQuery: "
                            "check it with DATA_SOURCE=bigquery")
        else:
            try:
                same = source.content_hash(first, count, like=stored) == stored
            except DataSourceError as e:
                problems.append(f"rows {first}..{first + count} (run {run.info.run_id}) cannot be read: {e}")
                continue
            if not same:
                problems.append(f"rows {first}..{first + count} of the source differ from those run {run.info.run_id} trained on")
            else:
                problems += _ledger_problems(settings, source, registry, run.info.run_id, first, count)
    return problems


def _unlearn_problems(registry: Registry, watermark: int) -> list[str]:
    """Rows unlearnt (`context=unlearn` runs) are trained rows, each unlearnt once, and the
    lineage head descends from every version that unlearnt some: it holds none of them. An
    unlearn run is no training run: it leaves the tiling and the watermark as they were."""
    from taxifare_flow.flow.unlearn import UNLEARN, descends_from, unlearnt_ranges

    done = unlearnt_ranges(registry)
    problems = []
    # A deleted unlearn run retracts the unlearning: the version before it is the head again.
    for run in registry.deleted_runs(UNLEARN):
        first = int(run.data.params.get("first_row", "0"))
        end = first + int(run.data.params.get("row_count", "0"))
        if not any(u.first_row <= first and end <= u.end_row for u in done):
            problems.append(f"unlearn run {run.info.run_id} (rows {first:,}..{end:,}) is deleted, so the lineage head may "
                            f"hold those rows again: restore it (mlflow runs restore --run-id {run.info.run_id}) or unlearn "
                            "them again")
    if not done:
        return problems
    for u in done:
        if u.end_row > watermark:
            problems.append(f"unlearn run {u.run_id} removed rows {u.first_row:,}..{u.end_row:,}, beyond the trained rows "
                            f"(watermark {watermark:,})")
    for before, after in zip(done, done[1:]):
        if after.first_row < before.end_row:
            problems.append(f"rows {after.first_row:,}..{min(before.end_row, after.end_row):,} were unlearnt twice (runs "
                            f"{before.run_id} and {after.run_id})")
    head = registry.head_for(watermark)
    if head is not None:
        problems += descends_from(registry, head, done)
    return problems


def _refusal_finding(registry: Registry, watermark: int) -> Finding:
    """A refused range stays untrained until accepted (a guarantee that holds); the last
    refusal still unresolved is shown, so that nobody wonders why the watermark stopped."""
    from taxifare_flow.validation.ledger import NOTE, last_unresolved_refusal

    run = last_unresolved_refusal(registry, watermark)
    note = "" if run is None else (f"unresolved: {run.data.tags.get(NOTE, '')} (validation run {run.info.run_id}; "
                                   "`taxifare validate` shows the table)")
    return Finding("a range the data-validation gate refused stays untrained", [], note)


def check(settings: Settings, deep: bool = False, repair_state: bool = False) -> list[Finding]:
    """Verifies the whole state; with `repair_state`, first does the safe repairs (under the
    lock). Raises only when a store cannot be reached; a broken guarantee is a finding."""
    from taxifare_flow.data import open_source
    from taxifare_flow.flow.lock import lifecycle_lock
    from taxifare_flow.ml_logic.lineage import history_problems
    from taxifare_flow.ml_logic.registry import open_registry
    from taxifare_flow.ml_logic.watermark import get_latest_trained_row

    source = open_source(settings)
    findings = [Finding("the data source is what its names say", source.problems())]
    findings.append(Finding("the pending history has its provenance", source.pending_problems()))
    registry = open_registry(settings)
    repaired: list[str] = []

    def judge(lifecycle_running: bool) -> list[Finding]:
        # Read in one go, under the lock when it is free: a lifecycle finishing between two
        # reads would otherwise look like a broken tiling or an untagged orphan.
        watermark = get_latest_trained_row(settings=settings)
        try:
            rows: int | None = source.row_count()
        except DataSourceError:
            rows = None  # its names leave a gap or overlap: the first finding says where
        running = lifecycle_running and _running_runs(registry)
        return [
            Finding(f"finished training runs tile [0, {watermark:,})", tiling_problems(training_intervals(registry), watermark)),
            Finding("the source holds every trained row", _rows_problems(rows, watermark)),
            Finding(f"the lineage head is a version of {settings.mlflow_model_name!r}", _head_problems(registry, watermark)),
            Finding("no stale RUNNING training run", [] if lifecycle_running else _stale_runs(registry),
                    "a lifecycle is running now: its RUNNING run is not stale" if lifecycle_running else ""),
            Finding("versions of unfinished or deleted runs are tagged orphaned",
                    [p for p in _orphan_problems(registry) if not (running and any(r in p for r in running))]),
            Finding("aliases point at versions of finished, active runs", _alias_problems(registry)),
            Finding("the registered model is this experiment's lineage, no version from another", registry.crossed_lineages()),
            Finding("the training runs were trained on the pending history", history_problems(settings, registry.training_runs())),
            Finding("unlearnt rows were trained, each unlearnt once, and the lineage head holds none",
                    _unlearn_problems(registry, watermark)),
            _refusal_finding(registry, watermark),
        ] + ([Finding("each run's lineage hash matches the source rows, and its ledger those rows' statistics",
                      _lineage_problems(settings, source, registry))]
             if deep and rows is not None and rows >= watermark else [])

    try:
        with lifecycle_lock(settings, timeout_seconds=settings.lock_timeout_seconds if repair_state else 0):
            # One read of the registry (the repairs keep it current), as a lifecycle does.
            with registry.pinned():
                if repair_state:
                    repaired = repair(registry, thorough=True)
                findings += judge(lifecycle_running=False)
    except LockTimeout:
        if repair_state:
            raise
        with registry.pinned():
            findings += judge(lifecycle_running=True)
    if repaired:
        findings.insert(0, Finding("repairs", [], "; ".join(repaired)))
    return findings


def describe(findings: list[Finding]) -> list[tuple[bool, str, str]]:
    """(ok, what, detail) rows for rendering."""
    rows: list[tuple[bool, str, str]] = []
    for f in findings:
        rows.append((f.ok, f.what, f.note if f.ok else f.problems[0]))
        rows += [(False, "", p) for p in f.problems[1:]]
    return rows
