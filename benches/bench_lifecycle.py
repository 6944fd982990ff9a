"""One lifecycle's data path on a Kaggle-size month (700k rows) with a production model,
against one plain `partial_fit` of the same rows, in one process: the one pass
(`lifecycle_pass_source`: production and frozen scored, challenger trained and scored on the
holdout, rows hashed) and, for comparison, the calls the lifecycle made before it (six reads).
Also the whole `run_lifecycle` (MLflow included) on the same month. Medians of several runs.

    python benches/bench_lifecycle.py [--rows 700000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from common import build_source, median_seconds

from taxifare_flow import _core


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=700_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "taxifare-bench-lifecycle"))
    a = ap.parse_args()
    root = Path(a.dir) / str(a.rows)
    src, _ = build_source(root, ["2012-07", "2012-08"], a.rows)
    w, t = a.rows, 2 * a.rows
    h = t - int((t - w) * 0.15)
    production = _core.Model(feature_version=1)
    production.partial_fit_source(src, 0, w)
    frozen = production.copy()

    def plain_fit() -> None:
        production.copy().partial_fit_source(src, w, t - w)

    def one_pass() -> None:
        before = _core.rows_decoded()
        _core.lifecycle_pass_source(src, w, t - w, h, production.copy(), production, frozen)
        assert _core.rows_decoded() - before == t - w

    def before_one_pass() -> None:
        """The kernel calls of the lifecycle before the one pass, as it made them."""
        challenger = production.copy()
        production.copy().evaluate_source(src, w, t - w)
        frozen.copy().evaluate_source(src, w, t - w)
        challenger.partial_fit_source(src, w, h - w)
        challenger.evaluate_source(src, h, t - h, True)
        production.copy().evaluate_source(src, h, t - h, True)
        challenger.partial_fit_source(src, h, t - h)
        _core.hash_rows(_core.read_rows(src, w, t - w))

    fit = median_seconds(plain_fit, a.repeat)
    new = median_seconds(one_pass, a.repeat)
    old = median_seconds(before_one_pass, max(1, a.repeat // 2))
    whole = whole_lifecycle(root, src, a.rows)
    rows = t - w
    print(f"month of {rows:,} rows, production model trained on {w:,} rows; medians of {a.repeat} runs; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'path':<44}{'seconds':>9}{'rows/s':>14}{'× one fit':>11}")
    for name, s in (("one partial_fit of the month", fit), ("the one pass (lifecycle_pass_source)", new),
                    ("the calls before the one pass (6 reads)", old), ("run_lifecycle, MLflow included", whole)):
        print(f"{name:<44}{s:>9.3f}{rows / s:>14,.0f}{s / fit:>11.2f}")
    print(f"goal: the one pass ≤ 2.0× one fit — {'met' if new <= 2.0 * fit else 'NOT met'} ({new / fit:.2f}×)")


def whole_lifecycle(root: Path, src: Path, rows: int) -> float:
    """`run_lifecycle` on the second month, after a first lifecycle on the first (SQLite store)."""
    data = root / "lifecycle"
    os.environ.update({"LOCAL_DATA_PATH": str(data), "HISTORY_ROWS_PER_MONTH": str(rows), "HISTORY_FIRST_MONTH": "2012-07",
                       "HISTORY_LAST_MONTH": "2012-08", "MLFLOW_LOGGING_LEVEL": "WARNING",
                       "FEATURE_VERSION": "1"})  # as the kernel calls above
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from taxifare_flow.data import open_source
    from taxifare_flow.flow.lifecycle import run_lifecycle
    from taxifare_flow.settings import load_settings

    settings = load_settings()
    # A rerun starts from no model: the source is reset, and so is the MLflow store.
    shutil.rmtree(data / "mlflow", ignore_errors=True)
    source = open_source(settings, "local")
    source.reset()
    source.bring_next_month()
    run_lifecycle(settings)
    source.bring_next_month()
    started = time.perf_counter()
    run_lifecycle(settings)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
