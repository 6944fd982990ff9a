"""Backtest of the promotion policies on a generated history, month by month as the lifecycle
runs them (python/taxifare_flow/flow/lifecycle.py):

1. production is scored on all of the new month's rows (prequential MAE, what users get);
2. the challenger = the lineage head continued on the first 85 % of the month's rows;
3. challenger and production are scored on the last 15 % (the holdout), the policy decides;
4. the head gets the holdout too and, if promoted, becomes production.

The lineage head does not depend on the policy (it always continues), so every policy is a
choice among the same head snapshots; evaluations are cached per (snapshot, rows).

Policies: those of `taxifare_flow.ml_logic.promotion.decide` (`paired`, `margin` and their
margins), always and never promote, and the oracle, which promotes exactly when the new
head beats production on the NEXT month's rows (unattainable; the bound to aim at).

    OMP_NUM_THREADS=1 python benches/policy_backtest.py [--rows-per-month 10000 20000] [--seeds 11 12 13] [--trace]
    OMP_NUM_THREADS=1 python benches/policy_backtest.py --basis v2   # the same with the v2 prototype basis
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import features_v2_proto as v2
from common import months_from
from taxifare_flow import _core
from taxifare_flow.ml_logic.promotion import decide

MONTHS = months_from("2009-01", 78)
HOLDOUT_FRACTION = 0.15  # settings.holdout_fraction's default


@dataclass
class Month:
    """One month's rows split as the lifecycle splits them (rows are in time order)."""

    name: str
    rows: pa.Table
    train: pa.Table
    holdout: pa.Table


class ProtoV2:
    """The recommended v2 basis (`features_v2_proto`) on the kernel's exact ridge, with the part
    of `_core.Model`'s API the backtest uses: to see whether the policy still matters once
    the features are fixed. Designs are computed once per table (the months keep them alive)."""

    _designs: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __init__(self, stats: v2.ExactRidge | None = None) -> None:
        self.stats = stats

    @classmethod
    def _design(cls, t: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        if id(t) not in cls._designs:
            r = v2.cleaned_rides(t)
            cls._designs[id(t)] = (v2.design(r, v2.V2_GROUPS, v2.V2_DROP_V1)[0], r.y)
        return cls._designs[id(t)]

    def copy(self) -> ProtoV2:
        if self.stats is None:
            return ProtoV2()
        s = v2.ExactRidge(self.stats.xtx.shape[0] - 1)
        s.xtx, s.xty = self.stats.xtx.copy(), self.stats.xty.copy()
        return ProtoV2(s)

    def partial_fit(self, t: pa.Table) -> None:
        x, y = self._design(t)
        if self.stats is None:
            self.stats = v2.ExactRidge(x.shape[1])
        self.stats.add(x, y)

    def evaluate(self, t: pa.Table, return_errors: bool = True) -> dict[str, np.ndarray]:
        x, y = self._design(t)
        assert self.stats is not None
        a, b = self.stats.solve()
        return {"abs_errors": np.abs(a + x @ b - y)}


@dataclass
class Lineage:
    """Head snapshots: `heads[k]` has learnt months 0..k; `challengers[k]` is the head of k-1
    continued on month k's first 85 % (what the policy compares at month k)."""

    months: list[Month]
    new_model: Callable[[], _core.Model | ProtoV2] = _core.Model
    heads: list[_core.Model | ProtoV2] = field(default_factory=list)
    challengers: list[_core.Model | ProtoV2] = field(default_factory=list)
    _cache: dict[tuple[str, int, int, str], np.ndarray] = field(default_factory=dict)

    def build(self) -> None:
        head: _core.Model | ProtoV2 | None = None
        for m in self.months:
            chal = head.copy() if head is not None else self.new_model()
            chal.partial_fit(m.train)
            self.challengers.append(chal.copy())
            chal.partial_fit(m.holdout)
            self.heads.append(chal)
            head = chal

    def errors(self, kind: str, k: int, month: int, part: str) -> np.ndarray:
        """Absolute errors of heads[k] (kind "head") or challengers[k] on month's rows/holdout."""
        key = (kind, k, month, part)
        if key not in self._cache:
            model = (self.heads if kind == "head" else self.challengers)[k]
            m = self.months[month]
            self._cache[key] = np.asarray(model.evaluate(m.rows if part == "rows" else m.holdout, True)["abs_errors"])
        return self._cache[key]


#: A policy: (lineage, month index, production head index or None) -> promote?
Policy = Callable[[Lineage, int, int | None], bool]


def from_decide(policy: str, margin: float = 0.0, min_rows: int = 200) -> Policy:
    def run(lin: Lineage, k: int, prod: int | None) -> bool:
        chal = lin.errors("challenger", k, k, "holdout")
        prod_err = lin.errors("head", prod, k, "holdout") if prod is not None else None
        return bool(decide(chal, prod_err, policy, margin, min_rows).promote)

    return run


def oracle(lin: Lineage, k: int, prod: int | None) -> bool:
    if prod is None or k + 1 >= len(lin.months):
        return True
    return lin.errors("head", k, k + 1, "rows").mean() < lin.errors("head", prod, k + 1, "rows").mean()


def lagged(policy: str = "paired", also_holdout: bool = False) -> Policy:
    """Candidate: judge the lineage on rows NEITHER model has seen. At month k the parent
    (head of k-1, never trained on month k) and production are compared on all of month k's
    rows (production is scored there anyway: the prequential MAE); if the parent wins, the new
    head (k) is promoted. The same-month holdout cannot see a failure to extrapolate to a new
    month (v1's month one-hots and year trend: a challenger has learnt its month's level from
    the first 85 % of that month). When production IS the parent there is nothing to compare:
    keep. `also_holdout`: the holdout test must pass as well."""

    def run(lin: Lineage, k: int, prod: int | None) -> bool:
        if prod is None:
            return True
        if prod == k - 1:
            return False
        ok = decide(lin.errors("head", k - 1, k, "rows"), lin.errors("head", prod, k, "rows"), policy).promote
        return ok and (not also_holdout or from_decide("paired")(lin, k, prod))

    return run


def hindsight_bound(lin: Lineage) -> dict[str, float]:
    """Each month, the best MAE of any version registered before it: no policy serving a
    registered version can do better."""
    return {lin.months[k].name: min(float(lin.errors("head", j, k, "rows").mean()) for j in range(k))
            for k in range(1, len(lin.months))}


@dataclass
class Result:
    prequential: dict[str, float]  # month -> production's MAE on the month's rows
    promotions: int
    production_of: dict[str, int]  # month -> head index serving during that month


def simulate(lin: Lineage, policy: Policy) -> Result:
    prod: int | None = None
    preq: dict[str, float] = {}
    serving: dict[str, int] = {}
    promotions = 0
    for k, m in enumerate(lin.months):
        if prod is not None:
            preq[m.name] = float(lin.errors("head", prod, k, "rows").mean())
            serving[m.name] = prod
        if policy(lin, k, prod):
            prod = k
            promotions += 1
    return Result(preq, promotions, serving)


def load(history: Path, rows: int, seed: int) -> list[Month]:
    pending = history / f"seed{seed}-{rows}"
    if not (pending / "noise_floor.csv").exists():
        _core.generate_history(pending, seed=seed, rows_per_month=rows)
    out = []
    for name in MONTHS:
        t = pq.read_table(pending / f"{name}.parquet")
        h = t.num_rows - int(t.num_rows * HOLDOUT_FRACTION)  # as lifecycle.train_challenger
        out.append(Month(name, t, t.slice(0, h), t.slice(h)))
    return out


def policies() -> dict[str, Policy]:
    return {
        "paired (default)": from_decide("paired"),
        "paired, margin 1%": from_decide("paired", 0.01),
        "margin 0": from_decide("margin", 0.0),
        "margin 1%": from_decide("margin", 0.01),
        "margin 5%": from_decide("margin", 0.05),
        "always promote": lambda lin, k, prod: True,
        "never (first model)": lambda lin, k, prod: prod is None,
        "oracle (next month)": oracle,
        "lagged paired": lagged(),
        "lagged margin 0": lagged("margin"),
        "lagged + holdout paired": lagged(also_holdout=True),
    }


Row = tuple[float, float, float, float]  # mean MAE, mean from 2010, worst MAE/floor, promotions


def backtest(history: Path, rows: int, seed: int, trace: bool, basis: str) -> dict[str, Row]:
    """Prints one history's table; returns policy -> (mean MAE, mean from 2010, worst/floor, promotions)."""
    lin = Lineage(load(history, rows, seed), _core.Model if basis == "v1" else ProtoV2)
    lin.build()
    with (history / f"seed{seed}-{rows}" / "noise_floor.csv").open() as f:
        floor = {r["month"]: float(r["noise_floor_mae"]) for r in csv.DictReader(f)}
    results = {name: simulate(lin, p) for name, p in policies().items()}
    out = {}
    for name, r in results.items():
        after = [v for m, v in r.prequential.items() if m >= "2010-01"]
        worst = max(v / floor[m] for m, v in r.prequential.items())
        out[name] = (float(np.mean(list(r.prequential.values()))), float(np.mean(after)), worst, float(r.promotions))
    bound = hindsight_bound(lin)
    out["best version in hindsight"] = (float(np.mean(list(bound.values()))),
                                        float(np.mean([v for m, v in bound.items() if m >= "2010-01"])), np.nan, -1.0)
    print(f"\n{rows:,} rows a month, seed {seed}, 78 months, features {basis}; production's prequential MAE ($)")
    print_table(out)
    if trace:
        names = list(results)
        print("\nmonth    floor " + " ".join(f"{n[:10]:>10}" for n in names))
        for m in MONTHS[1:]:
            print(f"{m}  {floor[m]:.3f} " + " ".join(f"{results[n].prequential[m]:>10.3f}" for n in names))
    return out


def print_table(rows: dict[str, Row]) -> None:
    print(f"{'policy':<26}{'all months':>11}{'from 2010':>11}{'worst/floor':>12}{'promotions':>11}")
    for name, (mae, after, worst, promotions) in rows.items():
        w = f"{worst:>12.2f}" if np.isfinite(worst) else f"{'–':>12}"
        n = f"{promotions:>11.1f}" if promotions >= 0 else f"{'–':>11}"
        print(f"{name:<26}{mae:>11.4f}{after:>11.4f}{w}{n}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows-per-month", type=int, nargs="+", default=[20_000])
    ap.add_argument("--seeds", type=int, nargs="+", default=[11])
    ap.add_argument("--history-dir", type=Path, default=Path("/tmp/taxifare-quality"))
    ap.add_argument("--basis", choices=("v1", "v2"), default="v1",
                    help="v1: the Rust kernel; v2: the numpy prototype of the recommended v2 basis")
    ap.add_argument("--trace", action="store_true", help="print the month-by-month production MAE of each policy")
    a = ap.parse_args()
    runs = [backtest(a.history_dir, rows, seed, a.trace, a.basis) for rows in a.rows_per_month for seed in a.seeds]
    if len(runs) > 1:
        print(f"\nmean over the {len(runs)} histories above (rows a month {a.rows_per_month}, seeds {a.seeds})")
        mean = lambda k, i: float(np.mean([r[k][i] for r in runs]))  # noqa: E731
        print_table({k: (mean(k, 0), mean(k, 1), mean(k, 2), mean(k, 3)) for k in runs[0]})


if __name__ == "__main__":
    main()
