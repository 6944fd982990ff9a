"""Wall time of the whole simulation (every month arrives, one Prefect lifecycle each), split
into the Rust compute of the lifecycles, the time spent in MLflow calls, and the rest
(Prefect, arrival, checks), with the cost of early versus late months.

    python benches/bench_simulation.py [--rows-per-month 10000] [--months 78]

The simulation runs in this process, as `run_all_months` runs it. The Rust compute is what
each lifecycle's one pass took (`Outcome.learn_seconds`, measured inside the real run, not a
replay). MLflow time is measured by timing every `MlflowClient` call and the model save
around the real calls (a bench-only wrapper; the package has no timing hook).
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class MlflowTimer:
    """Seconds spent inside MLflow's client calls (the Prefect tasks run in threads)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        #: Per method: [calls, seconds].
        self.by_name: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self._depth = threading.local()

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            # Client calls nest (a call that calls another): count the outermost only.
            depth = getattr(self._depth, "n", 0)
            self._depth.n = depth + 1
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth.n = depth
                if depth == 0:
                    with self._lock:
                        spent = time.perf_counter() - started
                        self.seconds += spent
                        self.calls += 1
                        entry = self.by_name.setdefault(fn.__name__, [0, 0.0])
                        entry[0] += 1
                        entry[1] += spent

        return timed

    def install(self) -> None:
        import mlflow.pyfunc
        from mlflow.tracking import MlflowClient

        for name in dir(MlflowClient):
            attr = getattr(MlflowClient, name)
            if not name.startswith("_") and callable(attr):
                setattr(MlflowClient, name, self.wrap(attr))
        mlflow.pyfunc.save_model = self.wrap(mlflow.pyfunc.save_model)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows-per-month", default="10000", help="a number, or 'kaggle' for 55,423,856 rows in all")
    ap.add_argument("--months", type=int, default=78)
    ap.add_argument("--dir", default="")
    a = ap.parse_args()
    root = Path(a.dir or tempfile.mkdtemp(prefix="taxifare-sim-"))
    os.environ.update({"LOCAL_DATA_PATH": str(root), "HISTORY_ROWS_PER_MONTH": a.rows_per_month,
                       "PREFECT_HOME": str(root / "prefect"), "MLFLOW_LOGGING_LEVEL": "WARNING",
                       "PREFECT_LOGGING_LEVEL": "WARNING"})
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from taxifare_flow import _core
    from taxifare_flow.data import open_source
    from taxifare_flow.flow.simulate import simulate
    from taxifare_flow.settings import load_settings

    settings = load_settings()
    started = time.perf_counter()
    open_source(settings, "local").reset()
    generation = time.perf_counter() - started

    timer = MlflowTimer()
    timer.install()
    read_before = _core.rows_decoded()
    started = time.perf_counter()
    ticks = list(simulate(settings, a.months))
    simulation = time.perf_counter() - started
    read = _core.rows_decoded() - read_before

    trained = [t.outcome for t in ticks if t.outcome.status == "trained"]
    compute = sum(o.learn_seconds for o in trained)
    rows = sum(o.end_row - o.first_row for o in trained)
    n = len(trained)
    other = simulation - compute - timer.seconds
    print(f"{n} months, {rows:,} rows ({a.rows_per_month} a month); rows read by the core: {read:,} "
          f"({read / max(rows, 1):.2f} per row); load average {os.getloadavg()[0]:.1f}")
    print(f"history generation            {generation:8.1f} s")
    print(f"simulation (wall)             {simulation:8.1f} s   = {simulation / n:.2f} s a month")
    print(f"  Rust compute (the passes)   {compute:8.1f} s   ({compute / simulation:.0%}), {rows / compute:,.0f} rows/s")
    print(f"  MLflow ({timer.calls:,} calls)        {timer.seconds:8.1f} s   ({timer.seconds / simulation:.0%}) "
          f"= {timer.seconds / n:.2f} s a month")
    print(f"  Prefect, arrival, checks    {other:8.1f} s   ({other / simulation:.0%})")
    top = sorted(timer.by_name.items(), key=lambda kv: -kv[1][1])[:6]
    print("  MLflow by call: " + ", ".join(f"{name} {int(c)}× {sec / n * 1000:.0f} ms/month" for name, (c, sec) in top))
    early, late = trained[1:4], trained[-4:-1]
    if early and late:
        print(f"lifecycle wall time, months 2-4: {sum(o.seconds for o in early) / len(early):.2f} s; "
              f"last months: {sum(o.seconds for o in late) / len(late):.2f} s")
    if a.rows_per_month == "kaggle":
        print(f"goals: Rust compute ≤ 35 s ({'met' if compute <= 35 else 'NOT met'}), "
              f"wall ≤ 150 s ({'met' if simulation <= 150 else 'NOT met'})")
    else:
        print(f"goal at this size: ≤ 1.0 s a month — {'met' if simulation / n <= 1.0 else 'NOT met'} ({simulation / n:.2f} s)")


if __name__ == "__main__":
    main()
