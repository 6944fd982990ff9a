"""Helpers shared by the benchmarks: a generated source of a given size, peak RSS of a child."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from taxifare_flow import _core

ROWS_PER_MONTH = 720_000


def build_source(root: Path, months: list[str], rows_per_month: int = ROWS_PER_MONTH) -> tuple[Path, float]:
    """Generates `months` into root/pending and appends them to root/source (once; reused).
    Returns the source folder and the generator's throughput (rows/s), 0 when reused."""
    src = root / "source"
    if src.is_dir() and _core.row_count(src) == len(months) * rows_per_month:
        return src, 0.0
    started = time.perf_counter()
    _core.generate_history(root / "pending", seed=1, first_month=months[0], last_month=months[-1],
                           rows_per_month=rows_per_month, keep_existing=False)
    rate = len(months) * rows_per_month / (time.perf_counter() - started)
    for p in src.glob("*") if src.is_dir() else []:
        p.unlink()
    for m in months:
        _core.append_month(root / "pending" / f"{m}.parquet", m, src)
    return src, rate


def months_from(first: str, n: int) -> list[str]:
    y, m = map(int, first.split("-"))
    out = []
    for _ in range(n):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def child(code: str) -> dict:
    """Runs `code` in a fresh interpreter; it must print one JSON object. Adds the child's peak
    RSS in MiB (so each method's memory is measured alone)."""
    # VmHWM, not ru_maxrss: the latter keeps the forked parent's peak across exec.
    wrapper = code + (
        "\nimport json as _j, re as _re\n"
        "_hwm = int(_re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
        "print(_j.dumps({**RESULT, 'peak_mib': _hwm / 1024}))"
    )
    out = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_seconds(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median wall time of `repeat` calls of `fn` (one noisy call cannot flip a table)."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)
