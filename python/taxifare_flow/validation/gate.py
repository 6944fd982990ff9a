"""The gate's decision: a new range's statistics against the reference of recent trained
months. Thresholds and why: docs/validation.md (the table of cases caught and let through).

Every test has two parts, so that a small month is not refused for its noise and a large one
not for a change too small to matter: a statistical bound that shrinks as 1/sqrt(n) (n: the
new range's rows) and an effect-size floor that a broken month exceeds by far and the world
changing (the 2012-09 fare change, ~+17 %) does not reach."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from taxifare_flow.core_types import MonthProfile
from taxifare_flow.validation.stats import FieldStats, Stats, ks_distance

#: Recent trained ride months merged into the reference.
REFERENCE_MONTHS = 6
#: Kolmogorov–Smirnov: c(α) = sqrt(-ln(α/2)/2) of the two-sample bound c·sqrt((n+m)/(n·m)).
#: 8 fields × 78 months ≈ 600 tests a history; α = 0.1 / 600 (Bonferroni) gives c = 2.17: a
#: history of good months has a 10 % chance of one false alarm from sampling noise alone.
KS_C_ALPHA = 2.17
#: ... and the effect-size floor (the 2012-09 fare change measures 0.10 on fare_amount).
KS_FLOOR = 0.25
#: A drop rate (any reason, or one reason) may rise by DROP_Z binomial standard errors of the
#: reference rate at the new range's size, plus DROP_FLOOR.
DROP_Z = 4.0
DROP_FLOOR = 0.05
#: The share of NaN/nulls of a field may rise by as much.
NAN_FLOOR = 0.05
#: Rows whose pickup month is not one of the range's source months (a month file holding
#: another month's rides): at most this share.
FOREIGN_MAX = 0.02
#: Without a reference (a first month): at most this share of rows dropped.
FIRST_DROP_MAX = 0.5
#: Fields whose median is shown in the message, with the recent months' range.
SHOWN = ("fare_amount", "distance_km", "pickup_latitude", "pickup_longitude", "dropoff_latitude",
         "dropoff_longitude", "hour", "passenger_count")


@dataclass(frozen=True)
class Check:
    """One test: `value` against `threshold` (refused above it); `detail` says it in words."""

    name: str
    value: float
    threshold: float
    detail: str

    @property
    def ok(self) -> bool:
        return not self.value > self.threshold

    @property
    def severity(self) -> float:
        return self.value / self.threshold if self.threshold > 0 else math.inf


@dataclass
class Verdict:
    """The gate's decision on rows `[first_row, end_row)` of ride months `months`."""

    first_row: int
    end_row: int
    month: str
    rows: int
    reference_months: list[str]
    checks: list[Check] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        return any(not c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        """The failed checks, the most telling first: rows of another month, then a field's
        distribution (it names the values), then drops by reason, then the rest."""
        order = ("foreign", "ks ", "drop ", "")
        rank = {c.name: next(i for i, p in enumerate(order) if c.name.startswith(p)) for c in self.checks}
        return sorted((c for c in self.checks if not c.ok), key=lambda c: (rank[c.name], -c.severity))

    @property
    def max_ks(self) -> float:
        return max((c.value for c in self.checks if c.name.startswith("ks ")), default=0.0)

    def line(self) -> str:
        """The one line of a refusal (the worst failures first)."""
        what = f"month {self.month} (rows {self.first_row}..{self.end_row})"
        if not self.refused:
            ref = f"{len(self.reference_months)} recent months" if self.reference_months else "no reference (first month)"
            return f"{what} passed against {ref}"
        failures = self.failures
        # The worst of each kind: rows of another month, a distribution, a drop reason, the rest.
        picked: list[Check] = []
        for c in failures:
            kind = c.name.split(" ")[0]
            if all(p.name.split(" ")[0] != kind for p in picked) and len(picked) < 3:
                picked.append(c)
        shown = "; ".join(c.detail for c in picked)
        more = f" … ({len(failures) - len(picked)} more)" if len(failures) > len(picked) else ""
        return (f"{what} refused: {shown}{more}; nothing was trained: fix the month, or train it deliberately "
                "with `taxifare run_flow --accept`")

    def summary(self) -> dict[str, object]:
        return {"month": self.month, "first_row": self.first_row, "end_row": self.end_row, "rows": self.rows,
                "refused": self.refused, "reference_months": self.reference_months,
                "checks": [{"name": c.name, "value": c.value, "threshold": c.threshold, "ok": c.ok, "detail": c.detail}
                           for c in self.checks]}


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %" if x >= 0.01 or x == 0 else f"{100 * x:.2f} %"


def _ks_bound(n: int, m: int) -> float:
    return max(KS_FLOOR, KS_C_ALPHA * math.sqrt((n + m) / (n * m))) if n and m else math.inf


def _rate_bound(p_ref: float, n: int) -> float:
    p = min(max(p_ref, 1.0 / max(n, 1)), 1.0)
    return p_ref + DROP_FLOOR + DROP_Z * math.sqrt(p * (1 - p) / max(n, 1))


def _median_range(name: str, per_month: Sequence[Stats]) -> str:
    medians = [s.fields[name].quantile(0.5) for s in per_month if name in s.fields and s.fields[name].count]
    return f"{min(medians):.2f}–{max(medians):.2f}" if medians else "n/a"


def _median(f: FieldStats) -> str:
    """The median, or where it lies when outside the bins (then the exact mean tells more)."""
    if f.count == 0:
        return "n/a (no value)"
    m = f.quantile(0.5)
    hi = f.lo + f.bins * f.width
    if m <= f.lo and f.hist[0] * 2 >= f.count:
        return f"below {f.lo:.2f} (mean {f.mean:.2f})"
    if m >= hi:
        return f"above {hi:.2f} (mean {f.mean:.2f})"
    return f"{m:.2f}"


def _field_detail(name: str, new: FieldStats, per_month: Sequence[Stats], ks: float) -> str:
    return f"{name} median {_median(new)}, recent months {_median_range(name, per_month)} (KS distance {ks:.2f})"


def judge(new: Sequence[MonthProfile], reference: Sequence[MonthProfile], range_months: Sequence[str],
          first_row: int, end_row: int, month: str | None = None) -> Verdict:
    """The verdict on a range whose per-month statistics are `new`, whose source files are of
    `range_months`, against `reference` (recent trained months' statistics)."""
    cur = Stats.of(new)
    ref = Stats.of(reference)
    per_month = [Stats.of([p]) for p in reference]
    label = month or (range_months[-1] if range_months else "?")
    if len(range_months) > 1:
        label = f"{range_months[0]}..{range_months[-1]}"
    v = Verdict(first_row, end_row, label, cur.raw, list(ref.months))
    n = cur.raw
    if n == 0:
        return v
    # Rides of another month than the file's: a month delivered with the wrong timestamps.
    foreign = sum(p["raw"] for p in new if p["month"] is not None and p["month"] not in range_months)
    if range_months:
        v.checks.append(Check("foreign months", foreign / n, FOREIGN_MAX,
                              f"{_pct(foreign / n)} of the rows have pickup times outside {', '.join(range_months)}"))
    if ref.raw == 0:
        v.checks.append(Check("drop rate", cur.drop_rate(), FIRST_DROP_MAX,
                              f"cleaning drops {_pct(cur.drop_rate())} of the rows (no reference yet: at most {_pct(FIRST_DROP_MAX)})"))
        return v
    v.checks.append(Check("drop rate", cur.drop_rate(), _rate_bound(ref.drop_rate(), n),
                          f"cleaning drops {_pct(cur.drop_rate())} of the rows, recent months {_pct(ref.drop_rate())}"))
    for reason in sorted(set(cur.drops) | set(ref.drops)):
        r_new, r_ref = cur.drop_rate(reason), ref.drop_rate(reason)
        v.checks.append(Check(f"drop {reason}", r_new, _rate_bound(r_ref, n),
                              f"{reason} drops {_pct(r_new)} of the rows, recent months {_pct(r_ref)}"))
    for name in SHOWN:
        a, b = cur.fields.get(name), ref.fields.get(name)
        if a is None or b is None:
            v.checks.append(Check(f"schema {name}", 1.0, 0.0, f"{name} is missing from the statistics"))
            continue
        nan_bound = b.nan_share + NAN_FLOOR + DROP_Z * math.sqrt(max(b.nan_share, 1 / n) / n)
        v.checks.append(Check(f"nan {name}", a.nan_share, nan_bound,
                              f"{name} is null or NaN in {_pct(a.nan_share)} of the rows, recent months {_pct(b.nan_share)}"))
        ks = ks_distance(a, b)
        v.checks.append(Check(f"ks {name}", ks, _ks_bound(a.count, b.count), _field_detail(name, a, per_month, ks)))
    return v
