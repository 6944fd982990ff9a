"""Slicing the last month of a large source: the Rust reader versus the original package's
way (`pandas.read_csv(skiprows=..., nrows=...)` on one CSV) and `pyarrow.dataset` filtering
on `row_id`, in the same run, each in its own process (peak RSS is its own). Also the
generator's throughput.

The machine may be shared: the Rust reader and pyarrow run alternately `--repeat` times and
the table shows the median of each (pandas, 10x slower, runs `--pandas-repeat` times), with
the load average before the runs.

    python benches/bench_data.py [--months 14] [--rows-per-month 720000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.dataset as ds

from common import build_source, child, months_from

CPU = "sum(getattr(resource.getrusage(resource.RUSAGE_SELF), f) for f in ('ru_utime', 'ru_stime'))"
# The reader returns a pyarrow.RecordBatchReader: pyarrow is imported before the clock starts,
# as it is for the pyarrow method (importing it takes longer than the slicing).
RUST = """
import resource, time
import pyarrow
from taxifare_flow import _core
t, c = time.perf_counter(), {cpu}
n = sum(b.num_rows for b in _core.read_rows({src!r}, {first}, {count}))
RESULT = {{'rows': n, 'seconds': time.perf_counter() - t, 'cpu': {cpu} - c}}
"""
PYARROW = """
import resource, time
import pyarrow.dataset as ds
t, c = time.perf_counter(), {cpu}
f = ds.field('row_id')
n = ds.dataset({src!r}).to_table(filter=(f >= {first}) & (f < {end})).num_rows
RESULT = {{'rows': n, 'seconds': time.perf_counter() - t, 'cpu': {cpu} - c}}
"""
PANDAS = """
import time
import pandas as pd
t = time.perf_counter()
n = len(pd.read_csv({csv!r}, skiprows=range(1, {first} + 1), nrows={count}))
RESULT = {{'rows': n, 'seconds': time.perf_counter() - t, 'cpu': float('nan')}}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--months", type=int, default=14)
    ap.add_argument("--rows-per-month", type=int, default=720_000)
    ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "taxifare-bench-data"))
    ap.add_argument("--repeat", type=int, default=5, help="runs of the Rust reader and of pyarrow (median shown)")
    ap.add_argument("--pandas-repeat", type=int, default=1, help="runs of pandas (0 to skip it)")
    a = ap.parse_args()
    root = Path(a.dir)
    src, gen_rate = build_source(root, months_from("2013-01", a.months), a.rows_per_month)
    csv = root / "all.csv"
    if not csv.exists():
        with pacsv.CSVWriter(csv, ds.dataset(src).schema) as w:
            for batch in ds.dataset(src).to_batches():
                w.write_batch(batch)
    total = a.months * a.rows_per_month
    first, count = total - a.rows_per_month, a.rows_per_month
    codes = {
        "Rust read_rows": (RUST.format(src=str(src), first=first, count=count, cpu=CPU), a.repeat),
        "pyarrow.dataset filter": (PYARROW.format(src=str(src), first=first, end=first + count, cpu=CPU), a.repeat),
        "pandas read_csv(skiprows, nrows)": (PANDAS.format(csv=str(csv), first=first, count=count), a.pandas_repeat),
    }
    load = os.getloadavg()
    runs: dict[str, list[dict]] = {name: [] for name, (_, n) in codes.items() if n > 0}
    # Alternate the methods so that a burst of load from elsewhere hits them alike.
    for i in range(max(n for _, n in codes.values())):
        for name, (code, n) in codes.items():
            if i < n:
                runs[name].append(child(code))
    results = {
        name: {
            "rows": r[0]["rows"],
            "seconds": statistics.median(x["seconds"] for x in r),
            "min": min(x["seconds"] for x in r),
            "max": max(x["seconds"] for x in r),
            "peak_mib": statistics.median(x["peak_mib"] for x in r),
            "cpu": statistics.median(x["cpu"] for x in r),
            "n": len(r),
        }
        for name, r in runs.items()
    }
    base = results["Rust read_rows"]
    print(f"source: {total:,} rows in {a.months} Parquet files; slicing the last month ({count:,} rows)")
    if not gen_rate:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            from taxifare_flow import _core

            _core.generate_history(Path(tmp), seed=2, first_month="2014-01", last_month="2014-02", rows_per_month=a.rows_per_month)
            gen_rate = 2 * a.rows_per_month / (time.perf_counter() - t0)
    print(f"generator: {gen_rate:,.0f} rows/s on one core (months written as Parquet)")
    print(f"{'method':<34}{'runs':>5}{'median s':>10}{'min s':>8}{'max s':>8}{'CPU s':>7}{'peak RSS MiB':>14}{'time ratio':>12}")
    for name, r in results.items():
        assert all(x["rows"] == count for x in runs[name]), (name, runs[name])
        print(f"{name:<34}{r['n']:>5}{r['seconds']:>10.3f}{r['min']:>8.3f}{r['max']:>8.3f}{r['cpu']:>7.2f}{r['peak_mib']:>14.0f}"
              f"{r['seconds'] / base['seconds']:>11.2f}x")
    print(f"(load average before the runs: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores; "
          "medians of the runs; CPU s is user + system time of all threads; peak RSS is each method's own process)")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"(benchmark wall time {time.perf_counter() - started:.0f} s)")
