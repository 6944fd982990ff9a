"""The exact candidates of benches/v3_proto.py (issue 25): the ridge with an absolute penalty
merges month by month into one pass, the penalty on a one-hot column is a pseudo-count, and it
removes v2's $960,975 prediction on the real rows (docs/quality.md, finding 1)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benches"))
v3 = pytest.importorskip("v3_proto")
v2 = pytest.importorskip("features_v2_proto")
quality_real = pytest.importorskip("quality_real")


def test_the_penalty_on_a_one_hot_column_is_a_pseudo_count() -> None:
    rng = np.random.default_rng(5)
    n, n1, lam = 2_000, 12, 30.0
    x = np.zeros((n, 1))
    x[:n1, 0] = 1.0
    y = rng.normal(10.0, 1.0, n) + 5.0 * x[:, 0]
    _, b = v3.Ridge(x, y).solve(np.array([lam]), alpha=0.0)
    s = n1 * (n - n1) / n  # Σ(x − x̄)²
    gap = y[:n1].mean() - y[n1:].mean()
    assert b[0] == pytest.approx(s * gap / (s + lam), rel=1e-12)
    # A rare cell's level is shrunk by about n1 / (n1 + λ), not left free.
    assert b[0] < 0.35 * gap


def test_monthly_statistics_merge_to_one_pass() -> None:
    t = quality_real.read_sample(quality_real.SAMPLE)
    train, _ = quality_real.split(t)
    gap, exact = v3.check_merge(train)
    assert exact
    assert gap < 1e-9


def test_the_absolute_penalty_removes_v2s_blow_up_on_the_2013_fold() -> None:
    t = quality_real.read_sample(quality_real.SAMPLE)
    fold = next(f for f in quality_real.folds(t, [2013]))
    tr, te = v2.cleaned_rides(fold.train), v2.cleaned_rides(fold.test)
    xtr, p0 = v3.design(tr, "v2")
    xte, _ = v3.design(te, "v2")
    st = v3.Ridge(xtr, tr.y)
    a0, b0 = st.solve(np.zeros(p0))
    lam = np.concatenate([np.full(v3.N1, v3.L1), np.full(p0 - v3.N1, v3.L2)])
    a1, b1 = st.solve(lam)
    assert np.max(a0 + xte @ b0) > 10_000  # the defect is there without the absolute penalty
    assert np.max(a1 + xte @ b1) < 200
    assert float(pc.max(fold.test.column("fare_amount")).as_py()) < 200


def test_the_incremental_correction_equals_the_reference_one() -> None:
    # The port's form (per-cell Σ[1, x], no second pass, added month by month) gives the same
    # shifts as median_cells' reference, which uses every row's in-sample prediction.
    t = quality_real.read_sample(quality_real.SAMPLE)
    train, _ = quality_real.split(t)
    tr = v2.cleaned_rides(train)
    x, p0 = v3.design(tr, "v2")
    a, b = v3.Ridge(x, tr.y).solve(np.concatenate([np.full(v3.N1, v3.L1), np.full(p0 - v3.N1, v3.L2)]))
    inc = v3.IncrementalCorrection(p0)
    for m in np.unique(tr.month_index):
        rows = tr.month_index == m
        inc.add(v2.Rides(**{k: getattr(tr, k)[rows] for k in ("x1", "y", "ts", "plat", "plon", "dlat", "dlon",
                                                             "hour", "weekday", "month_index")}), x[rows])
    pred = a + x @ b
    reference = v3.REC.fit(tr, pred)(tr, pred) - pred
    cell, _ = v3.mc.cell_of(tr, v3.REC.keys)
    np.testing.assert_allclose(inc.delta(a, b)[cell], reference, atol=1e-9)


@pytest.mark.parametrize("fold", ["split", "2013"])
def test_the_kernels_v3_is_the_prototype(fold: str) -> None:
    # The port (`Model(feature_version=3)`: the absolute penalty in the kernel's solve, the
    # correction from the per-cell statistics of the one pass) predicts what the numpy
    # reference (v3_proto's "v2, λ + corr") predicts, on the real rows, to 1e-9 $.
    from taxifare_flow.model import Model

    t = quality_real.read_sample(quality_real.SAMPLE)
    if fold == "split":
        train, test = quality_real.split(t)
    else:
        f = quality_real.folds(t, [int(fold)])[0]
        train, test = f.train, f.test
    tr, te = v2.cleaned_rides(train), v2.cleaned_rides(test)
    xtr, p0 = v3.design(tr, "v2")
    xte, _ = v3.design(te, "v2")
    a, b = v3.Ridge(xtr, tr.y).solve(np.concatenate([np.full(v3.N1, v3.L1), np.full(p0 - v3.N1, v3.L2)]))
    reference = v3.REC.fit(tr, a + xtr @ b)(te, a + xte @ b)
    kernel = Model(feature_version=3)
    kernel.partial_fit(train)
    got = kernel.predict(test)[v2.kept_mask(test)]
    assert len(got) == te.n
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-9)
    assert np.max(np.abs(reference - (a + xte @ b))) > 0.1, "the correction moves predictions"
