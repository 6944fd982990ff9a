"""Issue 25, continued: exact, mergeable candidates against HistGradientBoosting on real rides.

Every candidate is built only from statistics that add over rows (hence over months) and that
a GROUP BY can compute: `n`, `Σx`, `XᵀX`, `Xᵀy` of a linear basis (solved with a penalty added
to the diagonal: still one solve of the merged statistics), and the per-cell counts and $0.10
fare histograms of `median_cells.py`. The measure is `quality_real.py --kfold`'s: k-fold by
time (expanding window by year, test years 2011..2015, 3,365 rows) and the single split
(< 2014 / 2014-2015); per candidate the MAE ± SE, RMSE, the largest prediction, the paired
difference to HistGradientBoosting (raw columns, default squared loss) ± paired SE and fold SE,
and to the recommended candidate; then each component's gain, and a selection-honest check
(the candidate best on the folds before 2014, scored on the 2014 and 2015 folds).

The components:

- `λ`: an *absolute* ridge penalty, `XᵀX_c + diag(α·n·var_j + λ_j)` (`XᵀX_c` centred, α = 1e-3
  the kernel's standardised penalty, kept), λ_j = 100 on v1's 79 columns and 1000 on the v2
  groups' columns. The standardised penalty shrinks with a column's variance, so a slope seen
  on three rows is free (v2's $960,975 prediction); an absolute one does not, and on a one-hot
  column it is a pseudo-count (the cell's level is shrunk by n_c / (n_c + λ)). Its weight is
  λ / n: it fades as a lineage grows, where the k-fold's late folds want little shrinkage.
- `corr`: the median correction of docs/quality.md (15 distance bands × zone group, `bias`
  statistic, pseudo-count 20), on top of the ridge's prediction.
- `loc`: each end's cell on a fixed grid, one-hot, penalised by λ = 100 (Manhattan: the spine
  band in 1 km × 0.75 km cells along and across the island; elsewhere in the city box: 0.02°
  squares); `loc × dm`: the pickup cell's own per-km slope.
- variants of the correction (cells × pickup geohash, regime, time of day; histograms in
  meter-rate units) and of λ (no penalty on the columns of the 2012 rate change).

`--history-rows N`: the harm check on the generated history (prequential, over the noise
floor), the correction computed in the port's incremental form (`IncrementalCorrection`).
Nothing is chosen on it.

    OMP_NUM_THREADS=1 python benches/v3_proto.py                       # the real rows (~15 s of CPU)
    OMP_NUM_THREADS=1 python benches/v3_proto.py --history-rows 5000   # the harm check on the generated history
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

import features_v2_proto as v2
import median_cells as mc
import quality_real as qr

# -- location cells ---------------------------------------------------------------------------

SPINE_A, SPINE_B = (40.703, -74.014), (40.872, -73.918)  # geo.rs's Manhattan spine
COSLAT = np.cos(np.radians(40.79))
KM_PER_DEG = np.radians(v2.EARTH_KM)
ALONG_KM, ACROSS_KM = 1.0, 0.75
N_ALONG = 22  # the spine is 20.6 km long
N_ACROSS = 4  # the band is ±1.5 km
CITY = (40.50, 41.00, -74.30, -73.70)  # lat0, lat1, lon0, lon1
CITY_STEP = 0.02
N_CITY_LAT = int(round((CITY[1] - CITY[0]) / CITY_STEP))
N_CITY_LON = int(round((CITY[3] - CITY[2]) / CITY_STEP))
N_LOC = N_ALONG * N_ACROSS + N_CITY_LAT * N_CITY_LON + 1  # + 1: outside the city box


def loc_cell(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Manhattan cells (rotated with the island) first, then the city grid, then "outside"."""
    bx, by = (SPINE_B[1] - SPINE_A[1]) * COSLAT, SPINE_B[0] - SPINE_A[0]
    px, py = (lon - SPINE_A[1]) * COSLAT, lat - SPINE_A[0]
    blen = np.hypot(bx, by)
    along = (px * bx + py * by) / blen * KM_PER_DEG  # km from the spine's south end
    across = (px * by - py * bx) / blen * KM_PER_DEG  # signed km off the spine
    t = np.clip((px * bx + py * by) / (bx * bx + by * by), 0.0, 1.0)
    in_m = np.hypot(px - t * bx, py - t * by) * KM_PER_DEG < 1.5
    ia = np.clip(np.floor(along / ALONG_KM), 0, N_ALONG - 1).astype(int)
    ic = np.clip(np.floor((across + 1.5) / ACROSS_KM), 0, N_ACROSS - 1).astype(int)
    man = ia * N_ACROSS + ic
    gi = np.floor((lat - CITY[0]) / CITY_STEP).astype(int)
    gj = np.floor((lon - CITY[2]) / CITY_STEP).astype(int)
    inside = (gi >= 0) & (gi < N_CITY_LAT) & (gj >= 0) & (gj < N_CITY_LON)
    city = N_ALONG * N_ACROSS + np.where(inside, gi * N_CITY_LON + gj, 0)
    return np.where(in_m, man, np.where(inside, city, N_LOC - 1))


def one_hot(idx: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((len(idx), k))
    out[np.arange(len(idx)), idx] = 1.0
    return out


def manhattan_cell(lat: np.ndarray, lon: np.ndarray, along_km: float, across_km: float) -> tuple[np.ndarray, int]:
    """Manhattan-only cells (`along_km` × `across_km` along and across the spine band), and one
    cell for every point off the island: (cell, number of cells)."""
    bx, by = (SPINE_B[1] - SPINE_A[1]) * COSLAT, SPINE_B[0] - SPINE_A[0]
    px, py = (lon - SPINE_A[1]) * COSLAT, lat - SPINE_A[0]
    blen = np.hypot(bx, by)
    along = (px * bx + py * by) / blen * KM_PER_DEG
    across = (px * by - py * bx) / blen * KM_PER_DEG
    t = np.clip((px * bx + py * by) / (bx * bx + by * by), 0.0, 1.0)
    in_m = np.hypot(px - t * bx, py - t * by) * KM_PER_DEG < 1.5
    na, nc = int(np.ceil(21.0 / along_km)), int(np.ceil(3.0 / across_km))
    ia = np.clip(np.floor(along / along_km), 0, na - 1).astype(int)
    ic = np.clip(np.floor((across + 1.5) / across_km), 0, nc - 1).astype(int)
    return np.where(in_m, ia * nc + ic, na * nc), na * nc + 1


def locm_columns(r: v2.Rides, along_km: float, across_km: float) -> np.ndarray:
    pu, k = manhattan_cell(r.plat, r.plon, along_km, across_km)
    do, _ = manhattan_cell(r.dlat, r.dlon, along_km, across_km)
    return np.hstack([one_hot(pu, k), one_hot(do, k)])


def loc_columns(r: v2.Rides, slope: bool) -> np.ndarray:
    pu, do = loc_cell(r.plat, r.plon), loc_cell(r.dlat, r.dlon)
    cols = [one_hot(pu, N_LOC), one_hot(do, N_LOC)]
    if slope:
        cols.append(one_hot(pu, N_LOC) * v2.metered_distance(r)[:, None])
    return np.hstack(cols)


# -- the ridge with an absolute penalty -------------------------------------------------------


class Ridge:
    """`n`, `Σx`, `XᵀX`, `Xᵀy`, additive; solve = the kernel's standardised alpha plus an absolute
    penalty per column on the centred statistics (intercept free)."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.n = len(y)
        self.sx, self.sy = x.sum(axis=0), y.sum()
        self.xtx, self.xty = x.T @ x, x.T @ y

    def merge(self, o: Ridge) -> Ridge:
        m = object.__new__(Ridge)
        m.n, m.sx, m.sy, m.xtx, m.xty = self.n + o.n, self.sx + o.sx, self.sy + o.sy, self.xtx + o.xtx, self.xty + o.xty
        return m

    def solve(self, lam: np.ndarray, alpha: float = 1e-3) -> tuple[float, np.ndarray]:
        n = self.n
        mean, ybar = self.sx / n, self.sy / n
        c = self.xtx - n * np.outer(mean, mean)  # centred XᵀX
        cy = self.xty - n * mean * ybar
        var = np.diag(c) / n
        live = var > 1e-12 * (1 + mean**2)
        a = c[np.ix_(live, live)] + np.diag(alpha * n * var[live] + lam[live])
        beta = np.zeros(len(mean))
        beta[live] = np.linalg.solve(a, cy[live])
        return float(ybar - beta @ mean), beta


@dataclass(frozen=True)
class Candidate:
    """A linear basis, its absolute penalties (per block of columns), and the median correction."""

    label: str
    basis: str  # "v2" (the kernel's v2, p = 192) | "base" (v2 − airport_dm_x_hour_weekend) | "loc" | "locm"
    lam_v1: float = 0.0  # absolute penalty on v1's 79 columns
    lam_v2: float = 0.0  # on the v2 groups' columns
    lam_loc: float = 0.0  # on the location cells
    corr: mc.Correction | None = None
    rate: bool = False  # the correction on fares in units of the ride date's meter rate (`rate_factor`)
    exempt_post: bool = False  # no absolute penalty on the columns that carry the 2012 rate change


#: The columns that exist to carry the 2012-09-04 rate change: new, and rare for a month or two,
#: exactly when they must move (v1's, and v2's `jfk_peak_post`).
POST_COLUMNS = ("post_2012_09", "dist_x_post_2012_09", "jfk_manhattan_x_post", "ewr_x_post", "jfk_manhattan_x_peak_x_post")


def penalties(r: v2.Rides, c: Candidate, p0: int, p: int) -> np.ndarray:
    """λ per column of the candidate's design (v1's block, the v2 groups', the location cells)."""
    lam = np.concatenate([np.full(N1, c.lam_v1), np.full(p0 - N1, c.lam_v2), np.full(p - p0, c.lam_loc)])
    if c.exempt_post:
        from taxifare_flow import _core

        v1_names = [n for j, n in enumerate(_core.Model.feature_names(1)) if j not in v2.V2_DROP_V1]
        groups = qr.BASE_GROUPS if c.basis == "base" else v2.V2_GROUPS
        names = v1_names + v2.design(r, groups, v2.V2_DROP_V1)[1]
        lam[[names.index(n) for n in POST_COLUMNS if n in names]] = 0.0
    return lam


def rate_factor(r: v2.Rides) -> np.ndarray:
    """The meter rate of the ride's date relative to 2009's, `1 + 0.25 · meter_share` (v2's
    `rate_distance` scaling): a correction kept in these units carries over the 2012 change."""
    return 1.0 + 0.25 * v2.meter_share(r.ts)


def corrected(c: mc.Correction, rate: bool, tr: v2.Rides, p_tr: np.ndarray, te: v2.Rides, p_te: np.ndarray) -> np.ndarray:
    """`p_te` plus the correction learnt on the training rows; with `rate`, the histograms hold
    `y / ρ` and the cell sums `[1, x] / ρ` (still sums over rows), and the shift is `ρ · δ`."""
    if not rate:
        return c.fit(tr, p_tr)(te, p_te)
    rho_tr, rho_te = rate_factor(tr), rate_factor(te)
    f = c.fit(replace(tr, y=tr.y / rho_tr), p_tr / rho_tr)
    return p_te + rho_te * (f(te, p_te / rho_te) - p_te / rho_te)


def design(r: v2.Rides, basis: str) -> tuple[np.ndarray, int]:
    """The design and the number of columns before the location cells. `basis`: "v2" (the
    kernel's v2, p = 192), "base" (v2 − airport_dm_x_hour_weekend, p = 144), or "v2_loc",
    "v2_locm", "v2_loc_dm" (v2 + location cells)."""
    groups = qr.BASE_GROUPS if basis == "base" else v2.V2_GROUPS
    x, _ = v2.design(r, groups, v2.V2_DROP_V1)
    p0 = x.shape[1]
    if basis in ("base", "v2"):
        return x, p0
    if basis == "v2_locm":
        return np.hstack([x, locm_columns(r, 1.0, 0.75)]), p0
    return np.hstack([x, loc_columns(r, basis == "v2_loc_dm")]), p0


REC = qr.RECOMMENDED  # the correction of docs/quality.md: 15 bands × zone group, k = 20
N1 = v2.N_V1 - len(v2.V2_DROP_V1)
#: The recommended penalties: λ = 100 on v1's 79 columns, 1000 on the v2 groups' columns (on
#: the loc cells: 100), in a flat region of the k-fold (see the sensitivity rows).
L1, L2, LL = 100.0, 1000.0, 100.0

BEST = "v2, λ + corr (recommended)"
LAST = "base + corr (the last session's v3)"


def candidates() -> list[Candidate]:
    """Listed before the final run; the λ grid was explored in three rounds (docs/quality.md)."""
    return [
        Candidate("v2, α only (the kernel's v2)", "v2"),
        Candidate("v2 + corr", "v2", corr=REC),
        Candidate("v2, λ", "v2", L1, L2),
        Candidate(BEST, "v2", L1, L2, corr=REC),
        Candidate("base (v2 − airport group), α only", "base"),
        Candidate(LAST, "base", corr=REC),
        Candidate("base, λ", "base", L1, L2),
        Candidate("base, λ + corr", "base", L1, L2, corr=REC),
        Candidate("  v2, λ uniform 30 + corr", "v2", 30.0, 30.0, corr=REC),
        Candidate("  v2, λ uniform 100 + corr", "v2", 100.0, 100.0, corr=REC),
        Candidate("  v2, λ uniform 300 + corr", "v2", 300.0, 300.0, corr=REC),
        Candidate("  v2, λ v1=30 v2=1000 + corr", "v2", 30.0, 1000.0, corr=REC),
        Candidate("  v2, λ v1=100 v2=3000 + corr", "v2", 100.0, 3000.0, corr=REC),
        Candidate("  v2, λ v1=300 v2=3000 + corr", "v2", 300.0, 3000.0, corr=REC),
        Candidate("  v2, λ v1=100 v2=10000 + corr", "v2", 100.0, 10000.0, corr=REC),
        Candidate("v2 + loc (city grid), λ + corr", "v2_loc", L1, L2, LL, REC),
        Candidate("v2 + loc (Manhattan only), λ + corr", "v2_locm", L1, L2, LL, REC),
        Candidate("v2 + loc + loc × dm, λ + corr", "v2_loc_dm", L1, L2, LL, REC),
        Candidate("v2, λ + corr in rate units", "v2", L1, L2, corr=REC, rate=True),
        Candidate("v2, λ exempt post + corr", "v2", L1, L2, corr=REC, exempt_post=True),
        Candidate("v2, λ exempt post + corr × regime", "v2", L1, L2,
                  corr=mc.Correction(("fine", "zone", "regime"), "bias", 20), exempt_post=True),
        Candidate("v2, λ + corr × pickup cell, k=20", "v2", L1, L2, corr=mc.Correction(("fine", "zone", "pickup"), "bias", 20)),
        Candidate("v2, λ + corr × pickup cell, k=50", "v2", L1, L2, corr=mc.Correction(("fine", "zone", "pickup"), "bias", 50)),
        Candidate("v2, λ + corr × regime, k=20", "v2", L1, L2, corr=mc.Correction(("fine", "zone", "regime"), "bias", 20)),
        Candidate("v2, λ + corr × time of day, k=20", "v2", L1, L2, corr=mc.Correction(("fine", "zone", "tod"), "bias", 20)),
    ]


#: Component gains: (what, candidate, reference).
PAIRS = (
    ("λ on v2 (the $960,975 defect)", "v2, λ", "v2, α only (the kernel's v2)"),
    ("correction on v2 with λ", BEST, "v2, λ"),
    ("λ on v2 + corr", BEST, "v2 + corr"),
    ("airport_dm_x_hour_weekend (with λ + corr)", BEST, "base, λ + corr"),
    ("λ on the last v3 design", "base, λ + corr", LAST),
    ("recommended against the last v3 design", BEST, LAST),
    ("location cells, city grid", "v2 + loc (city grid), λ + corr", BEST),
    ("location cells, Manhattan only", "v2 + loc (Manhattan only), λ + corr", BEST),
    ("pickup cell × dm slopes on top of loc", "v2 + loc + loc × dm, λ + corr", "v2 + loc (city grid), λ + corr"),
    ("correction cells × pickup geohash (k=50)", "v2, λ + corr × pickup cell, k=50", BEST),
    ("correction cells × regime", "v2, λ + corr × regime, k=20", BEST),
    ("correction in rate units", "v2, λ + corr in rate units", BEST),
    ("λ exempting the post-change columns", "v2, λ exempt post + corr", BEST),
    ("… and the correction × regime", "v2, λ exempt post + corr × regime", BEST),
    ("correction cells × time of day", "v2, λ + corr × time of day, k=20", BEST),
)


def fold_errors(train: qr.pa.Table, test: qr.pa.Table, cands: list[Candidate]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Absolute errors per candidate on the cleaned test rows, and the largest prediction."""
    tr, te = v2.cleaned_rides(train), v2.cleaned_rides(test)
    out: dict[str, np.ndarray] = {}
    top: dict[str, float] = {}
    raw_tr, raw_te = v2.raw_features(tr), v2.raw_features(te)
    p_hgb = qr.hgb_squared(raw_tr, tr.y).predict(raw_te)
    out[qr.REFERENCE], top[qr.REFERENCE] = np.abs(p_hgb - te.y), float(p_hgb.max())
    p_abs = qr.hgb(raw_tr, tr.y).predict(raw_te)
    out["HistGB raw, absolute loss"], top["HistGB raw, absolute loss"] = np.abs(p_abs - te.y), float(p_abs.max())
    designs: dict[str, tuple[np.ndarray, np.ndarray, int, Ridge]] = {}
    for c in cands:
        if c.basis not in designs:
            xtr, p0 = design(tr, c.basis)
            xte, _ = design(te, c.basis)
            designs[c.basis] = (xtr, xte, p0, Ridge(xtr, tr.y))
        xtr, xte, p0, st = designs[c.basis]
        a, b = st.solve(penalties(tr, c, p0, xtr.shape[1]))
        p_tr, p_te = a + xtr @ b, a + xte @ b
        if c.corr is not None:
            p_te = corrected(c.corr, c.rate, tr, p_tr, te, p_te)
        out[c.label], top[c.label] = np.abs(p_te - te.y), float(p_te.max())
    return out, top


def check_merge(train: qr.pa.Table) -> tuple[float, bool]:
    """The recommended candidate from month-by-month statistics merged against one pass over
    every row: max |prediction difference| of the ridge ($), and whether the correction's counts
    and histograms are equal (`median_cells.check_merge`)."""
    tr = v2.cleaned_rides(train)
    x, p0 = design(tr, "v2")
    lam = np.concatenate([np.full(N1, L1), np.full(p0 - N1, L2)])
    whole = Ridge(x, tr.y)
    parts = [Ridge(x[tr.month_index == m], tr.y[tr.month_index == m]) for m in np.unique(tr.month_index)]
    merged = parts[0]
    for p in parts[1:]:
        merged = merged.merge(p)
    (a1, b1), (a2, b2) = whole.solve(lam), merged.solve(lam)
    exact, rel = mc.check_merge(tr, a1 + x @ b1, REC.keys)
    return float(np.max(np.abs((a1 + x @ b1) - (a2 + x @ b2)))), exact and rel < 1e-12


# -- the generated history: a check that the recommendation does no harm (not used to tune) ----


class IncrementalCorrection:
    """The correction in the port's form: per cell `n_c`, `Σ[1, x]_c` and the fare histogram,
    added month by month; δ from the current coefficients, no second pass over old rows. The
    parents of the shrinkage chain are sums of their children (the trailing keys summed)."""

    def __init__(self, p: int, rate: bool = False, corr: mc.Correction = REC, half_life: float = np.inf) -> None:
        self.rate, self.corr, self.half_life = rate, corr, half_life
        self.radices = [mc.KEYS[k][1] for k in corr.keys]
        self.size = int(np.prod(self.radices))
        self.n = np.zeros(self.size)
        self.sx = np.zeros((self.size, p + 1))
        self.hist = np.zeros((self.size, mc.N_BINS), dtype=np.int64 if np.isinf(half_life) else float)

    def age(self, months: float) -> None:
        """Forgetting: every weight times 2^(−months / half_life) (weights stay sums over rows)."""
        if not np.isinf(self.half_life):
            f = 2.0 ** (-months / self.half_life)
            self.n *= f
            self.sx *= f
            self.hist *= f

    def add(self, r: v2.Rides, x: np.ndarray) -> None:
        cell, _ = mc.cell_of(r, self.corr.keys)
        rho = rate_factor(r) if self.rate else np.ones(r.n)
        self.n += np.bincount(cell, minlength=self.size)
        np.add.at(self.sx, cell, np.hstack([np.ones((r.n, 1)), x]) / rho[:, None])
        np.add.at(self.hist, (cell, mc.fare_bin(r.y / rho)), 1)

    def delta(self, a: float, b: np.ndarray) -> np.ndarray:
        k = self.corr.shrink
        pred = self.sx @ np.concatenate([[a], b])  # Σ over the cell of a + x·b
        d = np.zeros(1)
        for level in range(1, len(self.radices) + 1):
            shape = (int(np.prod(self.radices[:level])), int(np.prod(self.radices[level:])))
            st = mc.CellStats(self.n.reshape(shape).sum(1), np.zeros(0), pred.reshape(shape).sum(1),
                              self.hist.reshape(*shape, mc.N_BINS).sum(1))
            parent = np.repeat(d, shape[0] // len(d)) if level > 1 else np.zeros(shape[0])
            d = (st.n * st.delta(self.corr.kind) + k * parent) / (st.n + k)
        return d


def history_check(rows: int, root: Path) -> None:
    """Prequential on the generated history (trained on the months before m, scored on m), as a
    ratio to the generator's noise floor: v2 as the kernel solves it, and the candidates."""
    import csv

    import pyarrow.parquet as pq
    from common import months_from
    from taxifare_flow import _core

    pending = root / f"seed11-{rows}"
    if not (pending / "noise_floor.csv").exists():
        _core.generate_history(pending, seed=11, rows_per_month=rows)
    with (pending / "noise_floor.csv").open() as f:
        floor = {r["month"]: float(r["noise_floor_mae"]) for r in csv.DictReader(f)}
    regime = mc.Correction(("fine", "zone", "regime"), "bias", 20)
    models = [  # (label, candidate, correction: None | (rate units, correction))
        ("v2, α only", Candidate("", "v2"), None),
        ("v2 + corr", Candidate("", "v2"), (False, REC)),
        ("v2, λ", Candidate("", "v2", L1, L2), None),
        (BEST, Candidate("", "v2", L1, L2), (False, REC)),
        ("v2, λ + corr in rate units", Candidate("", "v2", L1, L2), (True, REC)),
        ("v2, λ exempt post", Candidate("", "v2", L1, L2, exempt_post=True), None),
        ("v2, λ exempt post + corr", Candidate("", "v2", L1, L2, exempt_post=True), (False, REC)),
        ("v2, λ exempt post + corr × regime", Candidate("", "v2", L1, L2, exempt_post=True), (False, regime)),
        ("v2, λ + corr, half-life 6", Candidate("", "v2", L1, L2), (False, REC, 6.0)),
        ("v2, λ + corr, half-life 12", Candidate("", "v2", L1, L2), (False, REC, 12.0)),
    ]
    st: Ridge | None = None
    corrs: dict[tuple[object, ...], IncrementalCorrection] = {}
    lams: dict[str, np.ndarray] = {}
    ratios: dict[str, list[tuple[str, float]]] = {label: [] for label, _, _ in models}
    for m in months_from("2009-01", 78):
        r = v2.cleaned_rides(pq.read_table(pending / f"{m}.parquet"))
        x, p0 = design(r, "v2")
        if not lams:
            lams = {label: penalties(r, c, p0, p0) for label, c, _ in models}
        if st is not None:
            solved: dict[bytes, tuple[float, np.ndarray]] = {}
            for label, _, cr in models:
                key = lams[label].tobytes()
                if key not in solved:
                    solved[key] = st.solve(lams[label])
                a, b = solved[key]
                p = a + x @ b
                if cr is not None:
                    rho = rate_factor(r) if cr[0] else np.ones(r.n)
                    p = p + rho * corrs[cr].delta(a, b)[mc.cell_of(r, cr[1].keys)[0]]
                ratios[label].append((m, float(np.mean(np.abs(p - r.y))) / floor[m]))
        part = Ridge(x, r.y)
        st = part if st is None else st.merge(part)
        for _, _, cr in models:
            if cr is not None and cr not in corrs:
                corrs[cr] = IncrementalCorrection(p0, cr[0], cr[1], *cr[2:])
        for inc in corrs.values():
            inc.age(1.0)
            inc.add(r, x)
    print(f"\ngenerated history ({rows:,} rows a month, seed 11), prequential MAE / noise floor:")
    months = ("2012-08", "2012-09", "2012-10", "2012-11")
    print(f"{'model':<36}{'2009-02..12':>12}{'2010-01..':>11}{'worst':>8}" + "".join(f"{m:>9}" for m in months))
    for name, v in ratios.items():
        first = [q for m, q in v if m < "2010-01"]
        after = [q for m, q in v if m >= "2010-01"]
        at = dict(v)
        print(f"{name:<36}{np.mean(first):>12.3f}{np.mean(after):>11.3f}{max(after):>8.3f}" + "".join(f"{at[m]:>9.3f}" for m in months))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample", type=Path, default=qr.SAMPLE)
    ap.add_argument("--test-years", type=int, nargs="+", default=[2011, 2012, 2013, 2014, 2015])
    ap.add_argument("--history-rows", type=int, default=0, help="also the generated-history check (0: skip)")
    ap.add_argument("--history-dir", type=Path, default=Path("/tmp/taxifare-quality"), help="generated once, reused")
    a = ap.parse_args()
    if a.history_rows:
        history_check(a.history_rows, a.history_dir)
        return
    t = qr.read_sample(a.sample)
    cands = candidates()
    per_fold, tops = [], []
    for f in qr.folds(t, a.test_years):
        e, top = fold_errors(f.train, f.test, cands)
        per_fold.append((f.label, len(f.train), e))
        tops.append(top)
        print(f"  fold {f.label} done", flush=True)
    train, test = qr.split(t)
    gap, exact = check_merge(train)
    print(f"merge check (recommended, the months of < {qr.SPLIT_YEAR}): ridge max |Δ prediction| = {gap:.1e} $, "
          f"cell counts and histograms equal: {exact}")
    if gap > 1e-9 or not exact:
        raise AssertionError("merged monthly statistics differ from one pass")
    top = {k: max(tp[k] for tp in tops) for k in tops[0]}
    report("k-fold by time (expanding window by year)", per_fold, top)
    nested(per_fold, cands)
    e, top1 = fold_errors(train, test, cands)
    report(f"single split (< {qr.SPLIT_YEAR} / {qr.SPLIT_YEAR}-2015)", [("split", len(train), e)], top1)


def nested(per_fold: list[tuple[str, int, dict[str, np.ndarray]]], cands: list[Candidate]) -> None:
    """Selection-honest check: the candidate with the lowest MAE on the folds before 2014 is
    scored on the 2014 and 2015 folds it was not chosen on."""
    early = [e for lab, _, e in per_fold if int(lab) < qr.SPLIT_YEAR]
    late = [e for lab, _, e in per_fold if int(lab) >= qr.SPLIT_YEAR]
    if not early or not late:
        return
    names = [c.label for c in cands if c.corr is not None]
    mae = {k: np.concatenate([e[k] for e in early]).mean() for k in names}
    best = min(names, key=lambda k: mae[k])
    d = np.concatenate([e[best] for e in late]) - np.concatenate([e[qr.REFERENCE] for e in late])
    print(f"\nchosen on the folds < {qr.SPLIT_YEAR}: {best} (MAE {mae[best]:.3f} there); on the folds ≥ {qr.SPLIT_YEAR}: "
          f"− HGB {d.mean():+.3f} ± {qr.se(d):.3f} ({len(d):,} rows)")


def report(title: str, per_fold: list[tuple[str, int, dict[str, np.ndarray]]], top: dict[str, float]) -> None:
    """MAE ± SE, RMSE, the largest prediction, paired difference to the trees (± SE, fold SE)
    and to the recommended candidate, per fold; then the components' gains."""
    names = list(per_fold[0][2])
    pooled = {k: np.concatenate([e[k] for _, _, e in per_fold]) for k in names}
    ref, best = pooled[qr.REFERENCE], pooled[BEST]
    k = len(per_fold)
    print(f"\n{title}: {len(ref):,} test rows")
    print(f"{'model':<46}{'MAE':>9}{'± SE':>7}{'RMSE':>9}{'max ŷ':>9}{'− HGB':>8}{'± SE':>7}{'fold SE':>8}{'− rec':>8}{'± SE':>7}"
          + "".join(f"{lab:>7}" for lab, _, _ in per_fold))
    for name in names:
        x = pooled[name]
        dh, dv = x - ref, x - best
        fd = np.array([e[name].mean() - e[qr.REFERENCE].mean() for _, _, e in per_fold])
        fse = f"{fd.std(ddof=1) / np.sqrt(k):>8.3f}" if k > 1 else f"{'–':>8}"
        print(f"{name[:45]:<46}{x.mean():>9.3f}{qr.se(x):>7.3f}{np.sqrt(np.mean(x * x)):>9.3f}{top[name]:>9.0f}"
              f"{dh.mean():>+8.3f}{qr.se(dh):>7.3f}{fse}{dv.mean():>+8.3f}{qr.se(dv):>7.3f}"
              + "".join(f"{e[name].mean():>7.3f}" for _, _, e in per_fold))
    print("components (paired difference, MAE $):")
    for what, a, b in PAIRS:
        d = pooled[a] - pooled[b]
        print(f"  {what:<40}{d.mean():>+9.3f} ± {qr.se(d):.3f}")


if __name__ == "__main__":
    main()
