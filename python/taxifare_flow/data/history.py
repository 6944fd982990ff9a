"""The pending ride history: generated months (or an imported Kaggle CSV) waiting to arrive."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from taxifare_flow import _core
from taxifare_flow.settings import Settings

log = logging.getLogger(__name__)
NOISE_FLOOR_FILE = "noise_floor.csv"


def history_months(pending_dir: Path) -> list[str]:
    """Months of the history, oldest first (one `YYYY-MM.parquet` each)."""
    if not pending_dir.is_dir():
        return []
    return sorted(p.stem for p in pending_dir.glob("????-??.parquet"))


def pending_problems(settings: Settings) -> list[str]:
    """Where the pending history is missing or lacks its provenance."""
    if not history_months(settings.pending_dir):
        return [f"{settings.pending_dir} holds no history: run reset_data_sources (or import_csv)"]
    return []


def ensure_history(settings: Settings) -> list[dict]:
    """Generates the months of the configured span that are missing (existing ones are kept)."""
    return _core.generate_history(
        settings.pending_dir,
        seed=settings.history_seed,
        first_month=settings.history_first_month,
        last_month=settings.history_last_month,
        rows_per_month=settings.history_rows_per_month,
        keep_existing=True,
    )


def import_csv(settings: Settings, csv_path: Path) -> tuple[list[tuple[str, int]], int]:
    """Splits a Kaggle-format CSV into pending months; returns rows per month and rows skipped."""
    return _core.import_kaggle_csv(csv_path, settings.pending_dir)


def noise_floor(pending_dir: Path) -> dict[str, float]:
    """The generator's noise floor (MAE of the expected fare) per month, when known."""
    path = pending_dir / NOISE_FLOOR_FILE
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {row["month"]: float(row["noise_floor_mae"]) for row in csv.DictReader(f)}
