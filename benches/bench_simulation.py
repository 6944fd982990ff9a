"""Wall time of the whole simulation (every month arrives, one Prefect lifecycle each), split
into Rust compute and Prefect/MLflow overhead, and the cost of early versus late months.

    python benches/bench_simulation.py [--rows-per-month 10000] [--months 78]

The Rust share is measured by replaying, after the simulation, exactly the kernel calls a
lifecycle makes on each month (production and frozen evaluations, training, holdout
evaluations, the content hash); the rest of the wall time is orchestration.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows-per-month", default="10000", help="a number, or 'kaggle' for 55,423,856 rows in all")
    ap.add_argument("--months", type=int, default=78)
    ap.add_argument("--dir", default="")
    a = ap.parse_args()
    root = Path(a.dir or tempfile.mkdtemp(prefix="taxifare-sim-"))
    env = {**os.environ, "LOCAL_DATA_PATH": str(root), "HISTORY_ROWS_PER_MONTH": a.rows_per_month,
           "MLFLOW_TRACKING_URI": "", "PREFECT_HOME": str(root / "prefect"), "MLFLOW_LOGGING_LEVEL": "WARNING"}
    taxifare = str(Path(sys.executable).with_name("taxifare"))
    t = time.perf_counter()
    subprocess.run([taxifare, "reset_data_sources", "--fresh"], env=env, check=True, capture_output=True)
    generation = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([taxifare, "run_all_months", "--months", str(a.months)], env=env, check=True, capture_output=True)
    simulation = time.perf_counter() - t

    os.environ.update({k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"})
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from taxifare_flow import _core
    from taxifare_flow.ml_logic.registry import open_registry
    from taxifare_flow.settings import load_settings

    settings = load_settings()
    reg = open_registry(settings)
    runs = reg.client.search_runs([reg.experiment_id], "params.context = 'train'", order_by=["params.first_row ASC"],
                                  max_results=1000)
    runs = sorted(runs, key=lambda r: int(r.data.params["first_row"]))
    durations = [(r.info.end_time - r.info.start_time) / 1000 for r in runs]
    src = settings.source_dir
    model, frozen = _core.Model(1e-3), None
    t = time.perf_counter()
    for r in runs:
        w, n = int(r.data.params["first_row"]), int(r.data.params["row_count"])
        h = w + n - int(n * settings.holdout_fraction)
        if frozen is not None:
            model.evaluate_source(src, w, n)
            frozen.evaluate_source(src, w, n)
        model.partial_fit_source(src, w, h - w)
        model.evaluate_source(src, h, w + n - h, True)
        model.evaluate_source(src, h, w + n - h, True)
        model.partial_fit_source(src, h, w + n - h)
        _core.hash_rows(_core.read_rows(src, w, n))
        if frozen is None:
            frozen = model.copy()
    compute = time.perf_counter() - t
    total_rows = _core.row_count(src)
    print(f"{len(runs)} months, {total_rows:,} rows ({a.rows_per_month} a month)")
    print(f"history generation        {generation:8.1f} s")
    print(f"simulation (wall)         {simulation:8.1f} s   = {simulation / len(runs):.2f} s a month")
    print(f"  Rust compute            {compute:8.1f} s   ({compute / simulation:.0%})")
    print(f"  Prefect + MLflow + I/O  {simulation - compute:8.1f} s   ({(simulation - compute) / simulation:.0%})")
    early, late = durations[1:4], durations[-4:-1]
    print(f"MLflow run time, months 2-4: {sum(early) / len(early):.2f} s; last months: {sum(late) / len(late):.2f} s")


if __name__ == "__main__":
    main()
