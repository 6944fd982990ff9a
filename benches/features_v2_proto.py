"""Feature set version 2, prototyped in numpy: the candidate groups added ON TOP of the v1
matrix of the Rust kernel, and the kernel's exact ridge replicated on sufficient statistics.

This module is the specification to port to `src/kernel/features.rs`: each group is one
function `group_*(r: Rides) -> Group` whose docstring gives its columns, formulas and order.
Distances are haversine km (`geo::haversine_km`), times New York local (`NyClock::local`),
airports and Manhattan as in `geo.rs` (`near`: < 2 km, `in_manhattan`: the 1.5 km spine band).

Not a script: imported by `quality_real.py` (ablation, real rows) and `policy_backtest.py`
(`--basis v2`), and usable from a REPL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from taxifare_flow import _core

# -- constants mirrored from the Rust core (src/geo.rs, src/fare_rules.rs) ---------------

EARTH_KM = 6371.0088
JFK, LGA, EWR = (40.6413, -73.7781), (40.7769, -73.8740), (40.6895, -74.1745)
AIRPORTS = (JFK, LGA, EWR)
AIRPORT_RADIUS_KM = 2.0
#: 2012-09-04 00:00 New York time (`fare_rules::RATE_CHANGE`) and the month the meters took
#: to be re-calibrated (`RATE_CHANGE_DONE`).
RATE_CHANGE = 1_346_731_200
RATE_CHANGE_DONE = RATE_CHANGE + 30 * 86_400
#: Tunnel toll changes (`fare_rules::tunnel_toll`): 2010-12-30 05:00 UTC and 2015-03-22 04:00 UTC.
TOLL_CHANGES = (1_293_685_200, 1_426_996_800)
N_V1 = 80
V1_DIST = 21  # column of haversine_km in v1


# -- the cleaned rides -------------------------------------------------------------------


@dataclass(frozen=True)
class Rides:
    """The rows of a table that pass the kernel's training cleaning, in order, with the raw
    fields the v2 groups need and the kernel's v1 matrix for the same rows."""

    x1: np.ndarray  # (n, 80) v1 features from `_core.compute_features`
    y: np.ndarray  # fare
    ts: np.ndarray  # Unix seconds UTC
    plat: np.ndarray
    plon: np.ndarray
    dlat: np.ndarray
    dlon: np.ndarray
    hour: np.ndarray  # local hour of day, 0..23 (integer part of `second_of_day / 3600`)
    weekday: np.ndarray  # local weekday, 0 = Monday
    month_index: np.ndarray  # months since 2009-01 of the UTC date (`calendar::month_index_of`)

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def dist(self) -> np.ndarray:
        return self.x1[:, V1_DIST]


def kept_mask(table: pa.Table) -> np.ndarray:
    """Which rows the kernel's *training* cleaning keeps. `Model.predict` gives NaN for the rows
    prediction cleaning rejects; training also drops fares outside (0, 400) and repeated keys
    (the first one is kept), which prediction cannot check. `cleaned_rides` asserts that the
    result matches `compute_features` row for row."""
    probe = _core.Model(feature_version=1)
    # Any fitted model will do: only the NaN pattern of its predictions is used.
    probe.partial_fit_features(np.eye(N_V1)[:2], np.array([1.0, 2.0]))
    ok = ~np.isnan(probe.predict(table))
    fare = table.column("fare_amount").to_numpy(zero_copy_only=False).astype(float)
    ok &= (fare > 0) & (fare < 400)
    seen: set[str] = set()
    keys = [str(k) for k in table.column("key").to_pylist()]
    for i in np.flatnonzero(ok):
        if keys[i] in seen:
            ok[i] = False
        else:
            seen.add(keys[i])
    return ok


def cleaned_rides(table: pa.Table) -> Rides:
    """The cleaned rows of `table` with the v1 matrix; checked against the kernel."""
    x1, y, _ = _core.compute_features(table, 1)
    ok = kept_mask(table)
    col = lambda name: table.column(name).to_numpy(zero_copy_only=False)[ok].astype(float)  # noqa: E731
    when = pd.to_datetime(pc.take(table.column("pickup_datetime"), pa.array(np.flatnonzero(ok))).to_pandas(),
                          format="%Y-%m-%d %H:%M:%S UTC", utc=True)
    local = when.dt.tz_convert("America/New_York")
    # Whole seconds whatever resolution pandas chose for the parsed column.
    ts = ((when - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy()
    r = Rides(
        x1=x1, y=y, ts=ts,
        plat=col("pickup_latitude"), plon=col("pickup_longitude"),
        dlat=col("dropoff_latitude"), dlon=col("dropoff_longitude"),
        hour=local.dt.hour.to_numpy(), weekday=local.dt.weekday.to_numpy(),
        month_index=((when.dt.year - 2009) * 12 + when.dt.month - 1).to_numpy(),
    )
    if ok.sum() != len(y) or not np.allclose(r.dist, haversine_km(r.plat, r.plon, r.dlat, r.dlon), atol=1e-9):
        raise AssertionError("the Python cleaning mask does not match the kernel's cleaned rows")
    if not np.array_equal(r.ts >= RATE_CHANGE, r.x1[:, 71] == 1) or not np.allclose(r.x1[:, 20], r.month_index / 72):
        raise AssertionError("timestamps differ from the kernel's (post_2012_09 or year column)")
    if not np.allclose(table.column("fare_amount").to_numpy(zero_copy_only=False)[ok], y):
        raise AssertionError("labels of the Python mask differ from the kernel's")
    return r


# -- geometry (mirrors src/geo.rs) ---------------------------------------------------------


def haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    la1, la2 = np.radians(lat1), np.radians(lat2)
    h = np.sin((la2 - la1) / 2) ** 2 + np.cos(la1) * np.cos(la2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_KM * np.arcsin(np.sqrt(h))


def near(lat: np.ndarray, lon: np.ndarray, airport: tuple[float, float]) -> np.ndarray:
    return haversine_km(lat, lon, np.full_like(lat, airport[0]), np.full_like(lon, airport[1])) < AIRPORT_RADIUS_KM


def in_manhattan(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    a, b = (40.703, -74.014), (40.872, -73.918)
    coslat = np.cos(np.radians(40.79))
    bx, by = (b[1] - a[1]) * coslat, b[0] - a[0]
    px, py = (lon - a[1]) * coslat, lat - a[0]
    t = np.clip((px * bx + py * by) / (bx * bx + by * by), 0.0, 1.0)
    return np.hypot(px - t * bx, py - t * by) * np.radians(EARTH_KM) < 1.5


def meter_share(ts: np.ndarray) -> np.ndarray:
    """Share of meters charging the 2012 rate (`fare_rules::new_meter_share`): 0 before
    2012-09-04, rising linearly to 1 on 2012-10-04."""
    return np.clip((ts - RATE_CHANGE) / (RATE_CHANGE_DONE - RATE_CHANGE), 0.0, 1.0)


def rate_distance(r: Rides) -> np.ndarray:
    """Haversine km times the meter rate relative to 2009's: `d · (1 + 0.25 · meter_share)`
    ($0.40 → $0.50 a unit). Every per-km slope of the fare scales with the rate, so slopes
    learnt on this distance carry over the rate change (and its one-month ramp) at once."""
    return r.dist * (1.0 + 0.25 * meter_share(r.ts))


# -- the candidate groups -----------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """Columns a candidate group adds after the 80 v1 columns."""

    name: str
    names: list[str]
    x: np.ndarray  # (n, len(names))


HINGE_KNOTS_KM = (1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0)
#: Fewer knots, none under 2 km where most rides are: fewer non-zeros per row.
SPARSE_KNOTS_KM = (2.0, 5.0, 10.0, 20.0)


def group_dist_hinges(r: Rides) -> Group:
    """Piecewise-linear distance: `hinge_k = max(0, d − k)` for k in HINGE_KNOTS_KM (7 columns;
    a ride of d km has as many non-zeros as knots below d)."""
    x = np.maximum(0.0, r.dist[:, None] - np.array(HINGE_KNOTS_KM)[None, :])
    return Group("dist_hinges", [f"hinge_{k:g}km" for k in HINGE_KNOTS_KM], x)


def group_dist_hinges_sparse(r: Rides) -> Group:
    """`max(0, d − k)` for k in SPARSE_KNOTS_KM (4 columns)."""
    x = np.maximum(0.0, r.dist[:, None] - np.array(SPARSE_KNOTS_KM)[None, :])
    return Group("dist_hinges_sparse", [f"hinge_{k:g}km" for k in SPARSE_KNOTS_KM], x)


def group_zero_dist(r: Rides) -> Group:
    """`[d < 0.05 km]` (1 column): pickup and dropoff at the same point. In the real data
    these are round trips or a dropoff typed as the pickup, with any fare (median $6.70,
    90th percentile $37 in the sample's training years): without their own level they pull
    the intercept and the slopes of every short ride."""
    return Group("zero_dist", ["zero_dist"], (r.dist < 0.05).astype(float)[:, None])


def group_dist_hinges_post(r: Rides) -> Group:
    """The hinges times `post_2012_09` (ts ≥ RATE_CHANGE): the curve may change at the rate
    change (7 columns)."""
    g = group_dist_hinges(r)
    post = (r.ts >= RATE_CHANGE).astype(float)
    return Group("dist_hinges_post", [f"{n}_x_post" for n in g.names], g.x * post[:, None])


def _one_hot(idx: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((len(idx), k))
    out[np.arange(len(idx)), idx] = 1.0
    return out


def metered_distance(r: Rides) -> np.ndarray:
    """`rate_distance · (1 − jfk_manhattan)`: the distance the meter charges. The JFK–Manhattan
    flat fare has no per-km part, so no per-hour slope may touch it: without this, the flat
    rides (long, 3 % of rides) pull every hourly slope and v1's `jfk_manhattan_x_dist` can only
    cancel their average (measured: the basis then cannot even fit the noise-free fare)."""
    return rate_distance(r) * (1.0 - r.x1[:, 74])


def _cells(r: Rides) -> np.ndarray:
    """Hour-of-day × weekend cell: `24 · [weekday ≥ 5] + hour`, 0..47."""
    return 24 * (r.weekday >= 5).astype(int) + r.hour


CELL_NAMES = [f"{w}_h{h:02d}" for w in ("wd", "we") for h in range(24)]


def group_dist_x_hour(r: Rides) -> Group:
    """Per-hour-of-day slope on the plain distance: `d · [hour == h]`, h = 0..23 (24 columns,
    1 non-zero). Kept as the naive version of `group_dm_x_hour`."""
    return Group("dist_x_hour", [f"dist_x_h{h:02d}" for h in range(24)], r.dist[:, None] * _one_hot(r.hour, 24))


def group_dm_x_hour(r: Rides) -> Group:
    """Per-hour-of-day slope: `dm · [hour == h]`, dm = `metered_distance`, h = 0..23 (24
    columns, 1 non-zero)."""
    return Group("dm_x_hour", [f"dm_x_h{h:02d}" for h in range(24)], metered_distance(r)[:, None] * _one_hot(r.hour, 24))


def group_dist_x_weekend(r: Rides) -> Group:
    """`d · [weekday ≥ 5]` (1 column)."""
    return Group("dist_x_weekend", ["dist_x_weekend"], (r.dist * (r.weekday >= 5))[:, None])


def group_dist_x_hour_weekend(r: Rides) -> Group:
    """Naive per-cell slope on the plain distance: `d · [cell == c]` (48 columns, 1 non-zero);
    see `group_dm_x_hour_weekend`."""
    return Group("dist_x_hour_weekend", [f"dist_x_{c}" for c in CELL_NAMES], r.dist[:, None] * _one_hot(_cells(r), 48))


def group_dm_x_hour_weekend(r: Rides) -> Group:
    """Per-cell slope: `dm · [cell == c]`, cell = 24·[weekday ≥ 5] + hour (weekday cells
    0..23, weekend cells 24..47), dm = `metered_distance` (48 columns, 1 non-zero). Traffic
    speed follows the local hour and the day type, and the meter charges time units below
    ~12 mph: the per-km cost is a per-cell constant."""
    return Group("dm_x_hour_weekend", [f"dm_x_{c}" for c in CELL_NAMES], metered_distance(r)[:, None] * _one_hot(_cells(r), 48))


def group_dm_x_hour_of_week(r: Rides) -> Group:
    """`dm · [hour_of_week == k]`, k = 24·weekday + hour (168 columns, 1 non-zero)."""
    cell = 24 * r.weekday + r.hour
    return Group("dm_x_hour_of_week", [f"dm_x_how{k:03d}" for k in range(168)], metered_distance(r)[:, None] * _one_hot(cell, 168))


def group_cells(r: Rides) -> Group:
    """Per-cell intercept: `[cell == c]` for c = 1..47 (cell 0, weekday midnight, is the
    reference; 47 columns, ≤ 1 non-zero)."""
    return Group("cells", [f"cell_{c}" for c in CELL_NAMES[1:]], _one_hot(_cells(r), 48)[:, 1:])


def group_meter_ramp(r: Rides) -> Group:
    """The re-calibration month: `meter_share` and `d · meter_share` (2 columns). v1's
    `post_2012_09` is a step on 2012-09-04; the meters actually changed over a month."""
    s = meter_share(r.ts)
    return Group("meter_ramp", ["meter_share", "dist_x_meter_share"], np.column_stack([s, r.dist * s]))


def zone(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """0 Manhattan (spine band), 1 airport (JFK/LGA/EWR within 2 km), 2 elsewhere."""
    airport = near(lat, lon, JFK) | near(lat, lon, LGA) | near(lat, lon, EWR)
    return np.where(airport, 1, np.where(in_manhattan(lat, lon), 0, 2))


ZONE_PAIRS = ("mm", "ma", "mo", "aa", "ao", "oo")


def zone_pair(r: Rides) -> np.ndarray:
    """Unordered pair of zones, index into ZONE_PAIRS."""
    a, b = zone(r.plat, r.plon), zone(r.dlat, r.dlon)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    table = {(0, 0): 0, (0, 1): 1, (0, 2): 2, (1, 1): 3, (1, 2): 4, (2, 2): 5}
    out = np.zeros(r.n, dtype=int)
    for (i, j), k in table.items():
        out[(lo == i) & (hi == j)] = k
    return out


def group_zone_pair_dist(r: Rides) -> Group:
    """Zone pair × distance: `[pair == z]` and `dm · [pair == z]` (dm: `metered_distance`) for the pairs but "mm"
    (the reference), in ZONE_PAIRS order (10 columns, ≤ 2 non-zeros). Highways to the
    airports and the outer boroughs are faster than Manhattan streets (fewer time units)."""
    oh = _one_hot(zone_pair(r), len(ZONE_PAIRS))[:, 1:]
    d = metered_distance(r)
    names = [f"pair_{z}" for z in ZONE_PAIRS[1:]] + [f"dm_x_pair_{z}" for z in ZONE_PAIRS[1:]]
    return Group("zone_pair_dist", names, np.hstack([oh, d[:, None] * oh]))


def group_airport_pairs(r: Rides) -> Group:
    """Airport × other end: for each airport a (JFK, LGA, EWR) and other end in (Manhattan,
    elsewhere): `[ride touches a and the other end is there]` (6 columns, ≤ 1 non-zero
    practically). The flat and surcharged fares depend on both ends."""
    cols, names = [], []
    for aname, a in zip(("jfk", "lga", "ewr"), AIRPORTS):
        np_, nd = near(r.plat, r.plon, a), near(r.dlat, r.dlon, a)
        other_m = np.where(np_, in_manhattan(r.dlat, r.dlon), in_manhattan(r.plat, r.plon))
        touches = np_ | nd
        cols += [touches & other_m, touches & ~other_m]
        names += [f"{aname}_manhattan_pair", f"{aname}_elsewhere_pair"]
    return Group("airport_pairs", names, np.column_stack(cols).astype(float))


def tunnel_toll(ts: np.ndarray) -> np.ndarray:
    """The tunnel toll of the date (`fare_rules::tunnel_toll`): $5.00, $5.33, $5.54."""
    return np.where(ts < TOLL_CHANGES[0], 5.00, np.where(ts < TOLL_CHANGES[1], 5.33, 5.54))


def group_river_crossing(r: Rides) -> Group:
    """Bridges and tunnels: `cross = in_manhattan(p) xor in_manhattan(d)` (the ride leaves or
    enters Manhattan: East River or Hudson), and `cross · tunnel_toll(ts)` (2 columns)."""
    cross = (in_manhattan(r.plat, r.plon) != in_manhattan(r.dlat, r.dlon)).astype(float)
    return Group("river_crossing", ["river_cross", "river_cross_x_toll"], np.column_stack([cross, cross * tunnel_toll(r.ts)]))


def group_jfk_peak_post(r: Rides) -> Group:
    """`jfk_manhattan · peak · post_2012_09` (1 column): the $4.50 weekday-peak surcharge on
    the JFK flat fare from 2012-09-04. v1 columns 74 (jfk_manhattan), 70 (peak), 71 (post)."""
    return Group("jfk_peak_post", ["jfk_manhattan_x_peak_x_post"], (r.x1[:, 74] * r.x1[:, 70] * r.x1[:, 71])[:, None])


def airport_metered(r: Rides) -> np.ndarray:
    """Either end within 2 km of JFK, LGA or EWR, and not the JFK–Manhattan flat fare."""
    airport = np.zeros(r.n, dtype=bool)
    for a in AIRPORTS:
        airport |= near(r.plat, r.plon, a) | near(r.dlat, r.dlon, a)
    return airport & (r.x1[:, 74] == 0)


def group_year_index(r: Rides) -> Group:
    """`year_index = UTC year − 2009` (whole years, 1 column), to REPLACE v1's `year`
    (column 20, month_index / 72). Within 2009 v1's `year` is an exact linear combination of
    the intercept and the month one-hots, so the ridge splits each month's level between the
    two and a model of a few months extrapolates the split to the next month: prequential MAE
    1.71 instead of 1.37 in 2009-03 (10,000 rows a month). A whole-year index is constant in
    2009 (no coefficient until 2010) and never collinear with the month one-hots."""
    return Group("year_index", ["year_index"], (r.month_index // 12).astype(float)[:, None])


def group_tariff(r: Rides) -> Group:
    """The flat amounts of the rate card of the ride's date, so that what was learnt before
    2012-09-04 carries over the change the day it happens (as `metered_distance` does for
    the per-km rate; a 0/1 `post` column has no coefficient until post-change rows arrive):
    `jfk_flat_fare = jfk_manhattan · (45 before RATE_CHANGE, 52 + 4.5 · peak from it)` and
    `ewr_surcharge = ewr · (15 before, 17.5 from)`, ewr = either end within 2 km of EWR
    (2 columns)."""
    post = r.ts >= RATE_CHANGE
    jfk = r.x1[:, 74] * np.where(post, 52.0 + 4.5 * r.x1[:, 70], 45.0)
    ewr = (near(r.plat, r.plon, EWR) | near(r.dlat, r.dlon, EWR)) * np.where(post, 17.5, 15.0)
    return Group("tariff", ["jfk_flat_fare", "ewr_surcharge"], np.column_stack([jfk, ewr]))


def group_airport_dm_x_hour(r: Rides) -> Group:
    """Airport rides' own hourly slope: `airport_metered · dm · [hour == h]` (24 columns,
    non-zero on airport rides only). Highways to the airports are faster at every hour."""
    x = (metered_distance(r) * airport_metered(r))[:, None] * _one_hot(r.hour, 24)
    return Group("airport_dm_x_hour", [f"airport_dm_x_h{h:02d}" for h in range(24)], x)


def group_airport_dm_x_hour_weekend(r: Rides) -> Group:
    """`airport_metered · dm · [cell == c]`, cells as in `group_dm_x_hour_weekend` (48 columns,
    1 non-zero on airport rides only)."""
    x = (metered_distance(r) * airport_metered(r))[:, None] * _one_hot(_cells(r), 48)
    return Group("airport_dm_x_hour_weekend", [f"airport_dm_x_{c}" for c in CELL_NAMES], x)


GROUPS: dict[str, Callable[[Rides], Group]] = {
    "dist_hinges": group_dist_hinges,
    "dist_hinges_post": group_dist_hinges_post,
    "dist_hinges_sparse": group_dist_hinges_sparse,
    "zero_dist": group_zero_dist,
    "dist_x_weekend": group_dist_x_weekend,
    "dist_x_hour": group_dist_x_hour,
    "dist_x_hour_weekend": group_dist_x_hour_weekend,
    "dm_x_hour": group_dm_x_hour,
    "dm_x_hour_weekend": group_dm_x_hour_weekend,
    "dm_x_hour_of_week": group_dm_x_hour_of_week,
    "cells": group_cells,
    "meter_ramp": group_meter_ramp,
    "zone_pair_dist": group_zone_pair_dist,
    "airport_pairs": group_airport_pairs,
    "river_crossing": group_river_crossing,
    "jfk_peak_post": group_jfk_peak_post,
    "tariff": group_tariff,
    "year_index": group_year_index,
    "airport_dm_x_hour": group_airport_dm_x_hour,
    "airport_dm_x_hour_weekend": group_airport_dm_x_hour_weekend,
}

#: The recommended feature version 2 (p = 192), chosen by the ablation of quality_real.py (see
#: docs/features_v2_evidence.md): v1 without the `V2_DROP_V1` columns (`year`, index 20 in
#: v1's names, replaced by `year_index`), then these groups in this order.
V2_DROP_V1: tuple[int, ...] = (20,)
V2_GROUPS: tuple[str, ...] = (
    "dm_x_hour_weekend", "airport_dm_x_hour_weekend", "river_crossing", "jfk_peak_post", "zone_pair_dist",
    "tariff", "zero_dist", "year_index",
)


def design(r: Rides, groups: Sequence[str], drop_v1: Sequence[int] = ()) -> tuple[np.ndarray, list[str]]:
    """v1 matrix without the `drop_v1` columns, followed by the named groups; and the column
    names after the v1 ones."""
    gs = [GROUPS[g](r) for g in groups]
    keep = [j for j in range(N_V1) if j not in drop_v1]
    return np.hstack([r.x1[:, keep], *[g.x for g in gs]]), [n for g in gs for n in g.names]


def raw_features(r: Rides) -> np.ndarray:
    """Plain raw features for the tree baseline: the four coordinates, haversine km, New York
    hour, weekday, year and month."""
    year = 2009 + r.month_index // 12
    return np.column_stack([r.plat, r.plon, r.dlat, r.dlon, r.dist, r.hour, r.weekday, year, r.month_index % 12 + 1])


# -- the kernel's exact ridge (src/kernel/stats.rs), on sufficient statistics ------------------


class ExactRidge:
    """`n`, `XᵀX`, `Xᵀy` of the design augmented with a column of ones, additive over rows;
    `solve` is `Stats::solve`: penalty `alpha` on standardised coefficients, intercept free,
    constant columns get 0. Column subsets of the design are sub-blocks of the statistics, so
    one accumulation serves every candidate basis drawn from the same full matrix."""

    def __init__(self, p: int, n_targets: int = 1) -> None:
        self.xtx = np.zeros((p + 1, p + 1))
        self.xty = np.zeros((p + 1, n_targets))

    def add(self, x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> None:
        """`y`: (n,) or (n, n_targets) (several labels share XᵀX). `w`: fixed row weights."""
        a = np.hstack([np.ones((len(x), 1)), x])
        aw = a if w is None else a * w[:, None]
        self.xtx += aw.T @ a
        self.xty += aw.T @ y.reshape(len(x), -1)

    def solve(self, cols: Sequence[int] | np.ndarray | None = None, alpha: float = 1e-3, target: int = 0) -> tuple[float, np.ndarray]:
        """Intercept and coefficients for the feature columns `cols` (all when None)."""
        p = self.xtx.shape[0] - 1
        c = np.arange(p) if cols is None else np.asarray(cols)
        idx = np.concatenate([[0], c + 1])
        s, b = self.xtx[np.ix_(idx, idx)], self.xty[idx, target]
        n = s[0, 0]
        mean, ybar = s[0, 1:] / n, b[0] / n
        var = np.diag(s)[1:] / n - mean**2
        sd = np.where(var > 1e-12 * (1 + mean**2), np.sqrt(np.maximum(var, 0)), 0.0)
        act = np.flatnonzero(sd > 0)
        m, d = mean[act], sd[act]
        a = (s[np.ix_(act + 1, act + 1)] / n - np.outer(m, m)) / np.outer(d, d) + alpha * np.eye(len(act))
        rhs = (b[act + 1] / n - m * ybar) / d
        beta = np.zeros(len(c))
        beta[act] = np.linalg.solve(a, rhs) / d
        return float(ybar - beta @ mean), beta


def nonzeros_per_row(x: np.ndarray) -> float:
    """Mean non-zeros per row, the intercept included: a row costs about nnz²/2
    multiply-adds in the kernel's sparse accumulation (`SparseRows::add`)."""
    return float(np.mean(np.count_nonzero(x, axis=1))) + 1.0
