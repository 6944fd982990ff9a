"""Exact unlearning in the kernel: `fit(A); partial_fit(B); unlearn(B)` predicts as `fit(A)`,
with and without forgetting; what the model cannot have learnt is refused, typed, the model
unchanged."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from taxifare_flow import _core
from taxifare_flow.model import Model


def rides(months: list[str], rows: int, seed: int) -> pa.Table:
    return pa.concat_tables([_core.generate_month(m, rows, seed=seed).read_all() for m in months])


A = rides(["2013-10", "2013-11"], 2500, 1)
B = rides(["2013-12", "2014-01"], 2500, 2)
PROBE = rides(["2014-02"], 1500, 3)


def predictions(m: Model) -> np.ndarray:
    p = m.predict(PROBE)
    return p[~np.isnan(p)]


@pytest.mark.parametrize("half_life", [math.inf, 2.0])
def test_unlearning_b_predicts_as_never_having_learnt_it(half_life: float) -> None:
    oracle = Model(half_life_months=half_life, feature_version=2)
    oracle.partial_fit(A)
    m = Model(half_life_months=half_life, feature_version=2)
    m.partial_fit(A)
    m.partial_fit(B)
    assert np.abs(predictions(m) - predictions(oracle)).max() > 0.01
    counts = m.unlearn(B)
    assert counts["raw"] == B.num_rows
    assert np.abs(predictions(m) - predictions(oracle)).max() < 1e-9
    # The clock stays at B's newest month: later rows decay A as they would have anyway.
    assert m.last_month == "2014-01"


def test_unlearn_model_is_the_inverse_of_merge() -> None:
    a, b = Model(feature_version=2), Model(feature_version=2)
    a.partial_fit(A)
    b.partial_fit(B)
    both = a.copy()
    both.merge(b)
    both.unlearn_model(b)
    assert np.abs(predictions(both) - predictions(a)).max() < 1e-9


def test_what_was_never_learnt_is_refused_and_the_model_kept() -> None:
    m = Model(feature_version=2)
    m.partial_fit(A)
    before = m.to_bytes()
    with pytest.raises(_core.UnlearnError, match="newer than anything the model learnt"):
        m.unlearn(B)
    with pytest.raises(_core.UnlearnError, match="never learnt them all"):
        m.unlearn(rides(["2013-11"], 9000, 4))
    with pytest.raises(_core.ModelError, match="feature version 1"):
        m.unlearn_model(Model(feature_version=1))
    assert m.to_bytes() == before
    with pytest.raises(_core.UnlearnError, match="learnt no row"):
        Model(feature_version=2).unlearn(A)
    # Unlearning everything leaves an empty model.
    m.unlearn(A)
    assert m.n_rows == 0 and m.last_month is None
