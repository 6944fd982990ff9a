"""Unlearning rows that should never have been learnt (a broken delivery, a deletion request):
`taxifare unlearn --month YYYY-MM | --rows FIRST..END`.

The rows are read from the data source again and removed exactly from the lineage head
(`Model.unlearn`: each row at the weight it has in the head under forgetting, its ride month's
age). With `BQ_COMPUTE=warehouse` no ride leaves BigQuery: the removed rows' statistics per ride
month are computed in SQL (the query a lifecycle's pass runs, its "holdout" segment being the
removed rows) and subtracted. A `context=unlearn` run records what was removed and registers
the new version, which ends at the watermark and so is the lineage head the next lifecycle
continues; production moves to it when production had learnt those rows.

A window head (`horizon` 12m/3m/1m, tags `window_since`/`window_row`) holds, before its run's
first row, only the rows of its window's months: those rows are subtracted through their
per-month ledger, months before the window left out, so the removal stays exact (none held:
the new version is the head's model).

What does not change: the watermark and the tiling are made of the `context=train` runs; the
rows were consumed and are never trained again (a later `backfill` leaves them out too).

Exactness: a training run cleans its whole range with one state, so a duplicate key is dropped
where it repeats an earlier row of the same run. The removed rows are therefore cleaned again
from the start of the range the head learnt them in (their training run, or the segment of a
backfill), and only the rows from the removed range's first on are subtracted.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from taxifare_flow import _core
from taxifare_flow.check import assert_sound, repair
from taxifare_flow.data import WAREHOUSE_HASH_PREFIX, open_source
from taxifare_flow.errors import RegistryError, UnlearnRefused
from taxifare_flow.flow.lock import lifecycle_lock
from taxifare_flow.flow.training_run import RunRecord, run_params, training_run, version_tags
from taxifare_flow.ml_logic.horizons import WINDOW_ROW_TAG, WINDOW_SINCE_TAG
from taxifare_flow.ml_logic.lineage import HISTORY_TAG, assert_lineage
from taxifare_flow.ml_logic.registry import PRODUCTION, open_registry
from taxifare_flow.ml_logic.watermark import get_latest_trained_row

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

    from taxifare_flow.core_types import PassCounts
    from taxifare_flow.data import DataSource
    from taxifare_flow.ml_logic.registry import Registry
    from taxifare_flow.model import Model
    from taxifare_flow.settings import Settings

log = logging.getLogger(__name__)

#: The run context of an unlearning (DESIGN.md, "Run contexts").
UNLEARN = "unlearn"
#: Version and run tag: the rows a version unlearnt, `FIRST..END`.
UNLEARNT_TAG = "unlearnt_rows"
#: Backfill version tag: the row ranges it trained, each with one cleaning state (`0..300,600..900`).
SEGMENTS_TAG = "segments"


@dataclass(frozen=True)
class UnlearntRange:
    """Rows `[first_row, end_row)` removed from the lineage by a FINISHED `unlearn` run."""

    first_row: int
    end_row: int
    run_id: str
    month: str


@dataclass
class Unlearnt:
    """What an unlearning did."""

    first_row: int
    end_row: int
    month: str | None
    version: str
    run_id: str
    parent_version: str
    raw_rows: int
    removed_rows: int
    production_before: str | None
    production_after: str | None
    production_reason: str
    seconds: float = 0.0


# -- the range ---------------------------------------------------------------------------

def parse_rows(text: str) -> tuple[int, int]:
    """`FIRST..END` (thousands separators allowed) as `(first, end)`, end exclusive."""
    m = re.fullmatch(r"\s*([\d,_]+)\s*\.\.\s*([\d,_]+)\s*", text)
    if m is None:
        raise UnlearnRefused(f"--rows {text!r} is not FIRST..END (row_ids, END exclusive: --rows 2500..5000)")
    first, end = (int(g.replace(",", "").replace("_", "")) for g in m.groups())
    if end <= first:
        raise UnlearnRefused(f"--rows {text}: the range is empty (END must be greater than FIRST)")
    return first, end


def resolve(source: DataSource, month: str | None, rows: str | None) -> tuple[int, int, str | None]:
    """The rows to remove: those of a month of the source, or a `row_id` range."""
    if (month is None) == (rows is None):
        raise UnlearnRefused("say what to unlearn: --month YYYY-MM or --rows FIRST..END (one of them)")
    if rows is not None:
        first, end = parse_rows(rows)
        return first, end, None
    assert month is not None
    if re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month) is None:
        raise UnlearnRefused(f"--month {month!r} is not a month (YYYY-MM)")
    months = source.months()
    found = next((m for m in months if m.month == month), None)
    if found is None:
        held = f"it holds {months[0].month} … {months[-1].month}" if months else "it is empty"
        raise UnlearnRefused(f"month {month} is not in the data source {source.where()} ({held}): nothing to unlearn")
    return found.first_row, found.end_row, month


def unlearnt_ranges(registry: Registry) -> list[UnlearntRange]:
    """The rows removed by the FINISHED, active `unlearn` runs of the experiment, in row order."""
    runs: list[Run] = registry.finished_runs(UNLEARN)
    found = []
    for r in runs:
        first, count = int(r.data.params["first_row"]), int(r.data.params["row_count"])
        found.append(UnlearntRange(first, first + count, r.info.run_id, r.data.params.get("unlearnt_month", "")))
    return sorted(found, key=lambda u: (u.first_row, u.end_row))


def kept_segments(watermark: int, done: list[UnlearntRange]) -> list[tuple[int, int]]:
    """`[0, watermark)` without the unlearnt rows: what a backfill trains."""
    segments, at = [], 0
    for u in done:
        if u.first_row > at:
            segments.append((at, min(u.first_row, watermark)))
        at = max(at, u.end_row)
    if at < watermark:
        segments.append((at, watermark))
    return [s for s in segments if s[0] < s[1]] or [(0, 0)]


def _span(first: int, end: int) -> str:
    return f"{first:,}..{end:,}"


def refusal(first: int, end: int, watermark: int, done: list[UnlearntRange]) -> str | None:
    """Why rows `[first, end)` cannot be unlearnt from a lineage trained up to `watermark`
    that already unlearnt `done`, or `None`."""
    if watermark == 0:
        return f"rows {_span(first, end)} were never trained: nothing is trained yet"
    if end > watermark:
        untrained = _span(max(first, watermark), end)
        return (f"rows {untrained} were never trained (the watermark is {watermark:,}): only trained rows can be "
                "unlearnt; rows not yet trained are left out by not training them")
    for u in done:
        if first < u.end_row and u.first_row < end:
            what = f"month {u.month}" if u.month else f"rows {_span(u.first_row, u.end_row)}"
            return (f"rows {_span(max(first, u.first_row), min(end, u.end_row))} were already unlearnt ({what}, unlearn "
                    f"run {u.run_id}): a row is unlearnt once")
    return None


# -- where the head learnt the rows ----------------------------------------------------

def _chain(registry: Registry, head: ModelVersion) -> list[ModelVersion]:
    """The head and its ancestors (by `parent_version`), newest first."""
    by_number = {str(v.version): v for v in registry.versions()}
    chain, seen = [], set()
    current: ModelVersion | None = head
    while current is not None and str(current.version) not in seen:
        chain.append(current)
        seen.add(str(current.version))
        current = by_number.get(current.tags.get("parent_version", "none"))
    return chain


def descends_from(registry: Registry, head: ModelVersion, done: list[UnlearntRange]) -> list[str]:
    """Where the head does not descend from the version of an unlearn run in `done` (so it
    may hold those rows again), in plain words; empty when it descends from all."""
    chain = {v.run_id for v in _chain(registry, head)}
    problems = []
    for u in done:
        if u.run_id not in chain:
            problems.append(f"the lineage head (version {head.version}) does not descend from the version of unlearn run "
                            f"{u.run_id}: it may hold rows {_span(u.first_row, u.end_row)} again")
    return problems


def _parse_segments(text: str) -> list[tuple[int, int]]:
    return [parse_rows(part) for part in text.split(",") if part.strip()]


def learnt_segments(registry: Registry, head: ModelVersion, watermark: int) -> list[tuple[int, int]]:
    """The row ranges the head learnt, each with one cleaning state: the training runs' ranges,
    and below a backfill in its lineage, the backfill's segments."""
    from taxifare_flow.check import training_intervals

    backfill = next((v for v in _chain(registry, head) if v.tags.get("decision") == "backfill"), None)
    floor = int(backfill.tags.get("end_row", "0")) if backfill is not None else 0
    segments: list[tuple[int, int]] = []
    if backfill is not None:
        segments = _parse_segments(backfill.tags.get(SEGMENTS_TAG, "")) or [(0, floor)]
    segments += [(f, f + n) for f, n in training_intervals(registry) if f >= floor and n > 0]
    return sorted(s for s in segments if s[0] < watermark)


def pieces(first: int, end: int, segments: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """`[first, end)` cut along `segments`: `(clean_from, piece_first, piece_end)`, the piece's
    rows being cleaned from `clean_from` on (as when they were learnt)."""
    out = []
    for s, e in segments:
        a, b = max(first, s), min(end, e)
        if a < b:
            out.append((s, a, b))
    covered = sum(b - a for _, a, b in out)
    if covered != end - first:
        raise UnlearnRefused(f"rows {_span(first, end)} are not all in a range the lineage head learnt (the training runs "
                             "do not cover them): run `taxifare check`")
    return out


def subtract(model: Model, removed: _core.Model) -> None:
    """Removes statistics computed elsewhere (the warehouse) from the head's kernel: they must
    be of the head's feature version, or their columns mean other things."""
    if removed.feature_version != model.feature_version:
        raise UnlearnRefused(
            f"the removed rows' statistics are of feature version {removed.feature_version} but the lineage head is "
            f"feature version {model.feature_version}: statistics of different feature sets cannot be subtracted "
            "(nothing was changed)")
    model.core.unlearn_model(removed)


@dataclass(frozen=True)
class Window:
    """What a window head holds (`horizons.WINDOW_SINCE_TAG`): of the rows before `row`, those
    whose ride month is `since` or later; every row from `row` on."""

    since: str
    row: int


def held_window(head: ModelVersion) -> Window | None:
    """The window a head holds, from its tags; `None` for a model of the whole lineage."""
    since, row = head.tags.get(WINDOW_SINCE_TAG), head.tags.get(WINDOW_ROW_TAG)
    if since and row:
        return Window(since, int(row))
    horizon = head.tags.get("horizon", "all")
    if horizon != "all":
        raise UnlearnRefused(f"the lineage head (version {head.version}) is the {horizon} window model but was registered "
                             f"without the `{WINDOW_SINCE_TAG}`/`{WINDOW_ROW_TAG}` tags (before they existed): which rows it "
                             "holds is not known, run it again after the next lifecycle (nothing was changed)")
    return None


def _window_part(source: DataSource, model: Model, clean_from: int, a: int, b: int, since: str) -> int:
    """Removes, of rows `[a, b)` (cleaned from `clean_from` on, as learnt), those of ride month
    `since` or later: the per-month statistics of `[clean_from, b)` minus those of
    `[clean_from, a)` (one cleaning state, so the rows before `a` are cleaned alike in both),
    composed as the window was (`since`, unweighted, at the head's clock), then subtracted."""
    alpha, clock = model.core.ridge_alpha, model.last_month

    def window(first: int, count: int) -> tuple[_core.Model, float]:
        ledger = _core.Ledger.of_rows(source.read(first, count), model.feature_version)
        held = sum(n for m, n in ledger.rows() if m >= since)
        return ledger.compose(alpha, since=since, clock=clock), held

    rows, removed = window(clean_from, b - clean_from)
    if a > clean_from:
        before, kept = window(clean_from, a - clean_from)
        rows.unlearn_model(before)
        removed -= kept
    if removed > 0:
        subtract(model, rows)
    return round(removed)


def remove(source: DataSource, settings: Settings, model: Model, first: int, end: int,
           segments: list[tuple[int, int]], window: Window | None = None) -> int:
    """Removes rows `[first, end)` from `model` (a copy of the head); the clean rows removed.
    From a window head (`window`), only the rows it holds."""
    from taxifare_flow.data.bigquery import BigQuerySource

    removed = 0
    for clean_from, a, b in pieces(first, end, segments):
        if window is not None and a < window.row:
            if b > window.row:
                raise UnlearnRefused(f"rows {_span(a, b)} straddle row {window.row:,}, where the lineage head's window "
                                     "starts holding every row, inside one training range: run `taxifare check` "
                                     "(nothing was changed)")
            if isinstance(source, BigQuerySource) and settings.bq_compute == "warehouse":
                raise UnlearnRefused("the lineage head is a window model and the warehouse computes no statistics per "
                                     "ride month for unlearning: set BQ_COMPUTE=local for this run (nothing was changed)")
            removed += _window_part(source, model, clean_from, a, b, window.since)
        elif isinstance(source, BigQuerySource) and settings.bq_compute == "warehouse":
            stats, kept = source.removal_statistics(clean_from, a, b, model.core)
            subtract(model, stats)
            removed += kept
        else:
            counts = model.unlearn(source.read(clean_from, b - clean_from), skip=a - clean_from)
            removed += counts["unlearnt"]
    return removed


# -- the command ---------------------------------------------------------------------------

def unlearn(settings: Settings, month: str | None = None, rows: str | None = None) -> Unlearnt:
    """Removes a month (or a `row_id` range) from the lineage, under the lifecycle lock:
    a `context=unlearn` run and a new version, the lineage head; production moves to it when
    it had learnt those rows. `UnlearnRefused` (nothing changed) when it cannot be done."""
    started = time.perf_counter()
    with lifecycle_lock(settings):
        source = open_source(settings)
        registry = open_registry(settings)
        history_id = assert_lineage(settings, registry)
        first, end, month = resolve(source, month, rows)
        w = get_latest_trained_row(settings=settings)
        repair(registry)
        assert_sound(settings, source, registry, w)
        registry.reconcile_aliases(w)
        done = unlearnt_ranges(registry)
        why = refusal(first, end, w, done)
        if why is not None:
            raise UnlearnRefused(f"{why} (nothing was changed)")
        head = registry.head_for(w)
        if head is None:
            raise RegistryError(f"no valid model version ends at row {w}: run `taxifare check`")
        # What the head holds is what its ancestors did: a version that unlearnt these rows
        # counts even when its run was deleted since (a later version continued it).
        for v in _chain(registry, head):
            if UNLEARNT_TAG in v.tags:
                a, b = parse_rows(v.tags[UNLEARNT_TAG])
                if first < b and a < end:
                    raise UnlearnRefused(f"rows {_span(max(first, a), min(end, b))} were already unlearnt by version "
                                         f"{v.version}, an ancestor of the lineage head (version {head.version}): a row is "
                                         "unlearnt once (nothing was changed)")
        # A window model (horizons, issue 22) holds only its last months: only the removed rows
        # it holds are subtracted (none, when they are all before its window: the new version
        # is the head's model, and the run still records what was removed).
        window = held_window(head)
        model = registry.load_kernel(head)
        tagged = head.tags.get("feature_version")
        if tagged and tagged != str(model.feature_version):
            raise UnlearnRefused(f"version {head.version} is tagged feature version {tagged} but its model is feature "
                                 f"version {model.feature_version}: the lineage head is inconsistent (nothing was changed)")
        before = model.n_rows
        label = f"month {month}" if month else f"rows {_span(first, end)}"
        try:
            removed = remove(source, settings, model, first, end, learnt_segments(registry, head, w), window)
        except _core.ModelError as e:
            raise UnlearnRefused(f"{label}: the lineage head cannot unlearn them ({e}); nothing was changed") from None
        hash_like = WAREHOUSE_HASH_PREFIX if source.name == "bigquery" and settings.bq_compute == "warehouse" else None
        lineage_hash = source.content_hash(first, end - first, like=hash_like)

        production = registry.version_by_alias(PRODUCTION)
        contains = production is not None and int(production.tags.get("end_row", "0") or 0) > first
        if production is None:
            reason = f"{label} unlearnt from version {head.version}; no production model to move"
        elif contains:
            reason = (f"production (version {production.version}) had learnt {label}: it moves to the version without "
                      f"them (version {head.version} minus {label})")
        else:
            reason = (f"{label} unlearnt from version {head.version}; production (version {production.version}, rows up "
                      f"to {int(production.tags.get('end_row', '0') or 0):,}) never learnt them and stays")
        if window is not None and removed == 0:
            reason += (f" (the lineage head is the {head.tags.get('horizon', 'window')} window model of the months from "
                       f"{window.since} on and held none of them: its model is unchanged)")
        decision = "promote" if contains else "keep"
        client = registry.client
        record = RunRecord()
        with training_run(registry, f"unlearn {label}") as run_id:
            record.params.update(run_params(UNLEARN, first, end - first, source.name, settings))
            record.params.update({
                "half_life_months": model.core.half_life_months, "ridge_alpha": model.core.ridge_alpha,
                "feature_version": model.feature_version, "parent_version": str(head.version),
                "unlearnt_month": month or "", "data_month": source.month_of_row(end - 1) or "",
            })
            if source.name == "bigquery" and settings.bq_compute == "warehouse":
                record.params["compute"] = "warehouse"
            if history_id is not None:
                record.tags[HISTORY_TAG] = history_id
            record.send(client, run_id)
            record.params.update({"cleaned_row_count": removed, "model_rows_before": round(before, 6),
                                  "model_rows_after": round(model.n_rows, 6)})
            record.tags.update({"lineage_hash": lineage_hash, "decision": decision, "decision_reason": reason,
                                UNLEARNT_TAG: f"{first}..{end}"})
            record.send(client, run_id)
            tags = version_tags(
                first_row=first, end_row=w, data_month=head.tags.get("data_month"), decision=decision, decision_reason=reason,
                evaluated_production=str(production.version) if production is not None else "none",
                parent_version=str(head.version),
                result=cast("PassCounts", {"lineage_hash": lineage_hash, "cleaning": {"kept": removed}}),
                feature_version=model.feature_version,
            )
            tags.update({UNLEARNT_TAG: f"{first}..{end}", "context": UNLEARN})
            if window is not None:
                # The new version holds what the head held, minus the rows: the next lifecycle
                # continues it alone (this run keeps no ledger) and passes the tags on.
                tags.update({WINDOW_SINCE_TAG: window.since, WINDOW_ROW_TAG: str(window.row), "horizon":
                             head.tags.get("horizon", "all")})
            version = registry.log_model_version(run_id, model, tags)
        # Production moves by the version's decision, compare-and-set, as after a promotion: a
        # stop right here is repaired by the next lifecycle's `reconcile_aliases`.
        registry.reconcile_aliases(w)
        after = registry.version_by_alias(PRODUCTION)
        if contains:
            log.warning("production → version %s: %s", version.version, reason)
        else:
            log.info("%s", reason)
        return Unlearnt(first, end, month, str(version.version), run_id, str(head.version), end - first, removed,
                        str(production.version) if production is not None else None,
                        str(after.version) if after is not None else None, reason, time.perf_counter() - started)
