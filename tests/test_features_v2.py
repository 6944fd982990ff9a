"""Feature version 2: the Rust kernel against the numpy prototype it was ported from
(benches/features_v2_proto.py), its value over v1, and v1 models still loading."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from taxifare_flow import Model, ModelError, _core
from taxifare_flow.settings import settings_from

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SAMPLE = ROOT / "benches" / "data" / "kaggle_sample_5k.csv"

sys.path.insert(0, str(ROOT / "benches"))
proto = pytest.importorskip("features_v2_proto")


def read_sample(path: Path) -> pa.Table:
    """The Kaggle sample as the kernel's ride schema (as benches/quality_real.py reads it)."""
    schema = _core.ride_schema()
    opts = pacsv.ConvertOptions(column_types={f.name: f.type for f in schema})
    return pacsv.read_csv(path, convert_options=opts).select(schema.names).cast(schema)


def month(m: str, rows: int = 20_000, seed: int = 42) -> pa.Table:
    return _core.generate_month(m, rows, seed=seed).read_all()


def test_versions_are_exposed() -> None:
    assert _core.DEFAULT_FEATURE_VERSION == 3, "new models and new lineages are v3"
    assert settings_from({}).feature_version == _core.DEFAULT_FEATURE_VERSION, "one default: the lifecycle's too"
    assert _core.FEATURE_VERSIONS == (1, 2, 3)
    v1, v2 = Model.feature_names(1), Model.feature_names(2)
    assert Model.feature_names() == v2, "v3's columns are v2's"
    assert len(v1) == 80 and len(v2) == 192
    assert v2[20] == "year_index" and v1[20] == "year"
    assert v2[:20] == v1[:20] and v2[21:80] == v1[21:80]
    assert Model(feature_version=1).feature_version == 1 and Model().feature_version == 3
    assert _core.Model().feature_version == 3 and len(_core.compute_features(month("2012-01", 10))[0][0]) == 192
    with pytest.raises(ValueError, match="feature version 4"):
        Model(feature_version=4)
    with pytest.raises(ValueError):
        _core.compute_features(month("2012-01", 10), 0)


def assert_same_as_prototype(table: pa.Table) -> int:
    """`compute_features(table, 2)` equals the prototype's v2 design, column by column."""
    x2, y2, _ = _core.compute_features(table, 2)
    rides = proto.cleaned_rides(table)
    xp, group_names = proto.design(rides, proto.V2_GROUPS, proto.V2_DROP_V1)
    v1_names = _core.Model.feature_names(1)
    proto_names = [n for j, n in enumerate(v1_names) if j not in proto.V2_DROP_V1] + group_names
    names = _core.Model.feature_names(2)
    # The prototype appends year_index last; the kernel has it at column 20.
    assert sorted(proto_names) == sorted(names)
    xp = xp[:, [proto_names.index(n) for n in names]]
    assert x2.shape == xp.shape == (rides.n, 192)
    np.testing.assert_array_equal(y2, rides.y)
    for j, name in enumerate(names):
        np.testing.assert_allclose(x2[:, j], xp[:, j], rtol=1e-12, atol=1e-12, err_msg=name)
    return int(rides.n)


def test_v2_equals_the_prototype_on_real_rides() -> None:
    n = assert_same_as_prototype(read_sample(SAMPLE))
    assert n > 4500


def test_v2_equals_the_prototype_on_a_generated_month() -> None:
    # September 2012: the rate change and the meters' re-calibration month.
    table = month("2012-09")
    n = assert_same_as_prototype(table)
    assert n > 19_000
    x2, _, _ = _core.compute_features(table, 2)
    names = _core.Model.feature_names(2)
    for col in ("jfk_flat_fare", "ewr_surcharge", "river_cross", "airport_dm_x_we_h12", "pair_oo", "zero_dist"):
        assert np.count_nonzero(x2[:, names.index(col)]) > 0, f"{col} never set: the comparison would be vacuous"


def test_v2_beats_v1_on_a_later_month() -> None:
    train = [month(f"2012-{m:02d}", seed=7) for m in range(1, 9)]
    test = month("2012-10", seed=8)
    mae = {}
    for version in (1, 2):
        m = Model(feature_version=version)
        for t in train:
            m.partial_fit(t)
        mae[version] = m.evaluate(test)["mae"]
    assert mae[2] < 0.95 * mae[1], mae


def test_v2_model_bytes_round_trip_and_versions_do_not_merge() -> None:
    m = Model(feature_version=2)
    m.partial_fit(month("2013-02", 3000))
    loaded = Model.from_bytes(m.to_bytes())
    assert loaded.feature_version == 2
    test = month("2013-03", 500)
    np.testing.assert_array_equal(loaded.predict(test), m.predict(test))
    x, _, _ = _core.compute_features(test, 2)
    assert m.predict_features(x).shape == (len(x),)
    v1 = Model(feature_version=1)
    v1.partial_fit(month("2013-01", 3000))
    with pytest.raises(ModelError, match="feature version"):
        v1.merge(m)
    with pytest.raises(ModelError):
        m.partial_fit_features(*_core.compute_features(test, 1)[:2])


def test_v1_model_of_the_v1_only_build_loads_and_predicts_identically() -> None:
    """tests/data/model_v1_main.bin and its predictions were written by the build before
    feature versions (main at 40e7905): `Model(1e-3, 6.0)` fitted on
    `generate_month("2011-05", 3000, 7, False, 1000)`, predicting
    `generate_month("2011-06", 200, 8, False, 1000)`."""
    old = (DATA / "model_v1_main.bin").read_bytes()
    m = Model.from_bytes(old)
    assert m.feature_version == 1 and m.last_month == "2011-05"
    assert m.to_bytes() == old
    rows = _core.generate_month("2011-06", 200, 8, False, 1000).read_all()
    expected = np.load(DATA / "model_v1_main_pred.npy")
    np.testing.assert_array_equal(m.predict(rows), expected)
