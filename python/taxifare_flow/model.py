"""The user-facing model: the Rust kernel, accepting pandas DataFrames as well as Arrow data."""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Union

import numpy as np
import pyarrow as pa

from taxifare_flow import _core
from taxifare_flow.core_types import ArrowArray, ArrowData, ArrowStream

if TYPE_CHECKING:
    import pandas as pd  # noqa: F401 - named in `Rides`
    from numpy.typing import ArrayLike, NDArray

    from taxifare_flow.core_types import CleaningCounts, Evaluation

#: Rides as the model takes them: any Arrow data, or a pandas DataFrame.
Rides = Union[ArrowData, "pd.DataFrame"]


def as_arrow(data: object) -> ArrowData:
    """A pandas DataFrame converted without its index (zero-copy where pyarrow can); any other
    Arrow data as is. Never imports pandas: a DataFrame means pandas is imported already."""
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    if isinstance(data, (ArrowArray, ArrowStream)):
        return data
    raise TypeError(f"expected a pyarrow Table/RecordBatch/RecordBatchReader or a pandas DataFrame, got {type(data).__name__}")


def _floats(x: ArrayLike) -> NDArray[np.float64]:
    return np.ascontiguousarray(x, dtype=np.float64)


class Model:
    """Exact incremental ridge regression on taxi rides.

    `partial_fit` adds rows (statistics only: learning from new rows never revisits old ones),
    `predict` returns fares (NaN for rides that cleaning rejects), `evaluate` scores labelled
    rides, `to_bytes`/`from_bytes` (de)serialise. Heavy work runs in Rust without the GIL.
    `half_life_months` is the forgetting half-life in months of ride time (inf: none, exact).
    `feature_version` is the feature set (`_core.FEATURE_VERSIONS`); a model keeps the version
    it was created with (in its bytes too), and models of different versions cannot merge.
    `feature_names(feature_version)` names the columns of a version.
    """

    feature_names = staticmethod(_core.Model.feature_names)

    def __init__(self, ridge_alpha: float = 1e-3, half_life_months: float = math.inf, *,
                 feature_version: int = _core.DEFAULT_FEATURE_VERSION, _core_model: _core.Model | None = None) -> None:
        self._m = _core_model if _core_model is not None else _core.Model(ridge_alpha, half_life_months, feature_version)

    @property
    def core(self) -> _core.Model:
        """The underlying `_core.Model`."""
        return self._m

    def partial_fit(self, data: Rides) -> CleaningCounts:
        """Adds raw ride rows; returns the cleaning counts."""
        return self._m.partial_fit(as_arrow(data))

    def fit(self, data: Rides) -> Model:
        """Forgets everything, then learns `data`."""
        self._m = _core.Model(self._m.ridge_alpha, self._m.half_life_months, self._m.feature_version)
        self.partial_fit(data)
        return self

    def partial_fit_features(self, x: ArrayLike, y: ArrayLike, month: int | None = None) -> None:
        """Adds precomputed feature rows (see `feature_names()`)."""
        self._m.partial_fit_features(_floats(x), _floats(y), month)

    def predict(self, data: Rides) -> NDArray[np.float64]:
        """Fares for raw rides; NaN where cleaning rejects the ride."""
        return self._m.predict(as_arrow(data))

    def predict_features(self, x: ArrayLike) -> NDArray[np.float64]:
        return self._m.predict_features(_floats(x))

    def evaluate(self, data: Rides, return_errors: bool = False) -> Evaluation:
        """MAE, RMSE, R² and cleaning counts on labelled raw rides."""
        return self._m.evaluate(as_arrow(data), return_errors)

    def coefficients(self) -> tuple[float, NDArray[np.float64]]:
        return self._m.coefficients()

    def merge(self, other: Model) -> None:
        self._m.merge(other._m)

    def unlearn(self, data: Rides, skip: int = 0) -> CleaningCounts:
        """Removes raw ride rows the model learnt, exactly: `fit(A); partial_fit(B);
        unlearn(B)` predicts as `fit(A)`. Under forgetting each row is removed at the weight it
        has now (its ride month's age). Give the rows as they were learnt (one call per
        `partial_fit`): cleaning drops the same duplicates. With `skip`, the first `skip` rows
        are cleaned but not removed: `partial_fit(A + B); unlearn(A + B, skip=len(A))` removes
        B with the duplicates the one pass dropped. Returns the cleaning counts of `data` and
        `unlearnt`, the clean rows removed. Raises `_core.UnlearnError`, the model unchanged,
        for rows it cannot have learnt (newer than `last_month`, or more weight than it holds)."""
        return self._m.unlearn(as_arrow(data), skip)

    def unlearn_model(self, other: Model) -> None:
        """Removes what `other` (same feature version and settings, trained on rows this model
        learnt) learnt: the inverse of `merge`. `_core.ModelError` for another feature version."""
        self._m.unlearn_model(other._m)

    def copy(self) -> Model:
        return Model(_core_model=self._m.copy())

    def to_bytes(self) -> bytes:
        return self._m.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> Model:
        return cls(_core_model=_core.Model.from_bytes(data))

    @property
    def n_rows(self) -> float:
        return self._m.n_rows

    @property
    def feature_version(self) -> int:
        return self._m.feature_version

    @property
    def last_month(self) -> str | None:
        return self._m.last_month


def features(data: Rides, feature_version: int = _core.DEFAULT_FEATURE_VERSION) -> tuple[NDArray[np.float64], NDArray[np.float64], CleaningCounts]:
    """`(X, y, cleaning)` for the rows of `data` that pass cleaning, features of `feature_version`."""
    return _core.compute_features(as_arrow(data), feature_version)
