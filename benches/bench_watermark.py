"""`get_latest_trained_row` (Rust, one SQL query) versus the MLflow client doing the same
(`search_runs` with the equivalent filter, `order_by end_time DESC`, `max_results=1`), at 1k,
10k and 100k runs, on SQLite and PostgreSQL, in-process and as a cold command.

The store's schema is MLflow's own (created by mlflow); the runs are bulk-copied from one run
that MLflow logged, with their three params, so that 100k runs take seconds to set up.

    python benches/bench_watermark.py [--sizes 1000,10000,100000] [--postgres postgresql://postgres@127.0.0.1:5432]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import median_seconds

os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

SEARCH = "params.context = 'train' and attributes.status = 'FINISHED'"


def populate(uri: str, n: int) -> tuple[str, str]:
    """An experiment with `n` finished training runs; returns (experiment name, id)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    name = f"bench-{n}-{uuid.uuid4().hex[:6]}"
    exp = client.create_experiment(name)
    template = client.create_run(exp)
    client.set_terminated(template.info.run_id, "FINISHED")
    if uri.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(uri.removeprefix("sqlite:///"))
        mark = "?"
    else:
        import psycopg

        conn = psycopg.connect(uri)
        mark = "%s"
    cur = conn.cursor()
    cur.execute(f"SELECT * FROM runs WHERE run_uuid = {mark}", (template.info.run_id,))
    cols = [d[0] for d in cur.description]
    row = dict(zip(cols, cur.fetchone()))
    t0 = int(time.time() * 1000) - n * 1000
    runs, params = [], []
    for i in range(n):
        rid = uuid.uuid4().hex
        r = {**row, "run_uuid": rid, "start_time": t0 + i * 1000, "end_time": t0 + i * 1000 + 500,
             "name": f"train {i}", "artifact_uri": f"{row['artifact_uri']}/{rid}"}
        runs.append(tuple(r[c] for c in cols))
        params += [("context", "train", rid), ("first_row", str(i * 100), rid), ("row_count", "100", rid)]
    cur.executemany(f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})", runs)
    cur.executemany(f"INSERT INTO params (key, value, run_uuid) VALUES ({mark}, {mark}, {mark})", params)
    conn.commit()
    conn.close()
    return name, exp


def cold(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    a = ap.parse_args()
    from mlflow.tracking import MlflowClient

    from taxifare_flow import _core

    stores = {"SQLite": "sqlite:///" + str(Path(tempfile.mkdtemp()) / "mlflow.db")}
    try:
        import psycopg

        db = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(f"{a.postgres}/postgres", autocommit=True, connect_timeout=3) as c:
            c.execute(f'CREATE DATABASE "{db}"')
        stores["PostgreSQL"] = f"{a.postgres}/{db}"
    except Exception as e:  # noqa: BLE001
        print(f"PostgreSQL skipped: {e}")
    taxifare = str(Path(sys.executable).with_name("taxifare"))
    print(f"{'store':<11}{'runs':>8}{'Rust ms':>10}{'search_runs ms':>16}{'ratio':>8}{'cold Rust s':>13}{'cold mlflow s':>15}{'ratio':>8}")
    for store, uri in stores.items():
        client = MlflowClient(uri)
        client.search_experiments()
        for n in map(int, a.sizes.split(",")):
            name, exp = populate(uri, n)
            expected = n * 100
            assert _core.get_latest_trained_row(uri, name) == expected

            def via_mlflow() -> int:
                best = client.search_runs([exp], SEARCH, order_by=["attributes.end_time DESC"], max_results=1)[0]
                return int(best.data.params["first_row"]) + int(best.data.params["row_count"])

            assert via_mlflow() == expected
            rust = median_seconds(lambda: _core.get_latest_trained_row(uri, name))
            mlf = median_seconds(via_mlflow)
            env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT": name}
            cold_rust = statistics.median(cold([taxifare, "watermark"], env) for _ in range(3))
            code = (f"import mlflow; c = mlflow.tracking.MlflowClient({uri!r}); "
                    f"r = c.search_runs([{exp!r}], {SEARCH!r}, order_by=['attributes.end_time DESC'], max_results=1)[0]; "
                    "print(int(r.data.params['first_row']) + int(r.data.params['row_count']))")
            cold_mlf = statistics.median(cold([sys.executable, "-c", code], env) for _ in range(3))
            print(f"{store:<11}{n:>8,}{rust * 1e3:>10.2f}{mlf * 1e3:>16.2f}{mlf / rust:>7.1f}x"
                  f"{cold_rust:>13.3f}{cold_mlf:>15.3f}{cold_mlf / cold_rust:>7.1f}x")
    if "PostgreSQL" in stores:
        import psycopg

        with psycopg.connect(f"{a.postgres}/postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
