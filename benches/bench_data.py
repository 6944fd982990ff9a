"""Slicing the last month of a large source: the Rust reader versus the original package's
way (`pandas.read_csv(skiprows=..., nrows=...)` on one CSV) and `pyarrow.dataset` filtering
on `row_id`, in the same run, each in its own process (peak RSS is its own). Also the
generator's throughput.

    python benches/bench_data.py [--months 14] [--rows-per-month 720000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.dataset as ds

from common import build_source, child, months_from

RUST = """
import time
from taxifare_flow import _core
t = time.perf_counter()
n = sum(b.num_rows for b in _core.read_rows({src!r}, {first}, {count}))
RESULT = {{'rows': n, 'seconds': time.perf_counter() - t}}
"""
PYARROW = """
import time
import pyarrow.dataset as ds
t = time.perf_counter()
f = ds.field('row_id')
n = ds.dataset({src!r}).to_table(filter=(f >= {first}) & (f < {end})).num_rows
RESULT = {{'rows': n, 'seconds': time.perf_counter() - t}}
"""
PANDAS = """
import time
import pandas as pd
t = time.perf_counter()
n = len(pd.read_csv({csv!r}, skiprows=range(1, {first} + 1), nrows={count}))
RESULT = {{'rows': n, 'seconds': time.perf_counter() - t}}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--months", type=int, default=14)
    ap.add_argument("--rows-per-month", type=int, default=720_000)
    ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "taxifare-bench-data"))
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
    results = {
        "Rust read_rows": child(RUST.format(src=str(src), first=first, count=count)),
        "pyarrow.dataset filter": child(PYARROW.format(src=str(src), first=first, end=first + count)),
        "pandas read_csv(skiprows, nrows)": child(PANDAS.format(csv=str(csv), first=first, count=count)),
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
    print(f"{'method':<34}{'seconds':>10}{'peak RSS MiB':>14}{'time ratio':>12}")
    for name, r in results.items():
        assert r["rows"] == count, (name, r)
        print(f"{name:<34}{r['seconds']:>10.3f}{r['peak_mib']:>14.0f}{r['seconds'] / base['seconds']:>11.1f}x")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"(benchmark wall time {time.perf_counter() - started:.0f} s)")
