"""Median corrections from mergeable statistics, prototyped in numpy on top of the exact ridge.

MAE rewards the conditional median; the ridge predicts the conditional mean. Fares are skewed
to the right (traffic, waiting time), most of all on short rides, so the mean sits above the
median. The corrections below shift the ridge's prediction by a per-cell amount computed from
statistics that add exactly over rows, hence over months:

- per cell `c`: `n_c` (count), `Σy_c`, and `Σx_c` (the sum of the ridge's design rows in the
  cell, so that the mean in-sample prediction `a + x̄_c·b` needs no second pass);
- per cell and fare bin `k`: the count `h_{c,k}` of rows with `floor((z − LOW)·10 + 0.5) = k`
  (clipped to the end bins), i.e. a GROUP BY count, where `z = y − γ·d` is the fare detrended
  by a *fixed* slope γ (0: the fare itself), so that the rides of a distance band are comparable;
  `Σd_c` then gives the mean of `p − γ·d` in the cell.

`median_c` is the centre of the first bin where the cumulative count reaches `n_c / 2`.

Two corrections, both exact under merge (counts exactly, the sums to rounding):

- `skew`:  `δ_c = median_c − Σy_c / n_c` (median minus mean of the fares in the cell);
- `bias`:  `δ_c = median_c − (a + Σx_c·b / n_c)` (median minus the ridge's mean prediction in the
  cell, so the cell's lack of fit is corrected too).

Sparse cells are shrunk toward their parent cell with a pseudo-count `k`:
`δ̃_c = (n_c δ_c + k δ̃_parent) / (n_c + k)`; the chain is cell → ... → first key → 0.

Two references that are *not* mergeable (the residuals depend on the final coefficients: a
second pass over every training row after each fit) measure what the exact versions give up:
`resid`: median training residual per cell, and `resid_decile`: per decile of predicted fare
(the quick check in issue 25).

Not a script: imported by `quality_real.py --kfold`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import features_v2_proto as v2

BINS_PER_DOLLAR = 10  # $0.10 bins: fares are on a $0.10 grid (tolls aside)
BIN_WIDTH = 1 / BINS_PER_DOLLAR
LOW = -100.0  # the first bin's centre: detrended fares `y − γ·d` go below zero
N_BINS = 3001  # bin k is centred on LOW + k·BIN_WIDTH, i.e. -$100.00..$200.00, the end bins clipped

#: Distance bands (haversine km), left-closed: [0, 0.05) is the "same point" band.
DIST_EDGES_KM = (0.05, 1.0, 2.0, 3.0, 5.0, 8.0, 15.0)
#: Finer bands where most rides are (15 bands).
FINE_EDGES_KM = (0.05, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.5, 8.0, 10.0, 15.0, 25.0)


def dist_band(r: v2.Rides) -> np.ndarray:
    """0..7, `searchsorted(DIST_EDGES_KM, d, side="right")`."""
    return np.searchsorted(np.array(DIST_EDGES_KM), r.dist, side="right")


def fine_band(r: v2.Rides) -> np.ndarray:
    """0..14, `searchsorted(FINE_EDGES_KM, d, side="right")`."""
    return np.searchsorted(np.array(FINE_EDGES_KM), r.dist, side="right")


def time_of_day(r: v2.Rides) -> np.ndarray:
    """New York local hour: 0 night [20, 6), 1 morning [6, 10), 2 day [10, 16), 3 evening [16, 20)."""
    h = r.hour
    return np.where((h >= 20) | (h < 6), 0, np.where(h < 10, 1, np.where(h < 16, 2, 3)))


def weekend(r: v2.Rides) -> np.ndarray:
    return (r.weekday >= 5).astype(int)


def zone_group(r: v2.Rides) -> np.ndarray:
    """0 both ends in Manhattan, 1 an airport at either end, 2 otherwise (`zone_pair` folded)."""
    zp = v2.zone_pair(r)  # mm, ma, mo, aa, ao, oo
    return np.select([zp == 0, np.isin(zp, (1, 3, 4))], [0, 1], 2)


def zone_pair(r: v2.Rides) -> np.ndarray:
    """0..5, `features_v2_proto.zone_pair` (mm, ma, mo, aa, ao, oo)."""
    return v2.zone_pair(r)


def pickup_cell(r: v2.Rides) -> np.ndarray:
    """0..20: which of v1's 20 pickup geohash-5 cells (columns 23..42) holds the pickup, 20 for none."""
    oh = r.x1[:, 23:43]
    return np.where(oh.max(axis=1) > 0, oh.argmax(axis=1), 20)


def regime(r: v2.Rides) -> np.ndarray:
    """0 before the 2012-09-04 rate change, 1 from it."""
    return (r.ts >= v2.RATE_CHANGE).astype(int)


KEYS: dict[str, tuple[Callable[[v2.Rides], np.ndarray], int]] = {
    "dist": (dist_band, len(DIST_EDGES_KM) + 1),
    "fine": (fine_band, len(FINE_EDGES_KM) + 1),
    "tod": (time_of_day, 4),
    "weekend": (weekend, 2),
    "zone": (zone_group, 3),
    "pair": (zone_pair, 6),
    "pickup": (pickup_cell, 21),
    "regime": (regime, 2),
}


def cell_of(r: v2.Rides, keys: tuple[str, ...]) -> tuple[np.ndarray, int]:
    """Mixed-radix cell index over `keys` (first key most significant) and the number of cells."""
    idx = np.zeros(r.n, dtype=np.int64)
    size = 1
    for k in keys:
        fn, m = KEYS[k]
        idx = idx * m + fn(r)
        size *= m
    return idx, size


def fare_bin(z: np.ndarray) -> np.ndarray:
    """`floor((z − LOW)·10 + 0.5)`, clipped: half-up rounding, the same in Rust
    (`(x * 10.0 + 0.5).floor()`) and in SQL (`FLOOR(x * 10 + 0.5)`)."""
    return np.clip(np.floor((z - LOW) * BINS_PER_DOLLAR + 0.5).astype(np.int64), 0, N_BINS - 1)


@dataclass
class CellStats:
    """The mergeable statistics of one cell layout (counts are int64: merge is exact)."""

    n: np.ndarray  # (cells,)
    sum_y: np.ndarray  # (cells,)
    sum_pred: np.ndarray  # (cells,) Σ (a + x·b) over the cell's rows = n_c a + (Σx_c)·b
    hist: np.ndarray  # (cells, N_BINS)

    @classmethod
    def of(cls, cell: np.ndarray, size: int, y: np.ndarray, pred: np.ndarray) -> CellStats:
        hist = np.zeros((size, N_BINS), dtype=np.int64)
        np.add.at(hist, (cell, fare_bin(y)), 1)
        return cls(np.bincount(cell, minlength=size), np.bincount(cell, y, size), np.bincount(cell, pred, size), hist)

    def merge(self, o: CellStats) -> CellStats:
        return CellStats(self.n + o.n, self.sum_y + o.sum_y, self.sum_pred + o.sum_pred, self.hist + o.hist)

    def median(self) -> np.ndarray:
        """Lower median's bin centre per cell (NaN for an empty cell)."""
        cum = np.cumsum(self.hist, axis=1)
        k = np.argmax(2 * cum >= self.n[:, None], axis=1)
        return np.where(self.n > 0, LOW + k * BIN_WIDTH, np.nan)

    def delta(self, kind: str) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            ref = (self.sum_y if kind == "skew" else self.sum_pred) / self.n
        return np.where(self.n > 0, self.median() - ref, 0.0)


@dataclass(frozen=True)
class Correction:
    """One design: cell keys, statistic (`skew` | `bias`), shrinkage pseudo-count."""

    keys: tuple[str, ...]
    kind: str = "bias"
    shrink: float = 0.0
    gamma: float = 0.0  # $/km: the histograms hold `y − γ·d` (a fixed slope keeps them mergeable)

    @property
    def label(self) -> str:
        s = f", k={self.shrink:g}" if self.shrink else ""
        g = f", y−{self.gamma:g}·d" if self.gamma else ""
        return f"{self.kind}: {' × '.join(self.keys) or 'global'}{s}{g}"

    def fit(self, r: v2.Rides, pred_train: np.ndarray) -> Callable[[v2.Rides, np.ndarray], np.ndarray]:
        """Accumulate the statistics on the training rows (in one pass, like the ridge) and
        return `predict(rides, ridge_prediction)`. Parents: the same rows under a prefix of the
        keys (their histograms are sums of the children's, so no extra pass in the port)."""
        # (k1,), (k1,k2), ...: the first level shrinks toward no correction (a global median minus
        # a global mean says nothing about a cell's residuals).
        chain = [self.keys[:j] for j in range(1, len(self.keys) + 1)] if self.shrink else [self.keys]
        deltas: list[np.ndarray] = []
        trend = self.gamma * r.dist
        for ks in chain:
            cell, size = cell_of(r, ks)
            st = CellStats.of(cell, size, r.y - trend, pred_train - trend)
            d = st.delta(self.kind)
            parent = np.repeat(deltas[-1], size // len(deltas[-1])) if deltas else np.zeros(size)  # parent = idx // radix
            if self.shrink:
                d = (st.n * d + self.shrink * parent) / (st.n + self.shrink)
            deltas.append(d)
        final = deltas[-1]

        def predict(rt: v2.Rides, p: np.ndarray) -> np.ndarray:
            return p + final[cell_of(rt, self.keys)[0]]

        return predict


def resid_median(keys: tuple[str, ...], r: v2.Rides, pred_train: np.ndarray) -> Callable[[v2.Rides, np.ndarray], np.ndarray]:
    """Not mergeable: median in-sample residual per cell (exact median, no bins)."""
    cell, size = cell_of(r, keys)
    e = r.y - pred_train
    d = np.array([np.median(e[cell == c]) if np.any(cell == c) else 0.0 for c in range(size)])
    return lambda rt, p: p + d[cell_of(rt, keys)[0]]


def resid_decile(r: v2.Rides, pred_train: np.ndarray) -> Callable[[v2.Rides, np.ndarray], np.ndarray]:
    """Not mergeable: median in-sample residual per decile of predicted fare (issue 25's check)."""
    edges = np.quantile(pred_train, np.linspace(0.1, 0.9, 9))
    dec = np.searchsorted(edges, pred_train, side="right")
    e = r.y - pred_train
    d = np.array([np.median(e[dec == k]) for k in range(10)])
    return lambda rt, p: p + d[np.searchsorted(edges, p, side="right")]


def check_merge(r: v2.Rides, pred: np.ndarray, keys: tuple[str, ...]) -> tuple[bool, float]:
    """Statistics accumulated month by month and merged equal those of all rows at once: the
    counts exactly (returned flag), the sums to rounding (returned max relative difference)."""
    cell, size = cell_of(r, keys)
    whole = CellStats.of(cell, size, r.y, pred)
    parts = [CellStats.of(cell[r.month_index == m], size, r.y[r.month_index == m], pred[r.month_index == m])
             for m in np.unique(r.month_index)]
    merged = parts[0]
    for p in parts[1:]:
        merged = merged.merge(p)
    exact = bool(np.array_equal(merged.n, whole.n) and np.array_equal(merged.hist, whole.hist))
    scale = np.maximum(np.abs(whole.sum_y), 1.0)
    rel = float(max(np.max(np.abs(merged.sum_y - whole.sum_y) / scale),
                    np.max(np.abs(merged.sum_pred - whole.sum_pred) / np.maximum(np.abs(whole.sum_pred), 1.0))))
    return exact, rel
