"""Kernel throughput: slice → clean → features → accumulate, in Rust, versus the equivalent
pandas + scikit-learn pipeline (ColumnTransformer + Ridge) on the same rows, each in its own
process so peak RSS is its own. Prints rows/s, CPU seconds, peak RSS and the ratios.

The machine may be shared: the Rust kernel runs `--repeat` times per feature version and the
table shows the median (and the range), with the load average before the runs. Where the time
goes inside the kernel, phase by phase: `cargo run --profile dev-fast --example profile_kernel
-- SOURCE_DIR`.

    python benches/bench_kernel.py [--rows-per-month 720000] [--months 7] [--pandas-rows N] [--repeat 5]
        [--feature-version 1 [2]] [--no-pandas]

With several feature versions, one Rust child runs per version (v1 has 80 features, v2 192).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from common import build_source, child, months_from
from taxifare_flow import _core

CPU = "sum(getattr(resource.getrusage(resource.RUSAGE_SELF), f) for f in ('ru_utime', 'ru_stime'))"
RUST = """
import resource, time
from taxifare_flow import _core
m = _core.Model(feature_version={version})
t, c0 = time.perf_counter(), {cpu}
c = m.partial_fit_source({src!r}, 0, {rows})
m.coefficients()
s = time.perf_counter() - t
RESULT = {{'rows': {rows}, 'seconds': s, 'kept': c['kept'], 'cpu': {cpu} - c0}}
"""

PANDAS = """
import resource, time
import numpy as np, pandas as pd, pyarrow.dataset as ds
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
t, c0 = time.perf_counter(), {cpu}
df = ds.dataset({src!r}).to_table(filter=ds.field('row_id') < {rows}).to_pandas()
df = df.dropna()
df = df[(df.fare_amount > 0) & (df.fare_amount < 400) & df.passenger_count.between(1, 7)]
for c, lo, hi in (('pickup_latitude', 40.5, 40.9), ('dropoff_latitude', 40.5, 40.9),
                  ('pickup_longitude', -74.3, -73.7), ('dropoff_longitude', -74.3, -73.7)):
    df = df[df[c].between(lo, hi)]
df = df.drop_duplicates('key')
ts = pd.to_datetime(df.pickup_datetime, format='%Y-%m-%d %H:%M:%S UTC', utc=True).dt.tz_convert('America/New_York')
hour = ts.dt.hour + ts.dt.minute / 60
la1, lo1, la2, lo2 = (np.radians(df[c]) for c in ('pickup_latitude', 'pickup_longitude', 'dropoff_latitude', 'dropoff_longitude'))
h = np.sin((la2 - la1) / 2) ** 2 + np.cos(la1) * np.cos(la2) * np.sin((lo2 - lo1) / 2) ** 2
X = pd.DataFrame({{
    'passengers': df.passenger_count / 6, 'hour_sin': np.sin(hour / 24 * 2 * np.pi), 'hour_cos': np.cos(hour / 24 * 2 * np.pi),
    'weekday': ts.dt.weekday, 'month': ts.dt.month, 'year': ts.dt.year,
    'haversine': 2 * 6371 * np.arcsin(np.sqrt(h)),
    'manhattan': 111.19 * ((la2 - la1).abs() + (lo2 - lo1).abs() * np.cos((la1 + la2) / 2)) * 180 / np.pi,
}})
pipe = Pipeline([('ct', ColumnTransformer([('oh', OneHotEncoder(handle_unknown='ignore'), ['weekday', 'month']),
                                           ('num', StandardScaler(), ['passengers', 'hour_sin', 'hour_cos', 'year', 'haversine', 'manhattan'])])),
                 ('ridge', Ridge(alpha=1e-6))])
pipe.fit(X, df.fare_amount)
s = time.perf_counter() - t
RESULT = {{'rows': {rows}, 'seconds': s, 'kept': len(df), 'cpu': {cpu} - c0}}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows-per-month", type=int, default=720_000)
    ap.add_argument("--months", type=int, default=7)
    ap.add_argument("--pandas-rows", type=int, default=0, help="rows for pandas (default: the same rows)")
    ap.add_argument("--feature-version", type=int, nargs="+", default=[1], help="feature versions of the Rust kernel")
    ap.add_argument("--no-pandas", action="store_true", help="time the Rust kernel only")
    ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "taxifare-bench-kernel"))
    ap.add_argument("--repeat", type=int, default=5, help="runs of the Rust kernel (median shown)")
    a = ap.parse_args()
    src, _ = build_source(Path(a.dir), months_from("2012-01", a.months), a.rows_per_month)
    rows = a.months * a.rows_per_month
    load = os.getloadavg()
    runs = {}
    for v in a.feature_version:
        reps = [child(RUST.format(src=str(src), rows=rows, cpu=CPU, version=v)) for _ in range(a.repeat)]
        secs = [r["seconds"] for r in reps]
        runs[v] = reps[0] | {"seconds": statistics.median(secs), "cpu": statistics.median(r["cpu"] for r in reps),
                             "peak_mib": statistics.median(r["peak_mib"] for r in reps), "range": (min(secs), max(secs))}
    header = f"{'pipeline':<34}{'rows':>12}{'seconds':>10}{'rows/s':>14}{'CPU s':>8}{'rows/CPU-s':>12}{'peak RSS MiB':>14}"

    def line(name: str, r: dict) -> str:
        return (f"{name:<34}{r['rows']:>12,}{r['seconds']:>10.2f}{r['rows'] / r['seconds']:>14,.0f}{r['cpu']:>8.2f}"
                f"{r['rows'] / r['cpu']:>12,.0f}{r['peak_mib']:>14.0f}")

    print(header)
    for v, r in runs.items():
        print(line(f"Rust kernel v{v} (slice→fit)", r))
    first = a.feature_version[0]
    for v, r in runs.items():
        lo, hi = r["range"]
        rel = f", {runs[first]['seconds'] / r['seconds']:.2f}x v{first}'s rows/s" if v != first else ""
        print(f"Rust v{v}: median of {a.repeat} runs, {lo:.2f}–{hi:.2f} s{rel}")
    print(f"load average before: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")
    if a.no_pandas:
        return
    rust = runs[first]
    r_rate = rust["rows"] / rust["seconds"]
    prow = a.pandas_rows or rows
    pd_ = child(PANDAS.format(src=str(src), rows=prow, cpu=CPU))
    p_rate = pd_["rows"] / pd_["seconds"]
    print(line("pandas + scikit-learn Ridge", pd_))
    print(f"ratio: Rust is {r_rate / p_rate:.1f}x faster with {pd_['peak_mib'] / rust['peak_mib']:.1f}x less peak memory "
          f"(Rust v{a.feature_version[0]} uses {len(_core.Model.feature_names(a.feature_version[0]))} features, the pandas pipeline 25)")


if __name__ == "__main__":
    main()
