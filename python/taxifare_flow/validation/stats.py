"""Merged statistics of ride months (the Rust profile's dicts, `core_types.MonthProfile`):
histograms made dense, quantiles read off them, the Kolmogorov–Smirnov distance between two."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from taxifare_flow.core_types import MonthProfile


@dataclass
class FieldStats:
    """One field over some rows: a histogram of fixed bins (underflow, `bins` bins of `width`
    from `lo`, overflow), count of finite values, NaN/null count, zeros and sum."""

    lo: float
    width: float
    bins: int
    hist: NDArray[np.int64]
    count: int = 0
    nan: int = 0
    zeros: int = 0
    total: float = 0.0

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")

    @property
    def nan_share(self) -> float:
        n = self.count + self.nan
        return self.nan / n if n else 0.0

    @property
    def zero_share(self) -> float:
        return self.zeros / self.count if self.count else 0.0

    def quantile(self, q: float) -> float:
        """The `q` quantile, linear within its bin; an under/overflow quantile is the range's edge."""
        if self.count == 0:
            return float("nan")
        cum = np.cumsum(self.hist)
        target = q * self.count
        i = int(np.searchsorted(cum, target, side="left"))
        if i == 0:
            return self.lo
        if i > self.bins:
            return self.lo + self.bins * self.width
        before = cum[i - 1] if i > 0 else 0
        inside = self.hist[i]
        frac = (target - before) / inside if inside else 0.0
        return self.lo + (i - 1 + float(frac)) * self.width

    def cdf(self) -> NDArray[np.float64]:
        return np.cumsum(self.hist) / max(self.count, 1)

    def add(self, other: FieldStats) -> None:
        self.hist = self.hist + other.hist
        self.count += other.count
        self.nan += other.nan
        self.zeros += other.zeros
        self.total += other.total


def ks_distance(a: FieldStats, b: FieldStats) -> float:
    """The Kolmogorov–Smirnov distance at the bin edges (0 when either side has no value)."""
    if a.count == 0 or b.count == 0:
        return 0.0
    return float(np.max(np.abs(a.cdf() - b.cdf())))


@dataclass
class Stats:
    """Some ride months merged: raw rows, kept rows, drops per reason and the fields."""

    months: list[str] = field(default_factory=list)
    raw: int = 0
    kept: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    fields: dict[str, FieldStats] = field(default_factory=dict)

    @classmethod
    def of(cls, profiles: Iterable[MonthProfile]) -> Stats:
        s = cls()
        for p in profiles:
            s.add(p)
        return s

    def add(self, p: MonthProfile) -> None:
        if p["month"] is not None and p["month"] not in self.months:
            self.months.append(p["month"])
        self.raw += p["raw"]
        self.kept += p["kept"]
        for reason, n in p["drops"].items():
            self.drops[reason] = self.drops.get(reason, 0) + n
        for name, f in p["fields"].items():
            hist = np.zeros(f["bins"] + 2, dtype=np.int64)
            for i, n in f["hist"]:
                hist[i] = n
            one = FieldStats(f["lo"], f["width"], f["bins"], hist, f["count"], f["nan"], f["zeros"], f["sum"])
            if name in self.fields:
                self.fields[name].add(one)
            else:
                self.fields[name] = one

    def drop_rate(self, reason: str | None = None) -> float:
        """Share of raw rows dropped (by `reason`, or by any)."""
        if not self.raw:
            return 0.0
        dropped = self.raw - self.kept if reason is None else self.drops.get(reason, 0)
        return dropped / self.raw
