"""Model quality on real rides, and the ablation of the feature-v2 candidate groups.

Real rides: the 5,000-row sample of Kaggle's train.csv, time split (train on rides before
2014, score 2014-2015), the kernel's cleaning for every model (the rows `features()` keeps).
Printed: MAE and RMSE of the exact models v1 and v2 (the kernel), the v2 basis of the numpy
prototype (`features_v2_proto.py`, same ridge, with the candidate groups the ablation adds), HistGradientBoosting on raw features and on the v2
features (trained from scratch), least squares on distance alone and the mean fare; then
MAE by segment (airport rides, rides over 20 km, night 20:00-06:00 New York time).

Ablation: each candidate group on top of v1 (and the cumulative v2 candidates), fitted by the
kernel's exact ridge on sufficient statistics, scored on the real time split and
prequentially on a generated history (trained on the months before m, scored on m) as a ratio
to the generator's noise floor: mean after the first year, worst, and 2012-09.

    OMP_NUM_THREADS=1 python benches/quality_real.py [--history-rows 20000] [--history-dir /tmp/taxifare-hist]
    OMP_NUM_THREADS=1 python benches/quality_real.py --history-rows 0   # real rows only (seconds)
    OMP_NUM_THREADS=1 python benches/quality_real.py --kfold            # the k-fold by time (~1 min)

`--kfold`: expanding-window folds by year (train on every year before Y, score year Y, for Y in
`--test-years`), so a change is judged on ~3,400 rows instead of ~1,070; the MAE of each model
with its standard error, and the paired difference to HistGradientBoosting on the raw columns
(default squared loss) and to v2, each with its paired standard error; the same table for the
single time split; the median corrections of `median_cells.py` (docs/quality.md).
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

import features_v2_proto as v2
import median_cells as mc
from common import months_from
from taxifare_flow import _core
from taxifare_flow.model import Model

if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingRegressor

HERE = Path(__file__).resolve().parent
SAMPLE = HERE / "data" / "kaggle_sample_5k.csv"
SPLIT_YEAR = 2014


@dataclass(frozen=True)
class Config:
    """One row of the ablation: v1 plus `groups`, label fitted as `target`, rows weighted
    by `weights` (a fixed function of the features, which keeps the statistics exact)."""

    label: str
    groups: tuple[str, ...]
    target: str = "fare"  # "fare" | "log" (fit log fare, predict exp) | "sqrt" (fit √fare, predict square)
    weights: str = "none"  # "none" | "inv_dist" (1 / (1 + d))
    drop_v1: tuple[int, ...] = ()  # v1 columns left out


TARGETS = ("fare", "log", "sqrt")


def labels(y: np.ndarray) -> np.ndarray:
    """The three labels share one XᵀX: only Xᵀy differs."""
    return np.column_stack([y, np.log(y), np.sqrt(y)])


def back(target: str, pred: np.ndarray) -> np.ndarray:
    # exp of a log-scale prediction is a conditional *median* under symmetric log-errors, which
    # is what MAE rewards; no smearing correction on purpose.
    if target == "log":
        return np.exp(pred)
    if target == "sqrt":
        return np.maximum(pred, 0.0) ** 2
    return pred


def row_weights(kind: str, r: v2.Rides) -> np.ndarray | None:
    return None if kind == "none" else 1.0 / (1.0 + r.dist)


def configs() -> list[Config]:
    singles = [Config(f"+ {g}", (g,)) for g in v2.GROUPS]
    out = [Config("v1", ()), *singles, Config("+ all groups", tuple(v2.GROUPS))]
    if v2.V2_GROUPS:
        cumulative = [Config(f"v2 [..{k + 1}]: + {g}", v2.V2_GROUPS[: k + 1],
                             drop_v1=v2.V2_DROP_V1 if g == "year_index" else ()) for k, g in enumerate(v2.V2_GROUPS)]
        out += cumulative
        rec, drop = v2.V2_GROUPS, v2.V2_DROP_V1
        out += [Config("v2 (recommended)", rec, drop_v1=drop),
                Config("v2 + dist_hinges (7 knots)", (*rec, "dist_hinges"), drop_v1=drop),
                Config("v2 + dist_hinges_sparse (4 knots)", (*rec, "dist_hinges_sparse"), drop_v1=drop),
                Config("v2 + airport_pairs", (*rec, "airport_pairs"), drop_v1=drop),
                Config("v2 + meter_ramp", (*rec, "meter_ramp"), drop_v1=drop),
                Config("v2 + cells", (*rec, "cells"), drop_v1=drop),
                # A transformed label needs a curved distance basis (fares are linear in d, their
                # log is not): the transforms are given the 7-knot hinges.
                Config("v2 + dist_hinges, log fare", (*rec, "dist_hinges"), "log", drop_v1=drop),
                Config("v2 + dist_hinges, sqrt fare", (*rec, "dist_hinges"), "sqrt", drop_v1=drop),
                Config("v2, weights 1/(1+d)", rec, weights="inv_dist", drop_v1=drop)]
    else:
        out += [Config("all, log fare", tuple(v2.GROUPS), "log"), Config("all, sqrt fare", tuple(v2.GROUPS), "sqrt"),
                Config("all, weights 1/(1+d)", tuple(v2.GROUPS), weights="inv_dist")]
    return out


class Columns:
    """Column indices of each group inside the full design (v1 + every group in GROUPS order)."""

    def __init__(self, r: v2.Rides) -> None:
        self.start: dict[str, range] = {}
        at = v2.N_V1
        for name, fn in v2.GROUPS.items():
            k = fn(r).x.shape[1]
            self.start[name] = range(at, at + k)
            at += k
        self.p = at

    def of(self, groups: Sequence[str], drop_v1: Sequence[int] = ()) -> np.ndarray:
        return np.array([*[j for j in range(v2.N_V1) if j not in drop_v1], *[j for g in groups for j in self.start[g]]])


def full_design(r: v2.Rides) -> np.ndarray:
    return v2.design(r, list(v2.GROUPS))[0]


# -- real rows ---------------------------------------------------------------------------


def read_sample(path: Path) -> pa.Table:
    schema = _core.ride_schema()
    opts = pacsv.ConvertOptions(column_types={f.name: f.type for f in schema})
    return pacsv.read_csv(path, convert_options=opts).select(schema.names).cast(schema)


def split(t: pa.Table) -> tuple[pa.Table, pa.Table]:
    year = pc.cast(pc.utf8_slice_codeunits(t.column("pickup_datetime"), 0, 4), pa.int32())
    return t.filter(pc.less(year, SPLIT_YEAR)), t.filter(pc.greater_equal(year, SPLIT_YEAR))


def metrics(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    e = pred - y
    return float(np.mean(np.abs(e))), float(np.sqrt(np.mean(e * e)))


def segments(r: v2.Rides) -> dict[str, np.ndarray]:
    airport = np.zeros(r.n, dtype=bool)
    for a in v2.AIRPORTS:
        airport |= v2.near(r.plat, r.plon, a) | v2.near(r.dlat, r.dlon, a)
    return {
        "all": np.ones(r.n, dtype=bool),
        "airport": airport,
        "> 20 km": r.dist > 20,
        "night": (r.hour >= 20) | (r.hour < 6),
    }


def hgb(x: np.ndarray, y: np.ndarray) -> HistGradientBoostingRegressor:
    from sklearn.ensemble import HistGradientBoostingRegressor

    # absolute_error: the metric is MAE, so the tree baseline is given the loss that suits it
    # (as in benches/quality.py).
    return HistGradientBoostingRegressor(loss="absolute_error", max_iter=200, random_state=0).fit(x, y)


def real_rows(sample: Path, v2_groups: Sequence[str]) -> tuple[v2.Rides, v2.Rides]:
    train_t, test_t = split(read_sample(sample))
    tr, te = v2.cleaned_rides(train_t), v2.cleaned_rides(test_t)
    print(f"real rows: {sample.name}, train < {SPLIT_YEAR}: {tr.n:,} clean rows, test {SPLIT_YEAR}-2015: {te.n:,} clean rows")

    kernel = Model(feature_version=1)
    kernel.partial_fit(train_t)
    p_kernel = kernel.predict(test_t)[v2.kept_mask(test_t)]
    # The numpy ridge must be the kernel's ridge: same v1 columns, same predictions.
    ridge = v2.ExactRidge(v2.N_V1)
    ridge.add(tr.x1, tr.y)
    a, b = ridge.solve()
    gap = float(np.max(np.abs(a + te.x1 @ b - p_kernel)))
    print(f"check: numpy ridge vs kernel on v1, max |prediction difference| = {gap:.2e} $")

    # The kernel's feature version 2 (src/kernel/features_v2.rs), beside the prototype's basis.
    kernel2 = Model(feature_version=2)
    kernel2.partial_fit(train_t)
    p_kernel2 = kernel2.predict(test_t)[v2.kept_mask(test_t)]

    x2_tr, _ = v2.design(tr, v2_groups, v2.V2_DROP_V1)
    x2_te, _ = v2.design(te, v2_groups, v2.V2_DROP_V1)
    r2 = v2.ExactRidge(x2_tr.shape[1])
    r2.add(x2_tr, tr.y)
    a2, b2 = r2.solve()
    rd = v2.ExactRidge(1)
    rd.add(tr.dist[:, None], tr.y)
    ad, bd = rd.solve(alpha=0.0)
    preds = {
        "exact v1 (kernel)": p_kernel,
        "exact v2 (kernel)": p_kernel2,
        f"exact v2 proto (p={x2_tr.shape[1]})": a2 + x2_te @ b2,
        "HistGB raw": hgb(v2.raw_features(tr), tr.y).predict(v2.raw_features(te)),
        "HistGB v2 features": hgb(x2_tr, tr.y).predict(x2_te),
        "distance-only LS": ad + te.dist * bd[0],
        "mean fare": np.full(te.n, tr.y.mean()),
    }
    seg = segments(te)
    print(f"\n{'model':<24}{'MAE':>8}{'RMSE':>8}" + "".join(f"{f'MAE {k} ({m.sum()})':>18}" for k, m in seg.items() if k != "all"))
    for name, p in preds.items():
        mae, rmse = metrics(p, te.y)
        cells = "".join(f"{metrics(p[m], te.y[m])[0]:>18.3f}" for k, m in seg.items() if k != "all")
        print(f"{name:<24}{mae:>8.3f}{rmse:>8.3f}{cells}")
    # 1,073 test rows: say whether the gap to the trees is more than noise.
    names = list(preds)
    for a_, b_ in ((names[1], "HistGB raw"), (names[1], names[0])):
        diff = np.abs(preds[a_] - te.y) - np.abs(preds[b_] - te.y)
        print(f"MAE {a_} - {b_}: {diff.mean():+.3f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.3f} (paired SE)")
    return tr, te


# -- the ablation ------------------------------------------------------------------------


@dataclass
class Scores:
    real: tuple[float, float] = (np.nan, np.nan)
    ratios: dict[str, float] = field(default_factory=dict)  # month -> MAE / noise floor
    gen_mae: dict[str, float] = field(default_factory=dict)
    gen_rmse: dict[str, float] = field(default_factory=dict)


def fit_predict(cfg: Config, cols: Columns, stats: dict[str, v2.ExactRidge], x: np.ndarray) -> np.ndarray:
    c = cols.of(cfg.groups, cfg.drop_v1)
    a, b = stats[cfg.weights].solve(c, target=TARGETS.index(cfg.target))
    return back(cfg.target, a + x[:, c] @ b)


def accumulate(stats: dict[str, v2.ExactRidge], r: v2.Rides, x: np.ndarray) -> None:
    for kind, s in stats.items():
        s.add(x, labels(r.y), row_weights(kind, r))


def ablation_real(cfgs: list[Config], tr: v2.Rides, te: v2.Rides) -> tuple[Columns, dict[str, Scores], dict[str, float]]:
    cols = Columns(tr)
    x_tr, x_te = full_design(tr), full_design(te)
    stats = {k: v2.ExactRidge(cols.p, len(TARGETS)) for k in {c.weights for c in cfgs}}
    accumulate(stats, tr, x_tr)
    scores = {c.label: Scores(real=metrics(fit_predict(c, cols, stats, x_te), te.y)) for c in cfgs}
    nnz = {c.label: v2.nonzeros_per_row(x_te[:, cols.of(c.groups, c.drop_v1)]) for c in cfgs}
    return cols, scores, nnz


def ablation_history(cfgs: list[Config], cols: Columns, scores: dict[str, Scores], rows: int, root: Path) -> dict[str, float]:
    pending = root / f"seed11-{rows}"
    months = months_from("2009-01", 78)
    if not (pending / "noise_floor.csv").exists():
        print(f"generating the history ({rows:,} rows a month) into {pending} ...", flush=True)
        _core.generate_history(pending, seed=11, rows_per_month=rows)
    with (pending / "noise_floor.csv").open() as f:
        floor = {r["month"]: float(r["noise_floor_mae"]) for r in csv.DictReader(f)}
    stats = {k: v2.ExactRidge(cols.p, len(TARGETS)) for k in {c.weights for c in cfgs}}
    nnz_sum: dict[str, float] = {c.label: 0.0 for c in cfgs}
    for k, m in enumerate(months):
        r = v2.cleaned_rides(pq.read_table(pending / f"{m}.parquet"))
        x = full_design(r)
        if k > 0:
            for c in cfgs:
                mae, rmse = metrics(fit_predict(c, cols, stats, x), r.y)
                s = scores[c.label]
                s.ratios[m], s.gen_mae[m], s.gen_rmse[m] = mae / floor[m], mae, rmse
        if m == "2012-06":
            nnz_sum = {c.label: v2.nonzeros_per_row(x[:, cols.of(c.groups, c.drop_v1)]) for c in cfgs}
        accumulate(stats, r, x)
        if k % 12 == 11:
            print(f"  ... {m}", flush=True)
    return nnz_sum


def print_ablation(cfgs: list[Config], cols: Columns, scores: dict[str, Scores], nnz: dict[str, float]) -> None:
    base = nnz["v1"]
    print(f"\n{'candidate (on top of v1)':<58}{'p+':>5}{'nnz':>6}{'cost':>6}{'real MAE':>9}{'RMSE':>7}"
          f"{'gen MAE':>8}{'RMSE':>7}{'x floor':>8}{'worst':>7}{'2012-09':>8}{'2009':>6}")
    for c in cfgs:
        s = scores[c.label]
        added = len(cols.of(c.groups, c.drop_v1)) - v2.N_V1
        after = [m for m in s.ratios if m >= "2010-01"]
        first = [s.ratios[m] for m in s.ratios if m < "2010-01"]
        gen = (f"{np.mean([s.gen_mae[m] for m in after]):>8.3f}{np.mean([s.gen_rmse[m] for m in after]):>7.3f}"
               f"{np.mean([s.ratios[m] for m in after]):>8.3f}{max(s.ratios[m] for m in after):>7.2f}{s.ratios['2012-09']:>8.3f}"
               f"{np.mean(first):>6.2f}"
               if after else f"{'–':>8}{'–':>7}{'–':>8}{'–':>7}{'–':>8}{'–':>6}")
        print(f"{c.label[:57]:<58}{added:>5}{nnz[c.label]:>6.1f}{(nnz[c.label] / base) ** 2:>6.2f}"
              f"{s.real[0]:>9.3f}{s.real[1]:>7.3f}{gen}")
    print("p+: net columns added to v1's 80 (a dropped v1 column counts -1); nnz: mean non-zeros per row (intercept included); cost: (nnz/nnz_v1)², "
          "the accumulation cost per row relative to v1; gen: prequential on the generated history, months "
          "2010-01..2015-06 (MAE, RMSE, mean and worst ratio to the noise floor), 2012-09, and the mean ratio over "
          "2009-02..2009-12 (the first year)")


# -- the k-fold by time ---------------------------------------------------------------------


def year_of(t: pa.Table) -> pa.Array:
    return pc.cast(pc.utf8_slice_codeunits(t.column("pickup_datetime"), 0, 4), pa.int32())


@dataclass(frozen=True)
class Fold:
    label: str
    train: pa.Table
    test: pa.Table


def folds(t: pa.Table, test_years: Sequence[int]) -> list[Fold]:
    """Expanding window by year: train on the years before Y, score Y."""
    year = year_of(t)
    return [Fold(str(y), t.filter(pc.less(year, y)), t.filter(pc.equal(year, y))) for y in test_years]


def hgb_squared(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The issue's reference: HistGradientBoostingRegressor, default (squared) loss."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(random_state=0).fit(x, y)  # type: ignore[no-any-return]


#: The linear base of the candidates: v2 without `airport_dm_x_hour_weekend`. Those 48 columns
#: are non-zero on a few airport rides each; on 3,020 rows (the 2013 fold) one of them is nearly
#: collinear with its `dm_x_hour_weekend` twin, gets a coefficient of 54,733 $/km, and one 2013
#: ride is predicted at $960,975 (no ridge alpha from 1e-3 to 1 prevents it: the penalty is on
#: standardised coefficients, and a rare column's standard deviation is tiny).
BASE_GROUPS = tuple(g for g in v2.V2_GROUPS if g != "airport_dm_x_hour_weekend")
BASE_LABEL = "v2 − airport_dm_x_hour_weekend (ridge)"

#: The median corrections measured on top of the base, chosen before scoring: distance bands,
#: then each key added to the best layout, the two statistics, shrinkage, detrending.
CORRECTIONS: tuple[mc.Correction, ...] = (
    mc.Correction(("dist",), "skew"),
    mc.Correction(("dist",), "bias"),
    mc.Correction(("fine",), "bias"),
    mc.Correction(("fine",), "bias", 20),
    mc.Correction(("fine", "tod"), "bias", 20),
    mc.Correction(("fine", "zone"), "bias", 20),
    mc.Correction(("fine", "zone"), "skew", 20),
    mc.Correction(("fine", "tod", "zone"), "bias", 20),
    mc.Correction(("fine", "tod", "zone"), "bias"),
    mc.Correction(("fine", "tod", "weekend", "zone"), "bias", 20),
    mc.Correction(("fine", "zone", "regime"), "bias", 20),
    mc.Correction(("fine", "zone"), "bias", 5),
    mc.Correction(("fine", "zone"), "bias", 50),
    mc.Correction(("fine", "zone"), "bias", 20, gamma=1.0),
    mc.Correction(("fine", "zone"), "bias", 20, gamma=2.0),
    mc.Correction(("fine", "pair"), "bias", 20),
    mc.Correction(("fine", "zone", "pickup"), "bias", 20),
    mc.Correction(("fine", "zone", "pickup"), "bias", 50),
)

#: The design docs/quality.md recommends (chosen by the k-fold; see there).
RECOMMENDED = mc.Correction(("fine", "zone"), "bias", 20)


def fold_errors(f: Fold) -> tuple[dict[str, np.ndarray], int]:
    """Absolute errors of every model on the fold's cleaned test rows."""
    tr, te = v2.cleaned_rides(f.train), v2.cleaned_rides(f.test)
    keep_te = v2.kept_mask(f.test)
    preds: dict[str, np.ndarray] = {}
    k1 = Model(feature_version=1)
    k1.partial_fit(f.train)
    preds["v1 (kernel)"] = k1.predict(f.test)[keep_te]
    k2 = Model(feature_version=2)
    k2.partial_fit(f.train)
    preds["v2 (kernel)"] = k2.predict(f.test)[keep_te]
    # Version 3, the default (v2's basis, absolute penalty λ, median correction per band × zone
    # cell): the port of v3_proto.py's "v2, λ + corr", equal to it to 1e-9 (tests/test_v3_proto.py).
    k3 = Model(feature_version=3)
    k3.partial_fit(f.train)
    preds[V3_LABEL] = k3.predict(f.test)[keep_te]
    p2_tr = k2.predict(f.train)[v2.kept_mask(f.train)]
    preds[f"v2 (kernel) + {RECOMMENDED.label}"] = RECOMMENDED.fit(tr, p2_tr)(te, preds["v2 (kernel)"])
    # Exact alternatives on the prototype's basis (one accumulation, several labels); the
    # prototype's ridge is the kernel's (checked by `real_rows`).
    cols = Columns(tr)
    x_tr, x_te = full_design(tr), full_design(te)
    st = v2.ExactRidge(cols.p, len(TARGETS))
    st.add(x_tr, labels(tr.y))
    hour = tuple("dm_x_hour" if g == "dm_x_hour_weekend" else g for g in BASE_GROUPS)
    for label, cfg in ((BASE_LABEL, Config("", BASE_GROUPS, drop_v1=v2.V2_DROP_V1)),
                       ("  the same, dm_x_hour for dm_x_hour_weekend", Config("", hour, drop_v1=v2.V2_DROP_V1)),
                       ("  the same + dist_hinges", Config("", (*BASE_GROUPS, "dist_hinges"), drop_v1=v2.V2_DROP_V1)),
                       ("  the same + dist_hinges, log fare", Config("", (*BASE_GROUPS, "dist_hinges"), "log", drop_v1=v2.V2_DROP_V1))):
        preds[label] = fit_predict(cfg, cols, {"none": st}, x_te)
    p_te = preds[BASE_LABEL]
    # In-sample predictions of the base; the port gets their cell means from `n_c a + Σx_c·b`.
    p_tr = fit_predict(Config("", BASE_GROUPS, drop_v1=v2.V2_DROP_V1), cols, {"none": st}, x_tr)
    exact, rel = mc.check_merge(tr, p_tr, RECOMMENDED.keys)
    if not exact or rel > 1e-12:
        raise AssertionError(f"merged monthly cell statistics differ from one pass (counts equal: {exact}, sums: {rel:.1e})")
    for c in CORRECTIONS:
        preds[f"base + {c.label}"] = c.fit(tr, p_tr)(te, p_te)
    preds["base + resid median: decile of prediction (2-pass)"] = mc.resid_decile(tr, p_tr)(te, p_te)
    preds["base + resid median: fine × zone (2-pass)"] = mc.resid_median(("fine", "zone"), tr, p_tr)(te, p_te)
    raw_tr, raw_te = v2.raw_features(tr), v2.raw_features(te)
    preds["HistGB raw, squared loss"] = hgb_squared(raw_tr, tr.y).predict(raw_te)
    preds["HistGB raw, absolute loss"] = hgb(raw_tr, tr.y).predict(raw_te)
    preds["mean fare"] = np.full(te.n, tr.y.mean())
    if any(len(p) != te.n for p in preds.values()):
        raise AssertionError("predictions do not line up with the cleaned test rows")
    return {k: np.abs(p - te.y) for k, p in preds.items()}, tr.n


REFERENCE = "HistGB raw, squared loss"
BASE = BASE_LABEL
V3_LABEL = "v3 (kernel, the default)"


def se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x)))


def print_kfold(title: str, per_fold: list[tuple[str, int, dict[str, np.ndarray]]]) -> None:
    """Pooled MAE ± SE over the folds' test rows, paired differences ± SE, and the MAE per fold.
    The SE treats test rows as independent; `fold SE` (sd of the per-fold differences / √k)
    is the check that ignores that assumption."""
    names = list(per_fold[0][2])
    pooled = {k: np.concatenate([e[k] for _, _, e in per_fold]) for k in names}
    n = len(pooled[REFERENCE])
    print(f"\n{title}: {len(per_fold)} fold(s), {n:,} test rows "
          + ", ".join(f"{lab} ({ntr:,} train / {len(e[REFERENCE]):,} test)" for lab, ntr, e in per_fold))
    k = len(per_fold)
    head = f"{'model':<62}{'MAE':>7}{'± SE':>7}{'RMSE':>7}{'− HGB':>8}{'± SE':>7}{'fold SE':>8}{'− base':>8}{'± SE':>7}"
    print(head + "".join(f"{lab:>7}" for lab, _, _ in per_fold))
    for name in sorted(names, key=lambda m: float(np.nan_to_num(pooled[m].mean(), nan=np.inf))):
        a = pooled[name]
        dh, dv = a - pooled[REFERENCE], a - pooled[BASE]
        fold_d = np.array([e[name].mean() - e[REFERENCE].mean() for _, _, e in per_fold])
        fse = f"{fold_d.std(ddof=1) / np.sqrt(k):>8.3f}" if k > 1 else f"{'–':>8}"
        print(f"{name[:61]:<62}{a.mean():>7.3f}{se(a):>7.3f}{np.sqrt(np.mean(a * a)):>7.3f}{dh.mean():>+8.3f}{se(dh):>7.3f}{fse}"
              f"{dv.mean():>+8.3f}{se(dv):>7.3f}" + "".join(f"{e[name].mean():>7.3f}" for _, _, e in per_fold))
    rec = f"base + {RECOMMENDED.label}"
    print(f"paired differences to the recommended design ({rec}):")
    for name in names:
        if name.startswith("base + ") and name != rec:
            d = pooled[name] - pooled[rec]
            print(f"  {name[:61]:<62}{d.mean():>+8.3f} ± {se(d):.3f}")


def kfold(sample: Path, test_years: Sequence[int]) -> None:
    t = read_sample(sample)
    per_fold = []
    for f in folds(t, test_years):
        errors, n_train = fold_errors(f)
        per_fold.append((f.label, n_train, errors))
        print(f"  fold {f.label} done", flush=True)
    print_kfold("k-fold by time (expanding window by year)", per_fold)
    train, test = split(t)
    errors, n_train = fold_errors(Fold(f"<{SPLIT_YEAR}", train, test))
    print_kfold(f"single time split (train < {SPLIT_YEAR}, score {SPLIT_YEAR}-2015)", [(f"{SPLIT_YEAR}+", n_train, errors)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample", type=Path, default=SAMPLE)
    ap.add_argument("--history-rows", type=int, default=20_000, help="rows a month of the generated history (0: skip it)")
    ap.add_argument("--history-dir", type=Path, default=Path("/tmp/taxifare-quality"), help="generated once, reused")
    ap.add_argument("--kfold", action="store_true", help="the k-fold by time and the median corrections, then stop")
    ap.add_argument("--test-years", type=int, nargs="+", default=[2011, 2012, 2013, 2014, 2015], help="k-fold test years")
    a = ap.parse_args()
    if a.kfold:
        kfold(a.sample, a.test_years)
        return
    groups = v2.V2_GROUPS or tuple(v2.GROUPS)
    tr, te = real_rows(a.sample, groups)
    cfgs = configs()
    cols, scores, nnz = ablation_real(cfgs, tr, te)
    if a.history_rows > 0:
        nnz = ablation_history(cfgs, cols, scores, a.history_rows, a.history_dir)
    print_ablation(cfgs, cols, scores, nnz)


if __name__ == "__main__":
    main()
