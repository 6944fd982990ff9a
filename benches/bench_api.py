"""The prediction API as a client sees it (`taxifare api`: FastAPI on uvicorn, in a child
process on 127.0.0.1, asked over one keep-alive HTTP connection: httpx, else http.client),
against the obvious alternative: the registered pyfunc model loaded and called in-process. A
small store (a few thousand generated rows, one lifecycle) gives the `production` version both
serve; both must give the same fares before anything is timed.

Single rides: GET /predict with the course's query parameters, sequentially (latency
percentiles and requests/s of one client). Batches: POST /predict with 1,000 generated rides
(latency per batch, rides/s). In-process: `mlflow.pyfunc.load_model(...).predict(df)` on the
same rides (one row, 1,000 rows), times as DataFrame columns, so the API's extra cost (HTTP,
JSON both ways, parsing the New York or UTC time strings) is what the ratios show.

    python benches/bench_api.py [--requests 500] [--batches 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import pandas as pd

from taxifare_flow import _core

COURSE_RIDE = {"pickup_datetime": "2013-07-06 17:18:00", "pickup_longitude": -73.950655, "pickup_latitude": 40.783282,
               "dropoff_longitude": -73.984365, "dropoff_latitude": 40.769802, "passenger_count": 1}
RIDE_COLUMNS = list(COURSE_RIDE)
BATCH = 1_000
WARM_UP = 50


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=500, help="sequential single-ride requests per run")
    ap.add_argument("--batches", type=int, default=20, help="batches of 1,000 rides per run")
    ap.add_argument("--repeat", type=int, default=3, help="runs; the table shows their medians")
    ap.add_argument("--rows-per-month", type=int, default=3000, help="rows of each generated month the model learns")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="taxifare-bench-api-"))
    try:
        run(root, a)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(root: Path, a: argparse.Namespace) -> None:
    started = time.perf_counter()
    model_name = production_store(root, a.rows_per_month)
    setup = time.perf_counter() - started

    import mlflow

    pyfunc = mlflow.pyfunc.load_model(f"models:/{model_name}@production")
    rides = batch_rides()
    body = json.dumps(rides_as_json(rides)).encode()
    # The course's ride as an in-process caller has it: the New York local time as a UTC instant.
    one = pd.DataFrame({k: [v] for k, v in COURSE_RIDE.items()})
    local = pd.to_datetime(one["pickup_datetime"]).dt.tz_localize("America/New_York")
    one["pickup_datetime"] = local.dt.tz_convert("UTC")
    query = "/predict?" + urllib.parse.urlencode(COURSE_RIDE)

    with api_server(root) as port:
        client = Client(port)

        def get() -> dict[str, object]:
            return client.call("GET", query)

        def post() -> dict[str, object]:
            return client.call("POST", "/predict", body)

        fares = post()["fares"]
        # The same model on the same rides: the comparison is between two ways of one answer.
        expected = [None if f is None else round(f, 2) for f in pyfunc.predict(rides)["fare"].tolist()]
        if expected != fares or get()["fare"] != round(pyfunc.predict(one)["fare"][0], 2):
            raise SystemExit("the API and the pyfunc in-process disagree on the same rides")
        for _ in range(WARM_UP):
            get()
            pyfunc.predict(one)
        api_one = [timed(get, a.requests) for _ in range(a.repeat)]
        api_batch = [timed(post, a.batches) for _ in range(a.repeat)]
        client.close()
    local_one = [timed(lambda: pyfunc.predict(one), a.requests) for _ in range(a.repeat)]
    local_batch = [timed(lambda: pyfunc.predict(rides), a.batches) for _ in range(a.repeat)]

    rejected = sum(f is None for f in fares)
    print(f"production model from {a.rows_per_month:,} rows/month (store set up in {setup:.1f} s); server: "
          f"`taxifare api` (uvicorn, one process) on 127.0.0.1, client: {client.name}, one keep-alive connection, "
          f"sequential; medians of {a.repeat} runs; load average {os.getloadavg()[0]:.1f}")
    print()
    print(f"one ride, {a.requests} sequential calls per run after {WARM_UP} warm-up calls (ms)")
    print(f"{'path':<36}{'p50':>8}{'p95':>8}{'p99':>8}{'calls/s':>10}")
    rows = (("GET /predict (HTTP)", api_one), ("pyfunc.predict in-process", local_one))
    for name, runs in rows:
        p50, p95, p99 = (median_of(runs, q) * 1e3 for q in (50, 95, 99))
        print(f"{name:<36}{p50:>8.2f}{p95:>8.2f}{p99:>8.2f}{1 / statistics.median(mean(r) for r in runs):>10,.0f}")
    print(f"ratio API / in-process at p50: {median_of(api_one, 50) / median_of(local_one, 50):.1f}×")
    print()
    print(f"batches of {BATCH:,} rides ({rejected} rejected by cleaning, answered null), "
          f"{a.batches} calls per run (ms per batch)")
    print(f"{'path':<36}{'p50':>8}{'p95':>8}{'max':>8}{'rides/s':>10}")
    for name, runs in (("POST /predict (HTTP, JSON)", api_batch), ("pyfunc.predict in-process", local_batch)):
        p50, p95, top = median_of(runs, 50), median_of(runs, 95), statistics.median(max(r) for r in runs)
        print(f"{name:<36}{p50 * 1e3:>8.1f}{p95 * 1e3:>8.1f}{top * 1e3:>8.1f}{BATCH / p50:>10,.0f}")
    print(f"ratio API / in-process at p50: {median_of(api_batch, 50) / median_of(local_batch, 50):.1f}×; "
          f"per ride, a batch is {median_of(api_one, 50) * BATCH / median_of(api_batch, 50):.0f}× "
          f"faster than one GET per ride")


def production_store(root: Path, rows_per_month: int) -> str:
    """A fresh embedded store under `root` whose model has a `production` version: two months
    arrive, one lifecycle. The settings are this process's environment, which the server
    inherits; the working directory is `root`, so no `.env` of the checkout is read."""
    from taxifare_flow.settings import SETTING_VARS

    for name in SETTING_VARS:
        os.environ.pop(name, None)
    os.environ.update({"LOCAL_DATA_PATH": str(root / "data"), "HISTORY_ROWS_PER_MONTH": str(rows_per_month),
                       "HISTORY_FIRST_MONTH": "2012-05", "HISTORY_LAST_MONTH": "2012-08",
                       "MLFLOW_EXPERIMENT": "bench-api", "MLFLOW_MODEL_NAME": "taxifare-bench-api",
                       "MLFLOW_LOGGING_LEVEL": "WARNING",
                       # No refresh during the measurement: only requests are timed.
                       "API_REFRESH_SECONDS": "3600"})
    os.chdir(root)
    from taxifare_flow.data.local import LocalSource
    from taxifare_flow.flow.lifecycle import run_lifecycle
    from taxifare_flow.ml_logic.registry import PRODUCTION, open_registry
    from taxifare_flow.settings import load_settings

    settings = load_settings()
    source = LocalSource(settings)
    source.reset()
    for _ in range(2):
        source.bring_next_month()
    run_lifecycle(settings)
    reg = open_registry(settings)
    if reg.version_by_alias(PRODUCTION) is None:
        raise SystemExit("the lifecycle promoted no version to production: nothing to serve")
    return reg.model_name


def batch_rides() -> pd.DataFrame:
    """1,000 generated rides of a later month, the raw columns only (times as UTC timestamps)."""
    frame = _core.generate_month("2012-09", BATCH, seed=7).read_all().to_pandas()
    return frame[RIDE_COLUMNS].reset_index(drop=True)


def rides_as_json(rides: pd.DataFrame) -> list[dict[Hashable, Any]]:
    """The rides as a client posts them: times as `YYYY-MM-DD HH:MM:SS UTC` (Kaggle's form)."""
    times = pd.to_datetime(rides["pickup_datetime"], utc=True).dt.strftime("%Y-%m-%d %H:%M:%S UTC")
    return rides.assign(pickup_datetime=times).to_dict(orient="records")


class api_server:
    """`taxifare api` on a free loopback port in its own process group, until the block ends."""

    def __init__(self, root: Path) -> None:
        self.log = root / "api.log"

    def __enter__(self) -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        with self.log.open("w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "taxifare_flow.cli", "api", "--host", "127.0.0.1",
                                          "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 90
        try:
            while not healthy(port):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the API did not start:\n{self.log.read_text()}")
                time.sleep(0.3)
        except BaseException:
            self.stop()
            raise
        return port

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)


def healthy(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


class Client:
    """One keep-alive connection to the API: httpx when installed (it is, through Prefect),
    else the standard library's http.client. Each answer is read and parsed, as a client would."""

    def __init__(self, port: int) -> None:
        try:
            import httpx
        except ImportError:
            self._httpx = None
            self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            self.name = "http.client"
        else:
            self._httpx = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
            self.name = f"httpx {httpx.__version__}"

    def call(self, method: str, path: str, body: bytes | None = None) -> dict[str, object]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self._httpx is not None:
            r = self._httpx.request(method, path, content=body, headers=headers)
            status, answer = r.status_code, r.content
        else:
            self._conn.request(method, path, body=body, headers=headers)
            got = self._conn.getresponse()
            status, answer = got.status, got.read()
        if status != 200:
            raise SystemExit(f"{method} {path[:60]}: {status} {answer[:200]!r}")
        parsed: dict[str, object] = json.loads(answer)
        return parsed

    def close(self) -> None:
        if self._httpx is not None:
            self._httpx.close()
        else:
            self._conn.close()


def timed(fn: Callable[[], object], n: int) -> list[float]:
    """The wall time of each of `n` sequential calls."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def percentile(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))]


def median_of(runs: list[list[float]], q: float) -> float:
    """The median over runs of each run's `q`th percentile."""
    return statistics.median(percentile(r, q) for r in runs)


def mean(samples: list[float]) -> float:
    return sum(samples) / len(samples)


if __name__ == "__main__":
    main()
