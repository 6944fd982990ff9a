"""The report of performance over time: one row per training run (month), as CSV, PNG and an
HTML page embedding the PNG."""

from __future__ import annotations

import base64
import csv
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict

from taxifare_flow import _core
from taxifare_flow.data.history import noise_floor, read_manifest
from taxifare_flow.errors import HistoryError
from taxifare_flow.settings import Settings

COLUMNS = [
    "month", "first_row", "end_row", "row_count", "cleaned_row_count", "prequential_mae", "frozen_mae",
    "holdout_mae_challenger", "holdout_mae_production", "decision", "horizon", "noise_floor_mae", "version",
    "validation", "validation_max_ks", "validation_drop_rate",
]
RATE_CHANGE_MONTH = "2012-09"


class ReportRow(TypedDict):
    """One finished training run: the `COLUMNS` of the report."""

    month: str
    first_row: int
    end_row: int
    row_count: int
    cleaned_row_count: int
    prequential_mae: float | None
    frozen_mae: float | None
    holdout_mae_challenger: float | None
    holdout_mae_production: float | None
    decision: str
    #: The horizon of the challenger registered (`horizons.HORIZONS`); empty before horizons.
    horizon: str
    noise_floor_mae: float | None
    version: str
    #: The data-validation gate: passed, accepted (trained though refused), refused (not
    #: trained: a `context=validation` run), or empty for runs from before the gate.
    validation: str
    #: The largest Kolmogorov–Smirnov distance to the recent months, and the drop rate.
    validation_max_ks: float | None
    validation_drop_rate: float | None


#: The columns drawn as lines.
Series = Literal["prequential_mae", "frozen_mae", "holdout_mae_challenger", "noise_floor_mae"]


@dataclass
class ReportFiles:
    csv: Path
    png: Path
    html: Path
    rows: int


def collect(settings: Settings) -> list[ReportRow]:
    """One row per finished training run of the experiment, in row order."""
    from taxifare_flow.ml_logic.registry import open_registry

    reg = open_registry(settings)
    runs = reg.client.search_runs(
        [reg.experiment_id], "params.context = 'train' and attributes.status = 'FINISHED'", max_results=50_000
    )
    versions = {v.run_id: v.version for v in reg.versions()}
    floor = noise_floor(settings.pending_dir)
    rows: list[ReportRow] = []
    for r in runs:
        p, m = r.data.params, r.data.metrics
        first, count = int(p["first_row"]), int(p["row_count"])
        month = p.get("data_month", "")
        rows.append({
            "month": month, "first_row": first, "end_row": first + count, "row_count": count,
            "cleaned_row_count": int(p.get("cleaned_row_count", 0)),
            "prequential_mae": m.get("prequential_mae"), "frozen_mae": m.get("frozen_mae"),
            "holdout_mae_challenger": m.get("holdout_mae_challenger"),
            "holdout_mae_production": m.get("holdout_mae_production"),
            "decision": r.data.tags.get("decision", ""), "horizon": p.get("horizon", ""), "noise_floor_mae": floor.get(month),
            "version": versions.get(r.info.run_id, ""),
            "validation": r.data.tags.get("validation", ""),
            "validation_max_ks": m.get("validation_max_ks"), "validation_drop_rate": m.get("validation_drop_rate"),
        })
    trained = {row["first_row"] for row in rows}
    refusals = reg.client.search_runs(
        [reg.experiment_id], "params.context = 'validation' and tags.validation = 'refused'", max_results=50_000
    )
    for r in refusals:
        p, m = r.data.params, r.data.metrics
        first, count = int(p["first_row"]), int(p["row_count"])
        if first in trained:  # accepted later: the training run's row says so
            continue
        trained.add(first)
        rows.append({
            "month": p.get("data_month", ""), "first_row": first, "end_row": first + count, "row_count": count,
            "cleaned_row_count": 0, "prequential_mae": None, "frozen_mae": None, "holdout_mae_challenger": None,
            "holdout_mae_production": None, "decision": "refused", "horizon": "", "noise_floor_mae": None, "version": "",
            "validation": "refused", "validation_max_ks": m.get("validation_max_ks"),
            "validation_drop_rate": m.get("validation_drop_rate"),
        })
    return sorted(rows, key=lambda row: row["first_row"])


def scenario_marks(settings: Settings) -> list[tuple[str, str]]:
    """`(month, label)` of the changes of the pending history's scenario (none for a plain
    or imported history), for the plot."""
    try:
        p = read_manifest(settings.pending_dir)
    except HistoryError:
        return []
    if p is None or p.kind != "generated":
        return []
    return [(c["start"][:7], f"{c['start']}: {c['what']}") for c in _core.scenario_changes(p.history_scenario)]


def _plot(rows: list[ReportRow], png: Path, marks: Sequence[tuple[str, str]] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    months = [r["month"] for r in rows]
    x = list(range(len(rows)))
    fig, (ax, drift) = plt.subplots(2, 1, figsize=(12, 7), dpi=100, sharex=True, height_ratios=(5, 2))

    def series(key: Series) -> list[float]:
        return [math.nan if (v := r[key]) is None else v for r in rows]

    ax.plot(x, series("prequential_mae"), "o-", color="tab:blue", lw=2, ms=3, label="production, on the new month (prequential MAE)")
    ax.plot(x, series("frozen_mae"), "-", color="tab:red", lw=1.5, label="frozen first model, on the new month")
    ax.plot(x, series("holdout_mae_challenger"), ":", color="tab:green", lw=1.2, label="challenger, holdout MAE")
    ax.plot(x, series("noise_floor_mae"), "--", color="grey", lw=1.2, label="noise floor (best possible MAE)")
    promoted = [i for i, r in enumerate(rows) if r["decision"] == "promote"]
    ax.plot(promoted, [series("holdout_mae_challenger")[i] for i in promoted], "^", color="tab:green", ms=5, label="promoted")
    if RATE_CHANGE_MONTH in months:
        i = months.index(RATE_CHANGE_MONTH)
        ax.axvline(i, color="black", lw=1, ls="-.")
        ax.annotate("2012-09-04 fare change", (i, ax.get_ylim()[1]), xytext=(4, -14), textcoords="offset points", fontsize=9)
    for k, (month, label) in enumerate(m for m in marks if m[0] in months):
        i = months.index(month)
        ax.axvline(i, color="tab:purple", lw=1, ls="--")
        # Along the bottom, away from the legend; right of the line, or left of it late in the span.
        right = i > len(months) * 0.6
        ax.annotate(label, (i, ax.get_ylim()[0]), xytext=(-4 if right else 4, 6 + 12 * k), textcoords="offset points",
                    fontsize=8, color="tab:purple", ha="right" if right else "left", bbox={"fc": "white", "ec": "none", "alpha": 0.8})
    for i, r in enumerate(rows):
        if r["validation"] in ("refused", "accepted"):
            color = "tab:red" if r["validation"] == "refused" else "tab:orange"
            for a in (ax, drift):
                a.axvspan(i - 0.4, i + 0.4, color=color, alpha=0.25, lw=0)
            ax.annotate(r["validation"], (i, ax.get_ylim()[0]), xytext=(2, 4), textcoords="offset points", fontsize=8, color=color)

    def values(key: Literal["validation_max_ks", "validation_drop_rate"]) -> list[float]:
        return [math.nan if (v := r[key]) is None else v for r in rows]

    drift.plot(x, values("validation_max_ks"), "-", color="tab:purple", lw=1.2, label="drift: largest KS distance to recent months")
    drift.plot(x, values("validation_drop_rate"), "-", color="tab:brown", lw=1.2, label="share of rows dropped by cleaning")
    drift.set_ylim(bottom=0)
    drift.grid(alpha=0.3)
    drift.legend(fontsize=8, loc="upper left")
    step = max(1, len(x) // 16)
    drift.set_xticks(x[::step], months[::step], rotation=45, ha="right")
    ax.set_ylabel("MAE ($)")
    ax.set_title("Taxi-fare error month after month")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def write_report(settings: Settings, out_dir: Path | None = None) -> ReportFiles:
    """Writes report.csv, report.png and report.html under `LOCAL_DATA_PATH/reports`."""
    out = out_dir or settings.reports_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = collect(settings)
    paths = ReportFiles(out / "report.csv", out / "report.png", out / "report.html", len(rows))
    with paths.csv.open("w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    _plot(rows, paths.png, scenario_marks(settings))
    img = base64.b64encode(paths.png.read_bytes()).decode()

    def cell(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else html.escape("" if v is None else str(v))

    cells: list[Mapping[str, object]] = list(rows)
    table = "".join("<tr>" + "".join(f"<td>{cell(r[c])}</td>" for c in COLUMNS) + "</tr>" for r in cells)
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    paths.html.write_text(
        "<!doctype html><meta charset=utf-8><title>taxifare-flow report</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}"
        "tr:nth-child(even){background:#f4f4f4}</style>"
        f"<h1>taxifare-flow: error over time</h1><img src='data:image/png;base64,{img}' style='max-width:100%'>"
        f"<table><tr>{head}</tr>{table}</table>"
    )
    return paths
