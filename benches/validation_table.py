"""The data-validation gate's threshold table (docs/validation.md): the gate replayed, without
training, on every month of the generated history (each month against the REFERENCE_MONTHS
before it) and on the broken months of issue 21, with the measured distances.

    .venv/bin/python benches/validation_table.py [--rows 10000] [--sample benches/data/kaggle_sample_5k.csv]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taxifare_flow import _core
from taxifare_flow.core_types import MonthProfile
from taxifare_flow.validation.gate import REFERENCE_MONTHS, Verdict, judge

COORDS = ("pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude")


def months(first: str, last: str) -> list[str]:
    y, m = map(int, first.split("-"))
    out = []
    while f"{y:04d}-{m:02d}" <= last:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _set(t: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    i = t.schema.get_field_index(name)
    return t.set_column(i, t.schema.field(i), values.cast(t.schema.field(i).type))


def _zero(t: pa.Table, mask: pa.Array | None = None) -> pa.Table:
    for c in COORDS:
        t = _set(t, c, pa.array(np.zeros(t.num_rows)) if mask is None else pc.if_else(mask, pa.scalar(0.0), t[c]))
    return t


def _swap(t: pa.Table) -> pa.Table:
    out = t
    for lat, lon in (("pickup_latitude", "pickup_longitude"), ("dropoff_latitude", "dropoff_longitude")):
        out = _set(_set(out, lat, t[lon]), lon, t[lat])
    return out


def _other_month(t: pa.Table) -> pa.Table:
    """The rides of the same month a year earlier."""
    col = t["pickup_datetime"]
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        year = int(str(col[0])[:4])
        return _set(t, "pickup_datetime", pc.replace_substring_regex(col, r"^\d{4}", str(year - 1)))
    return _set(t, "pickup_datetime", pc.subtract(col, pa.scalar(366 * 86_400_000_000, pa.duration("us"))))


BROKEN: dict[str, Callable[[pa.Table], pa.Table]] = {
    "fares in cents": lambda t: _set(t, "fare_amount", pc.multiply(t["fare_amount"], 100)),
    "latitude/longitude swapped": _swap,
    "all-zero coordinates": _zero,
    "a month of one repeated ride": lambda t: t.take(pa.array(np.zeros(t.num_rows, dtype=np.int64))),
    "passenger counts all 0": lambda t: _set(t, "passenger_count", pa.array(np.zeros(t.num_rows, dtype=np.int64))),
    "timestamps of another month": _other_month,
    "half the rows dirty (zero coordinates)": lambda t: _zero(t, pa.array(np.arange(t.num_rows) % 2 == 0)),
}


def profile(t: pa.Table | pa.RecordBatchReader) -> list[MonthProfile]:
    return _core.profile_rows(t)["profile"]


def worst(v: Verdict) -> str:
    if not v.failures:
        top = max(v.checks, key=lambda c: c.severity, default=None)
        return f"closest: {top.name} {top.value:.3f} ≤ {top.threshold:.3f}" if top else "no check"
    c = v.failures[0]
    return f"{c.name} {c.value:.3f} > {c.threshold:.3f}"


def replay(profiles: list[list[MonthProfile]], names: list[str]) -> list[Verdict]:
    out = []
    for i, month in enumerate(names):
        ref = [p for ps in profiles[max(0, i - REFERENCE_MONTHS):i] for p in ps]
        out.append(judge(profiles[i], ref, [month], 0, sum(p["raw"] for p in profiles[i]), month))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000, help="generated rows a month")
    ap.add_argument("--first", default="2009-01")
    ap.add_argument("--last", default="2015-06")
    ap.add_argument("--sample", type=Path, default=Path(__file__).with_name("data") / "kaggle_sample_5k.csv")
    ap.add_argument("--broken-month", default="2012-08")
    args = ap.parse_args()
    names = months(args.first, args.last)
    started = time.perf_counter()
    tables = {m: _core.generate_month(m, args.rows, seed=42).read_all() for m in names}
    profiles = [profile(tables[m]) for m in names]
    verdicts = replay(profiles, names)
    print(f"generated history, {len(names)} months × {args.rows:,} rows ({time.perf_counter() - started:.1f} s)")
    refused = [v for v in verdicts if v.refused]
    ks = [v.max_ks for v in verdicts[1:]]
    print(f"  refused: {len(refused)} {[(v.month, worst(v)) for v in refused]}")
    print(f"  largest KS over months: {max(ks):.3f} (median {np.median(ks):.3f})")
    for m in ("2012-09", "2012-10"):
        if m in names:
            v = verdicts[names.index(m)]
            fare = next(c for c in v.checks if c.name == "ks fare_amount")
            print(f"  {m}: ks fare_amount {fare.value:.3f} (threshold {fare.threshold:.3f}); {worst(v)}")
    i = names.index(args.broken_month)
    ref = [p for ps in profiles[max(0, i - REFERENCE_MONTHS):i] for p in ps]
    print(f"broken {args.broken_month} against the {REFERENCE_MONTHS} months before:")
    for case, how in BROKEN.items():
        v = judge(profile(how(tables[args.broken_month])), ref, [args.broken_month], 0, args.rows, args.broken_month)
        print(f"  {case:42s} {'refused' if v.refused else 'PASSED'}: {worst(v)}; max KS {v.max_ks:.3f}")
    small = {m: t.slice(0, 60) for m, t in tables.items()}
    i_small = [profile(small[m]) for m in names]
    ref_small = [p for ps in i_small[max(0, i - REFERENCE_MONTHS):i] for p in ps]
    print(f"broken {args.broken_month} at 60 rows a month:")
    for case, how in BROKEN.items():
        v = judge(profile(how(small[args.broken_month])), ref_small, [args.broken_month], 0, 60, args.broken_month)
        print(f"  {case:42s} {'refused' if v.refused else 'PASSED'}: {worst(v)}")
    if args.sample.is_file():
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            summary = _core.import_kaggle_csv(args.sample, Path(tmp) / "pending")
            real_names = [m for m, _ in summary["months"]]
            import pyarrow.parquet as pq

            real = [profile(pq.read_table(Path(tmp) / "pending" / f"{m}.parquet")) for m in real_names]
        rv = replay(real, real_names)
        ks = [v.max_ks for v in rv[1:]]
        print(f"real sample {args.sample.name}: {len(real_names)} months, "
              f"{np.mean([v.rows for v in rv]):.0f} rides a month")
        print(f"  refused: {[(v.month, worst(v)) for v in rv if v.refused]}; largest KS {max(ks):.3f} "
              f"(median {np.median(ks):.3f}); closest call: {max(rv[1:], key=lambda v: max(c.severity for c in v.checks)).month} "
              f"{worst(max(rv[1:], key=lambda v: max(c.severity for c in v.checks)))}")


if __name__ == "__main__":
    main()
