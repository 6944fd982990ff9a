"""Kernel throughput: slice → clean → features → accumulate, in Rust, versus the equivalent
pandas + scikit-learn pipeline (ColumnTransformer + Ridge) on the same rows, each in its own
process so peak RSS is its own. Prints rows/s, peak RSS and the ratios.

    python benches/bench_kernel.py [--rows-per-month 720000] [--months 7] [--pandas-rows N]
        [--feature-version 1 [2]] [--no-pandas]

With several feature versions, one Rust child runs per version (v1 has 80 features, v2 192).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import build_source, child, months_from
from taxifare_flow import _core

RUST = """
import time
from taxifare_flow import _core
m = _core.Model(feature_version={version})
t = time.perf_counter()
c = m.partial_fit_source({src!r}, 0, {rows})
m.coefficients()
s = time.perf_counter() - t
RESULT = {{'rows': {rows}, 'seconds': s, 'kept': c['kept']}}
"""

PANDAS = """
import time
import numpy as np, pandas as pd, pyarrow.dataset as ds
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
t = time.perf_counter()
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
RESULT = {{'rows': {rows}, 'seconds': s, 'kept': len(df)}}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows-per-month", type=int, default=720_000)
    ap.add_argument("--months", type=int, default=7)
    ap.add_argument("--pandas-rows", type=int, default=0, help="rows for pandas (default: the same rows)")
    ap.add_argument("--feature-version", type=int, nargs="+", default=[1], help="feature versions of the Rust kernel")
    ap.add_argument("--no-pandas", action="store_true", help="time the Rust kernel only")
    ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "taxifare-bench-kernel"))
    a = ap.parse_args()
    src, _ = build_source(Path(a.dir), months_from("2012-01", a.months), a.rows_per_month)
    rows = a.months * a.rows_per_month
    runs = {v: child(RUST.format(src=str(src), rows=rows, version=v)) for v in a.feature_version}
    print(f"{'pipeline':<34}{'rows':>12}{'seconds':>10}{'rows/s':>14}{'peak RSS MiB':>14}")
    for v, run in runs.items():
        rate = run["rows"] / run["seconds"]
        print(f"{f'Rust kernel v{v} (slice→fit)':<34}{run['rows']:>12,}{run['seconds']:>10.2f}{rate:>14,.0f}{run['peak_mib']:>14.0f}")
    if len(runs) > 1:
        first = a.feature_version[0]
        base = runs[first]["rows"] / runs[first]["seconds"]
        for v, run in runs.items():
            print(f"v{v} rows/s: {run['rows'] / run['seconds'] / base:.2f}x v{first}")
    if a.no_pandas:
        return
    rust = runs[a.feature_version[0]]
    r_rate = rust["rows"] / rust["seconds"]
    prow = a.pandas_rows or rows
    pd_ = child(PANDAS.format(src=str(src), rows=prow))
    p_rate = pd_["rows"] / pd_["seconds"]
    print(f"{'pandas + scikit-learn Ridge':<34}{pd_['rows']:>12,}{pd_['seconds']:>10.2f}{p_rate:>14,.0f}{pd_['peak_mib']:>14.0f}")
    print(f"ratio: Rust is {r_rate / p_rate:.1f}x faster with {pd_['peak_mib'] / rust['peak_mib']:.1f}x less peak memory "
          f"(Rust v{a.feature_version[0]} uses {len(_core.Model.feature_names(a.feature_version[0]))} features, the pandas pipeline 25)")


if __name__ == "__main__":
    main()
