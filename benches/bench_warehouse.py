"""One lifecycle of a month computed inside BigQuery (`BQ_COMPUTE=warehouse`: two queries, only
aggregates come back) against the local path (the month's rows read out through the Storage
Read API, then `lifecycle_pass` in the kernel), on the BigQuery emulator (bqemulator,
DuckDB-backed), in one process. A feature-version-2 challenger, production and the frozen
model v1 (trained on another generated month). Prints what leaves the warehouse (rows, Arrow
bytes), the time of each step, the emulator's fixed cost per query (the same queries over
100 rows), the dry-run bytes and the query sizes, and checks that both paths agree: cleaning
counts, scores, the challenger's statistics.

    python benches/bench_warehouse.py [--rows 20000] [--repeat 1]     (or BENCH_WAREHOUSE_ROWS)

The emulator is slow and has no cost model (a dry run reports 0 bytes, after running the
query): its times are one Python process translating the SQL and DuckDB running it, not what
BigQuery would take.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from taxifare_flow import _core

ROOT = Path(__file__).resolve().parent.parent
PROJECT, DATASET = "test-project", "taxifare_bench"
BQ_TYPES = {pa.string(): "STRING", pa.float64(): "FLOAT64", pa.int64(): "INT64"}
FEATURE_VERSION = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_emulator(log: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """bqemulator (installed by scripts/bqemulator.sh) on loopback, as tests/conftest.py starts it."""
    venv = subprocess.run(["bash", str(ROOT / "scripts" / "bqemulator.sh")], check=True, capture_output=True, text=True,
                          timeout=900).stdout.strip().splitlines()[-1]
    rest, grpc_port = free_port(), free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [f"{venv}/bin/bqemulator", "start", "--rest-host", "127.0.0.1", "--rest-port", str(rest), "--grpc-host",
             "127.0.0.1", "--grpc-port", str(grpc_port), "--project", PROJECT, "--ephemeral", "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{rest}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc, f"http://127.0.0.1:{rest}", f"127.0.0.1:{grpc_port}"
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.terminate()
            raise RuntimeError(f"bqemulator did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def month_table(rows: int, seed: int) -> pa.Table:
    """One generated month with `row_id` 0..rows first, in the source schema."""
    schema = _core.source_schema()
    rides = _core.generate_month("2012-09", rows, seed=seed).read_all()
    table = rides.add_column(0, schema.field("row_id"), pa.array(np.arange(rows, dtype=np.int64)))
    return table.select(schema.names).cast(schema)


def load(client: Any, table_id: str, table: pa.Table, tmp: Path) -> None:
    """The table (clustered by `row_id`, the source schema) and one Parquet load job."""
    from google.cloud import bigquery

    schema = [bigquery.SchemaField(f.name, BQ_TYPES[f.type], mode="NULLABLE" if f.nullable else "REQUIRED")
              for f in _core.source_schema()]
    client.create_dataset(bigquery.Dataset(f"{PROJECT}.{DATASET}"), exists_ok=True)
    t = bigquery.Table(table_id, schema=schema)
    t.clustering_fields = ["row_id"]
    client.create_table(t)
    path = tmp / "month.parquet"
    pq.write_table(table, path)
    config = bigquery.LoadJobConfig(schema=schema, source_format=bigquery.SourceFormat.PARQUET,
                                    write_disposition=bigquery.WriteDisposition.WRITE_APPEND)
    with path.open("rb") as f:
        client.load_table_from_file(f, table_id, job_config=config).result(timeout=600)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def models() -> tuple[_core.Model, _core.Model]:
    """Production and the frozen model: v1, trained on another generated month."""
    production = _core.Model(feature_version=1)
    production.partial_fit(_core.generate_month("2012-08", 5000, seed=1))
    return production, production.copy()


def warehouse(client: Any, emulator_pid: int, table_id: str, w: int, t: int, h: int, production: _core.Model,
              frozen: _core.Model) -> dict[str, Any]:
    """A lifecycle's two queries, as BQ_COMPUTE=warehouse runs them; each step timed, and the
    emulator's CPU time of each query."""
    r: dict[str, Any] = {"cpu_s": 0.0}

    def query(sql: str) -> pa.Table:
        before = cpu_seconds(emulator_pid)
        table: pa.Table = client.query(sql, job_retry=None).result(timeout=3600).to_arrow(create_bqstorage_client=False)
        r["cpu_s"] += cpu_seconds(emulator_pid) - before
        return table

    challenger = _core.Model(feature_version=FEATURE_VERSION)
    r["sql1"], r["sql1_s"] = timed(lambda: _core.warehouse_stats_query(table_id, w, t, h, FEATURE_VERSION, production, frozen))
    r["rows1"], r["q1_s"] = timed(lambda: query(r["sql1"]))
    holdout = challenger.empty_like()
    r["part"], r["absorb_s"] = timed(lambda: _core.warehouse_absorb(r["rows1"], challenger, holdout))
    r["sql2"], r["sql2_s"] = timed(lambda: _core.warehouse_holdout_query(table_id, w, t, h, challenger, production))
    r["rows2"], r["q2_s"] = timed(lambda: query(r["sql2"]))
    r["paired"], r["paired_s"] = timed(lambda: _core.warehouse_paired(r["rows2"], True))
    _, r["merge_s"] = timed(lambda: challenger.merge(holdout))
    r["challenger"] = challenger
    r["query_s"] = r["q1_s"] + r["q2_s"]
    r["compute_s"] = r["sql1_s"] + r["absorb_s"] + r["sql2_s"] + r["paired_s"] + r["merge_s"]
    r["total_s"] = r["query_s"] + r["compute_s"]
    r["out_rows"] = r["rows1"].num_rows + r["rows2"].num_rows
    r["out_bytes"] = r["rows1"].nbytes + r["rows2"].nbytes
    return r


def local(source: Any, w: int, t: int, h: int, production: _core.Model, frozen: _core.Model) -> dict[str, Any]:
    """The local path: the rows out through the Storage Read API, then the one pass."""
    r: dict[str, Any] = {}
    r["table"], r["read_s"] = timed(lambda: source._read(w, t))
    challenger = _core.Model(feature_version=FEATURE_VERSION)
    r["pass"], r["pass_s"] = timed(lambda: _core.lifecycle_pass(r["table"], h - w, challenger, production, frozen))
    r["challenger"] = challenger
    r["total_s"] = r["read_s"] + r["pass_s"]
    return r


def rel(a: float, b: float) -> float:
    scale = max(abs(a), abs(b))
    return abs(a - b) / scale if scale else 0.0


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest element-wise relative difference (elements that are 0 on both sides skipped)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.maximum(np.abs(a), np.abs(b))
    nz = scale > 0
    return float(np.max(np.abs(a - b)[nz] / scale[nz])) if nz.any() else 0.0


def dry_run_bytes(client: Any, sql: str) -> int | None:
    from google.cloud import bigquery

    job = client.query(sql, job_config=bigquery.QueryJobConfig(dry_run=True, use_query_cache=False), job_retry=None)
    processed: int | None = job.total_bytes_processed
    return processed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_WAREHOUSE_ROWS", "20000")))
    ap.add_argument("--repeat", type=int, default=1, help="runs of each path (medians shown)")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    from taxifare_flow.data.bigquery import BigQuerySource
    from taxifare_flow.settings import settings_from

    n = a.rows
    w, t = 0, n
    h = t - int(0.2 * n)
    production, frozen = models()
    with tempfile.TemporaryDirectory(prefix="taxifare-bench-warehouse-") as tmp_dir:
        tmp = Path(tmp_dir)
        (proc, rest, grpc_addr), up_s = timed(lambda: start_emulator(tmp / "emulator.log"))
        try:
            client = bigquery.Client(project=PROJECT, credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                                     client_options=ClientOptions(api_endpoint=rest))
            table_id = f"{PROJECT}.{DATASET}.rides"
            month = month_table(n, a.seed)
            _, load_s = timed(lambda: load(client, table_id, month, tmp))
            settings = settings_from({"DATA_SOURCE": "bigquery", "GCP_PROJECT": PROJECT, "BQ_DATASET": DATASET,
                                      "BQ_TABLE": "rides", "BQ_API_ENDPOINT": rest, "BQ_STORAGE_ENDPOINT": grpc_addr,
                                      "BQ_TIMEOUT_SECONDS": "3600", "LOCAL_DATA_PATH": str(tmp / "data")})
            source = BigQuerySource(settings)
            # Warm-up: the emulator's first query pays its own start-up (DuckDB, extensions).
            _, warm_s = timed(lambda: client.query("SELECT 1 AS x", job_retry=None).result().to_arrow(create_bqstorage_client=False))
            # The fixed cost: the same two queries over 100 rows (holdout from row 80).
            small = warehouse(client, proc.pid, table_id, 0, 100, 80, production, frozen)
            locs = [local(source, w, t, h, production, frozen) for _ in range(a.repeat)]
            whs = [warehouse(client, proc.pid, table_id, w, t, h, production, frozen) for _ in range(a.repeat)]
            dry1, dry1_s = timed(lambda: dry_run_bytes(client, whs[0]["sql1"]))
            dry2, dry2_s = timed(lambda: dry_run_bytes(client, whs[0]["sql2"]))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    report(a, n, w, t, h, up_s, load_s, warm_s, small, locs, whs, (dry1, dry1_s, dry2, dry2_s))


def report(a: argparse.Namespace, n: int, w: int, t: int, h: int, up_s: float, load_s: float, warm_s: float,
           small: dict[str, Any], locs: list[dict[str, Any]], whs: list[dict[str, Any]],
           dry: tuple[int | None, float, int | None, float]) -> None:
    def med(runs: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    lo, wh = locs[0], whs[0]
    table = lo["table"]
    print(f"month 2012-09 of {n:,} generated rows in the emulator (w={w}, h={h}, t={t}); challenger feature v{FEATURE_VERSION}, "
          f"production and frozen v1; {a.repeat} run(s) of each path; load average {os.getloadavg()[0]:.1f}")
    print(f"emulator up in {up_s:.1f} s; table loaded (one Parquet load job) in {load_s:.1f} s; first query (SELECT 1) {warm_s:.2f} s")
    print(f"query sizes: query 1 {len(wh['sql1']):,} characters, query 2 {len(wh['sql2']):,} (BigQuery's limit: 1,024k)")
    print(f"dry run, bytes processed: query 1 {dry[0]} ({dry[1]:.2f} s), query 2 {dry[2]} ({dry[3]:.2f} s) "
          "(the emulator has no cost model)")
    print(f"emulator fixed cost, the same queries over 100 rows: query 1 {small['q1_s']:.2f} s, query 2 {small['q2_s']:.2f} s "
          f"({small['rows1'].num_rows} + {small['rows2'].num_rows} result rows; emulator CPU {small['cpu_s']:.1f} s)")
    print()
    lt, wt = med(locs, "total_s"), med(whs, "total_s")
    lq = med(locs, "read_s")
    wq = med(whs, "query_s")
    marginal = wt - small["q1_s"] - small["q2_s"]
    print(f"{'path':<40}{'rows out':>10}{'bytes out':>12}{'query/read s':>14}{'compute s':>11}{'total s':>9}{'× local':>9}")
    print(f"{'local: Storage Read + lifecycle_pass':<40}{table.num_rows:>10,}{table.nbytes:>12,}{lq:>14.2f}"
          f"{med(locs, 'pass_s'):>11.2f}{lt:>9.2f}{1.0:>9.2f}")
    print(f"{'warehouse: query 1 + query 2':<40}{wh['out_rows']:>10,}{wh['out_bytes']:>12,}{wq:>14.2f}"
          f"{med(whs, 'compute_s'):>11.3f}{wt:>9.2f}{wt / lt:>9.2f}")
    print(f"{'warehouse minus the 100-row queries':<40}{'':>10}{'':>12}{wq - small['q1_s'] - small['q2_s']:>14.2f}"
          f"{'':>11}{marginal:>9.2f}{marginal / lt:>9.2f}")
    print(f"leaves the warehouse: {wh['rows1'].num_rows:,} + {wh['rows2'].num_rows} result rows of 6 columns = "
          f"{6 * wh['out_rows']:,} numbers, {wh['out_bytes']:,} bytes, against {table.num_rows:,} rows of 9 columns, "
          f"{table.nbytes:,} bytes: the local path moves {table.num_rows / wh['out_rows']:.2f}× the rows, "
          f"{table.nbytes / wh['out_bytes']:.2f}× the bytes")
    p = len(_core.Model.feature_names(FEATURE_VERSION))
    cells = (p + 2) * (p + 3) // 2
    print(f"query 1's 'xx' rows: the non-zero cells i ≤ j of ZᵀZ (Z = [1, x, y], {p + 2} columns) by segment and ride month, "
          f"at most {cells:,} a segment and month: {2 * cells:,} for a one-month lifecycle, whatever its rows")
    print(f"warehouse steps: query 1 {med(whs, 'q1_s'):.2f} s, absorb {med(whs, 'absorb_s') * 1e3:.1f} ms, "
          f"query 2 {med(whs, 'q2_s'):.2f} s, paired {med(whs, 'paired_s') * 1e3:.1f} ms, SQL generation "
          f"{(med(whs, 'sql1_s') + med(whs, 'sql2_s')) * 1e3:.1f} ms; local: read {lq:.2f} s, pass {med(locs, 'pass_s'):.3f} s")
    per_row = marginal / n * 1e6
    cpu_row = (med(whs, "cpu_s") - small["cpu_s"]) / n * 1e6
    print(f"emulator beyond the fixed cost: {per_row:.0f} µs a row of wall time, {cpu_row:.0f} µs of its CPU "
          f"(both queries: {med(whs, 'cpu_s'):.1f} s CPU); the pass: {med(locs, 'pass_s') / n * 1e6:.1f} µs a row")
    print()
    check(lo, wh)


def check(lo: dict[str, Any], wh: dict[str, Any]) -> None:
    """Both paths agree: cleaning, kept rows, scores, the challenger's statistics, the paired sums."""
    p, part, paired = lo["pass"], wh["part"], wh["paired"]
    results: list[tuple[str, bool, str]] = []
    results.append(("cleaning counts", dict(p["cleaning"]) == dict(part["cleaning"]),
                    f"local {dict(p['cleaning'])} / warehouse {dict(part['cleaning'])}"))
    results.append(("clean rows (train, holdout)", (p["train_kept"], p["holdout_kept"]) == (part["train_kept"], part["holdout_kept"]),
                    f"({p['train_kept']}, {p['holdout_kept']}) / ({part['train_kept']}, {part['holdout_kept']})"))
    for model in ("production", "frozen"):
        a, b = p[model], part[model]
        d = max(rel(a["mae"], b["mae"]), rel(a["rmse"], b["rmse"]))
        results.append((f"{model} MAE, RMSE (n={a['n']})", a["n"] == b["n"] and d <= 1e-9,
                        f"MAE {a['mae']:.9f} / {b['mae']:.9f}, max rel. diff {d:.1e}"))
    xs = [max_rel(x, y) for x, y in zip(lo["challenger"].statistics(), wh["challenger"].statistics())]
    results.append(("challenger statistics XᵀX, Xᵀy, Σy²", max(xs) <= 1e-9,
                    f"max rel. diff {xs[0]:.1e}, {xs[1]:.1e}, {xs[2]:.1e}; n_rows {lo['challenger'].n_rows:.0f} / "
                    f"{wh['challenger'].n_rows:.0f}"))
    ce, pe = p["holdout_challenger_errors"], p["holdout_production_errors"]
    d_hold = max(rel(float(np.sum(ce)), paired["challenger_sum"]), rel(float(np.sum(pe)), paired["production_sum"] or 0.0),
                 rel(float(np.sum(pe - ce)), paired["diff_sum"]), rel(float(np.sum((pe - ce) ** 2)), paired["diff_sq_sum"]))
    results.append((f"holdout: challenger, production MAE, Σd, Σd² (n={paired['n']})", paired["n"] == len(ce) and d_hold <= 1e-9,
                    f"challenger MAE {float(np.mean(ce)):.9f} / {paired['challenger_sum'] / paired['n']:.9f}, max rel. diff {d_hold:.1e}"))
    print("both paths agree (1e-9 relative):")
    for name, ok, detail in results:
        print(f"  {'ok ' if ok else 'NO '} {name}: {detail}")
    print(f"lineage hash: local {p['lineage_hash']}, warehouse {part['lineage_hash']} (different functions, by design)")
    print(f"all agree: {'yes' if all(ok for _, ok, _ in results) else 'NO'}")


if __name__ == "__main__":
    main()
