"""The overhead ratios of issue 24 side by side: MLflow client calls per lifecycle, a lifecycle
against one plain fit of the month's rows (in-process and through the Prefect flow `run_flow`
uses), the whole simulation's wall time against its Rust compute, and slicing the source
against `pyarrow.dataset` in a warm process and in a cold one.

Each part runs in its own process (its settings, its Prefect API, its peak RSS):

- lifecycle: months of `--rows` rows (700,000: a Kaggle-size month) arrive one by one; the
  first lifecycle makes production and a second, untimed, goes through the Prefect flow (it
  starts the local Prefect API), then `--repeat` lifecycles in-process (`run_lifecycle`) and
  `--repeat` through the flow (`run_flow`) alternate, each against one plain
  `partial_fit_source` of the same rows (median of `--repeat`); then a lifecycle with nothing
  to do. MLflow calls are `MlflowClient`'s public methods, counted by a bench-only wrapper,
  the outermost call only (a client method calling another counts once).
- simulation: every month of the history (`--sim-rows-per-month`, 10,000 by default;
  `--kaggle`: the full 55,423,856 rows, minutes) through `simulate`, as `run_all_months` runs
  it (one Prefect flow run, a task run a month); its Rust compute is each lifecycle's one pass
  (`Outcome.learn_seconds`); the first month (which creates the store and waits for the local
  Prefect API) apart from the later ones; CPU seconds of this process and of the local API.
- slicing: the last month of the 10 M-row source of `bench_data.py` (the same folder, reused),
  `_core.read_rows` against `pyarrow.dataset` filtering on `row_id`: warm (one process, after
  one untimed call of each, `--repeat` alternating calls, medians) and cold (a fresh process a
  call, as `bench_data.py` measures it).

    python benches/bench_overhead.py [--rows 700000] [--repeat 3] [--sim-rows-per-month 10000] [--kaggle]
        [--only lifecycle|simulation|slicing ...]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class CallCounter:
    """Outermost calls of `MlflowClient`'s public methods, by method name (Prefect tasks run in
    threads: the nesting depth is per thread)."""

    def __init__(self) -> None:
        self.by_name: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._depth = threading.local()

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def counted(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(self._depth, "n", 0)
            if depth == 0:
                with self._lock:
                    self.by_name[fn.__name__] += 1
            self._depth.n = depth + 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth.n = depth

        return counted

    def install(self) -> None:
        from mlflow.tracking import MlflowClient

        for name in dir(MlflowClient):
            attr = getattr(MlflowClient, name)
            if not name.startswith("_") and callable(attr) and not isinstance(attr, type):
                setattr(MlflowClient, name, self._wrap(attr))

    def total(self) -> int:
        return sum(self.by_name.values())

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.by_name)


def _settings_env(root: Path, rows: str, first: str | None = None, last: str | None = None) -> None:
    os.environ.update({"LOCAL_DATA_PATH": str(root), "HISTORY_ROWS_PER_MONTH": rows,
                       "PREFECT_HOME": str(root / "prefect"), "MLFLOW_LOGGING_LEVEL": "WARNING",
                       "PREFECT_LOGGING_LEVEL": "WARNING"})
    if first and last:
        os.environ.update({"HISTORY_FIRST_MONTH": first, "HISTORY_LAST_MONTH": last})
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def part_lifecycle(a: argparse.Namespace) -> dict[str, Any]:
    """Lifecycles on months of `a.rows` rows, in-process and through the Prefect flow."""
    import shutil

    from common import median_seconds, months_from

    months = months_from("2012-07", 3 + 2 * a.repeat)
    root = Path(a.dir) / f"lifecycle-{a.rows}"
    shutil.rmtree(root / "mlflow", ignore_errors=True)
    shutil.rmtree(root / "prefect", ignore_errors=True)
    _settings_env(root, str(a.rows), months[0], months[-1])
    from taxifare_flow import _core
    from taxifare_flow.data import open_source
    from taxifare_flow.flow.lifecycle import run_lifecycle
    from taxifare_flow.flow.prefect_flow import run_flow
    from taxifare_flow.settings import load_settings

    settings = load_settings()
    source = open_source(settings, "local")
    source.reset()  # the history is generated once per folder, then reused
    counter = CallCounter()
    counter.install()
    source.bring_next_month()
    run_lifecycle(settings)  # the first model: production from here on

    def lifecycle(run: Callable[..., Any]) -> dict[str, Any]:
        source.bring_next_month()
        before = counter.snapshot()
        started = time.perf_counter()
        outcome = run(settings)
        seconds = time.perf_counter() - started
        assert outcome.status == "trained" and outcome.production_version, outcome
        calls = counter.snapshot() - before
        w, t = outcome.first_row, outcome.end_row
        fit = median_seconds(lambda: _core.Model(feature_version=settings.feature_version).partial_fit_source(
            settings.source_dir, w, t - w), a.repeat)
        return {"seconds": seconds, "fit": fit, "calls": sum(calls.values()), "by_name": dict(calls),
                "learn": outcome.learn_seconds, "rows": t - w}

    # The process's first flow starts the local Prefect API (seconds: the simulation part's
    # first month shows it) and a lifecycle with nothing to do starts none: a month through the
    # flow, untimed, as the first month in-process was.
    source.bring_next_month()
    run_flow(settings)
    before = counter.snapshot()
    empty_flow = run_flow(settings)
    assert empty_flow.status == "nothing to do", empty_flow
    empty_flow_calls = counter.snapshot() - before
    runs: dict[str, list[dict[str, Any]]] = {"in-process": [], "flow": []}
    for _ in range(a.repeat):
        runs["in-process"].append(lifecycle(run_lifecycle))
        runs["flow"].append(lifecycle(run_flow))
    before = counter.snapshot()
    empty = run_lifecycle(settings)
    assert empty.status == "nothing to do", empty
    empty_calls = counter.snapshot() - before
    return {"runs": runs, "empty_calls": sum(empty_calls.values()), "empty_by_name": dict(empty_calls),
            "empty_flow_calls": sum(empty_flow_calls.values()), "load": os.getloadavg()}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux `/proc`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def part_simulation(a: argparse.Namespace) -> dict[str, Any]:
    """Every month of the history through `simulate` (one Prefect flow run, a task run a month),
    as `run_all_months` runs it: wall time from `simulate`'s call (the store's creation and the
    local Prefect API's start included), the first month apart (it pays them), this process's
    CPU and the local API's."""
    import resource

    rows = "kaggle" if a.kaggle else str(a.sim_rows_per_month)
    root = Path(tempfile.mkdtemp(prefix="taxifare-overhead-sim-", dir=a.dir))
    _settings_env(root, rows)
    from taxifare_flow.data import open_source
    from taxifare_flow.flow import prefect_server
    from taxifare_flow.flow.simulate import simulate
    from taxifare_flow.settings import load_settings

    settings = load_settings()
    open_source(settings, "local").reset()
    counter = CallCounter()
    counter.install()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    ticks_at: list[float] = []
    ticks = []
    for tick in simulate(settings, a.months):
        ticks.append(tick)
        ticks_at.append(time.perf_counter() - started)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    server = prefect_server._server
    server_cpu = _cpu_seconds(server.process.pid) if server is not None and server.process.poll() is None else 0.0
    trained = [t.outcome for t in ticks if t.outcome.status == "trained"]
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    return {"rows_per_month": rows, "months": len(trained), "rows": sum(o.end_row - o.first_row for o in trained),
            "wall": wall, "compute": sum(o.learn_seconds for o in trained), "calls": counter.total(),
            "first": ticks_at[0] if ticks_at else 0.0,
            # Inside the months' task runs: the lifecycles (their own clock); the rest of a later
            # month is Prefect's task run, the arrival and the month's sync.
            "lifecycles_after_first": sum(o.seconds for o in trained[1:]),
            "cpu": after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime, "server_cpu": server_cpu,
            "load": os.getloadavg()}


def part_slicing_warm(a: argparse.Namespace) -> dict[str, Any]:
    """`read_rows` and `pyarrow.dataset` on the same range, alternating, in this process."""
    import pyarrow.dataset as ds

    from common import build_source, months_from

    from taxifare_flow import _core

    src, _ = build_source(Path(a.slice_dir), months_from("2013-01", a.slice_months), a.slice_rows_per_month)
    end = _core.row_count(src)
    first = end - a.slice_rows_per_month
    field = ds.field("row_id")

    def rust() -> int:
        return sum(b.num_rows for b in _core.read_rows(src, first, end - first))

    def pyarrow_dataset() -> int:
        return ds.dataset(src).to_table(filter=(field >= first) & (field < end)).num_rows

    methods = {"rust": rust, "pyarrow": pyarrow_dataset}
    times: dict[str, list[float]] = {name: [] for name in methods}
    for fn in methods.values():
        assert fn() == end - first
    for _ in range(a.slice_repeat):
        for name, fn in methods.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return {"src": str(src), "first": first, "count": end - first, "total": end,
            "warm": {name: statistics.median(t) for name, t in times.items()}, "load": os.getloadavg()}


def part_slicing_cold(a: argparse.Namespace, src: str, first: int, count: int) -> dict[str, float]:
    """A fresh interpreter a call, alternating, as `bench_data.py` measures (medians)."""
    from bench_data import CPU, PYARROW, RUST
    from common import child

    codes = {"rust": RUST.format(src=src, first=first, count=count, cpu=CPU),
             "pyarrow": PYARROW.format(src=src, first=first, end=first + count, cpu=CPU)}
    times: dict[str, list[float]] = {name: [] for name in codes}
    for _ in range(a.slice_repeat):
        for name, code in codes.items():
            r = child(code)
            assert r["rows"] == count, r
            times[name].append(r["seconds"])
    return {name: statistics.median(t) for name, t in times.items()}


PARTS = {"lifecycle": part_lifecycle, "simulation": part_simulation, "slicing": part_slicing_warm}


def run_part(name: str, a: argparse.Namespace) -> dict[str, Any]:
    """Runs one part in a fresh interpreter; its result is the last line it prints."""
    args = [sys.executable, str(Path(__file__).resolve()), "--part", name, *sys.argv[1:]]
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    out = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path})
    if out.returncode != 0:
        sys.stderr.write(out.stdout + out.stderr)
        raise SystemExit(f"the {name} part failed (exit status {out.returncode})")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def row(name: str, value: str, goal: str, verdict: str = "") -> None:
    print(f"{name:<58}{value:>12}  {goal:<10}{verdict}")


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=700_000, help="rows of a month in the lifecycle part")
    ap.add_argument("--repeat", type=int, default=3, help="lifecycles of each kind (in-process, flow); fits per lifecycle")
    ap.add_argument("--sim-rows-per-month", type=int, default=10_000)
    ap.add_argument("--months", type=int, default=None, help="months of the simulation (default: the whole history)")
    ap.add_argument("--kaggle", action="store_true", help="the simulation at the Kaggle size (55,423,856 rows; minutes)")
    ap.add_argument("--slice-months", type=int, default=14)
    ap.add_argument("--slice-rows-per-month", type=int, default=720_000)
    ap.add_argument("--slice-repeat", type=int, default=5)
    ap.add_argument("--slice-dir", default=str(Path(tempfile.gettempdir()) / "taxifare-bench-data"),
                    help="the source of bench_data.py, reused")
    ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "taxifare-bench-overhead"))
    ap.add_argument("--only", choices=sorted(PARTS), action="append",
                    help="run only these parts (repeatable; the slicing part brings the cold slicing)")
    ap.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    a = ap.parse_args()
    Path(a.dir).mkdir(parents=True, exist_ok=True)
    if a.part:
        print(json.dumps(PARTS[a.part](a)))
        return

    load = os.getloadavg()
    parts = set(a.only or PARTS)
    lc = run_part("lifecycle", a) if "lifecycle" in parts else None
    sim = run_part("simulation", a) if "simulation" in parts else None
    sl = run_part("slicing", a) if "slicing" in parts else None
    cold = part_slicing_cold(a, sl["src"], sl["first"], sl["count"]) if sl is not None else None
    med = statistics.median
    loads = ", ".join(f"{name} part {p['load'][0]:.1f}" for name, p in (("lifecycle", lc), ("simulation", sim),
                                                                       ("slicing", sl)) if p is not None)
    print(f"load average before: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores ({loads})")
    if lc is not None:
        inproc, flow = lc["runs"]["in-process"], lc["runs"]["flow"]
        print(f"lifecycle part: months of {inproc[0]['rows']:,} rows with production, {a.repeat} lifecycle(s) in-process "
              f"and {a.repeat} through the flow, alternating; one plain fit = median of {a.repeat} partial_fit_source of "
              "the same rows")
    if sim is not None:
        print(f"simulation part: {sim['months']} months, {sim['rows']:,} rows ({sim['rows_per_month']} a month), "
              "one Prefect flow run (a task run a month)")
    if sl is not None:
        print(f"slicing part: the last {sl['count']:,} rows of a {sl['total']:,}-row source (Parquet), "
              f"warm: medians of {a.slice_repeat} alternating calls in one process; cold: of {a.slice_repeat} fresh "
              "processes each")
    print()
    row("ratio", "measured", "goal", "")
    if lc is not None:
        calls = [r["calls"] for r in inproc + flow]
        row("MLflow calls, a training lifecycle (min–max)", f"{min(calls)}–{max(calls)}", "≤ 12", met(max(calls) <= 12))
        row("MLflow calls, a lifecycle with nothing to do (in-process)", f"{lc['empty_calls']}", "0",
            met(lc["empty_calls"] == 0))
        row("MLflow calls, a flow with nothing to do", f"{lc['empty_flow_calls']}", "0", met(lc["empty_flow_calls"] == 0))
    if sim is not None:
        row("MLflow calls per lifecycle, whole simulation", f"{sim['calls'] / sim['months']:.1f}", "≤ 12",
            met(sim["calls"] / sim["months"] <= 12))
    if lc is not None:
        ratio_in = med(r["seconds"] for r in inproc) / med(r["fit"] for r in inproc)
        ratio_flow = med(r["seconds"] for r in flow) / med(r["fit"] for r in flow)
        row("lifecycle / one fit, in-process (run_lifecycle)", f"{ratio_in:.2f}×", "", "")
        row("lifecycle / one fit, Prefect flow (run_flow)", f"{ratio_flow:.2f}×", "≤ 2×", met(ratio_flow <= 2))
        ratio_pass = med(r["learn"] for r in inproc + flow) / med(r["fit"] for r in inproc + flow)
        row("  the one pass alone / one fit", f"{ratio_pass:.2f}×", "", "")
    if sim is not None:
        per_month = sim["wall"] / sim["months"]
        row(f"simulation wall / Rust compute ({sim['rows_per_month']} a month)", f"{sim['wall'] / sim['compute']:.2f}×",
            "≤ 1.5×" if a.kaggle else "", met(sim["wall"] / sim["compute"] <= 1.5) if a.kaggle else "")
        if not a.kaggle:
            row("simulation s a month (wall / months)", f"{per_month:.3f}", "≤ 0.25", met(per_month <= 0.25))
        later = (sim["wall"] - sim["first"]) / max(sim["months"] - 1, 1)
        inside = sim["lifecycles_after_first"] / max(sim["months"] - 1, 1)
        row("  the first month s (store created, Prefect API started)", f"{sim['first']:.2f}", "", "")
        row("  a later month s", f"{later:.3f}", "", "")
        row("    its lifecycle (inside the month's task run) s", f"{inside:.3f}", "", "")
        row("    Prefect's task run, arrival, the month's sync s", f"{later - inside:.3f}", "", "")
    if sl is not None and cold is not None:
        warm = sl["warm"]["rust"] / sl["warm"]["pyarrow"]
        row("slicing, read_rows / pyarrow.dataset, warm process", f"{warm:.2f}×", "≤ 1×", met(warm <= 1))
        row("slicing, read_rows / pyarrow.dataset, cold process", f"{cold['rust'] / cold['pyarrow']:.2f}×", "", "")
    print()
    if lc is not None:
        print(f"{'seconds (medians)':<44}{'in-process':>12}{'flow':>12}")
        for key, name in (("seconds", "lifecycle"), ("learn", "  its one pass"), ("fit", "one plain fit of the month")):
            print(f"{name:<44}{med(r[key] for r in inproc):>12.3f}{med(r[key] for r in flow):>12.3f}")
    if sim is not None:
        print(f"simulation: wall {sim['wall']:.1f} s, Rust compute {sim['compute']:.1f} s, {sim['calls']:,} MLflow calls; "
              f"CPU: this process {sim['cpu']:.1f} s, the local Prefect API {sim['server_cpu']:.1f} s")
    if sl is not None and cold is not None:
        print(f"slicing (s): warm read_rows {sl['warm']['rust']:.3f}, pyarrow.dataset {sl['warm']['pyarrow']:.3f}; "
              f"cold read_rows {cold['rust']:.3f}, pyarrow.dataset {cold['pyarrow']:.3f}")
    if lc is not None:
        by_name: Counter[str] = Counter()
        for r in inproc + flow:
            by_name.update(r["by_name"])
        n = len(inproc + flow)
        print("MLflow calls a training lifecycle, by method: "
              + ", ".join(f"{name} {c / n:g}" for name, c in by_name.most_common()))


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    if "--part" not in sys.argv:
        print(f"(benchmark wall time {time.perf_counter() - started:.0f} s)")
