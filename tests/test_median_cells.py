"""The mergeable median corrections prototyped in benches/median_cells.py (issue 25, the spec
docs/quality.md gives the port): medians from fixed-bin histograms, exact merge of monthly
statistics, shrinkage toward the parent cell, and the k-fold's folds looking only backward."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benches"))
mc = pytest.importorskip("median_cells")
v2 = pytest.importorskip("features_v2_proto")
quality_real = pytest.importorskip("quality_real")


@pytest.fixture(scope="module")
def rides() -> object:
    return v2.cleaned_rides(quality_real.read_sample(quality_real.SAMPLE))


def test_histogram_median_is_the_lower_median_on_the_fare_grid() -> None:
    rng = np.random.default_rng(3)
    y = np.round(rng.gamma(2.0, 4.0, 999) + 2.5, 1)  # fares on the $0.10 grid
    cell = rng.integers(0, 4, len(y))
    st = mc.CellStats.of(cell, 4, y, y)
    for c in range(4):
        v = np.sort(y[cell == c])
        assert st.median()[c] == pytest.approx(v[(len(v) - 1) // 2], abs=1e-9)
    assert st.delta("skew") == pytest.approx(st.median() - np.bincount(cell, y) / np.bincount(cell))


def test_monthly_statistics_merge_to_one_pass(rides: object) -> None:
    pred = np.sqrt(rides.y) + rides.dist  # any per-row prediction: only its sums are kept
    exact, rel = mc.check_merge(rides, pred, ("fine", "zone"))
    assert exact
    assert rel < 1e-12


def test_an_empty_cell_takes_its_parents_correction(rides: object) -> None:
    # Fit on Manhattan-only rides: the airport cells of every band are empty, so their
    # correction is the band's (shrunk toward 0), not 0 and not NaN.
    keep = mc.zone_group(rides) == 0
    sub = v2.Rides(**{k: getattr(rides, k)[keep] for k in ("x1", "y", "ts", "plat", "plon", "dlat", "dlon",
                                                           "hour", "weekday", "month_index")})
    pred = np.full(sub.n, float(np.mean(sub.y)))
    band_only = mc.Correction(("fine",), "bias", 20).fit(sub, pred)
    full = mc.Correction(("fine", "zone"), "bias", 20).fit(sub, pred)
    airport = mc.zone_group(rides) == 1
    assert airport.any()
    probe = v2.Rides(**{k: getattr(rides, k)[airport] for k in ("x1", "y", "ts", "plat", "plon", "dlat", "dlon",
                                                                "hour", "weekday", "month_index")})
    zero = np.zeros(probe.n)
    assert np.all(np.isfinite(full(probe, zero)))
    np.testing.assert_allclose(full(probe, zero), band_only(probe, zero), atol=1e-12)


def test_kfold_trains_only_on_earlier_years() -> None:
    t = quality_real.read_sample(quality_real.SAMPLE)
    for f in quality_real.folds(t, [2011, 2013]):
        y_train = pc.max(quality_real.year_of(f.train)).as_py()
        y_test = set(quality_real.year_of(f.test).to_pylist())
        assert y_test == {int(f.label)}
        assert y_train == int(f.label) - 1
