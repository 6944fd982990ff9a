"""`taxifare validate`: the gate's verdict on the untrained rows, nothing trained. A
statistics-only read of `[w, t)` (the lifecycle computes the same statistics in its pass)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from taxifare_flow.validation.gate import Verdict

if TYPE_CHECKING:
    from taxifare_flow.core_types import MonthProfile
    from taxifare_flow.settings import Settings


def untrained_verdict(settings: Settings) -> Verdict | None:
    """The verdict on rows `[watermark, total)`; `None` when every row is trained."""
    from taxifare_flow import _core
    from taxifare_flow.data import open_source
    from taxifare_flow.data.local import LocalSource
    from taxifare_flow.ml_logic.registry import open_registry
    from taxifare_flow.ml_logic.watermark import get_latest_trained_row
    from taxifare_flow.validation.step import verdict_for

    source = open_source(settings)
    w, t = get_latest_trained_row(settings=settings), source.row_count()
    if t <= w:
        return None
    profile: list[MonthProfile]
    if isinstance(source, LocalSource):
        profile = _core.profile_source_rows(source.dir, w, t - w)["profile"]
    else:
        profile = _core.profile_rows(source.read(w, t - w))["profile"]
    return verdict_for(open_registry(settings), source, profile, w, t)


def table_rows(verdict: Verdict) -> list[tuple[str, str, str, str]]:
    """(check, value, threshold, verdict) rows: the failures first, then the rest."""
    ordered = verdict.failures + [c for c in verdict.checks if c.ok]
    return [(c.name, f"{c.value:.4f}", f"{c.threshold:.4f}", "ok" if c.ok else f"REFUSED: {c.detail}") for c in ordered]
