"""The user-facing model: the Rust kernel, accepting pandas DataFrames as well as Arrow data."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

from taxifare_flow import _core


def as_arrow(data: Any) -> Any:
    """Arrow data as is; a pandas DataFrame converted (zero-copy where pyarrow can)."""
    if hasattr(data, "__arrow_c_stream__") or hasattr(data, "__arrow_c_array__"):
        return data
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise TypeError(f"expected a pyarrow Table/RecordBatch/RecordBatchReader or a pandas DataFrame, got {type(data).__name__}")


class Model:
    """Exact incremental ridge regression on taxi rides.

    `partial_fit` adds rows (statistics only: learning from new rows never revisits old ones),
    `predict` returns fares (NaN for rides that cleaning rejects), `evaluate` scores labelled
    rides, `to_bytes`/`from_bytes` (de)serialise. Heavy work runs in Rust without the GIL.
    `half_life_months` is the forgetting half-life in months of ride time (inf: none, exact).
    """

    feature_names = staticmethod(_core.Model.feature_names)

    def __init__(self, ridge_alpha: float = 1e-3, half_life_months: float = math.inf, *, _core_model: Any = None) -> None:
        self._m = _core_model if _core_model is not None else _core.Model(ridge_alpha, half_life_months)

    @property
    def core(self) -> Any:
        """The underlying `_core.Model`."""
        return self._m

    def partial_fit(self, data: Any) -> dict[str, int]:
        """Adds raw ride rows; returns the cleaning counts."""
        return self._m.partial_fit(as_arrow(data))

    def fit(self, data: Any) -> Model:
        """Forgets everything, then learns `data`."""
        self._m = _core.Model(self._m.ridge_alpha, self._m.half_life_months)
        self.partial_fit(data)
        return self

    def partial_fit_features(self, x: np.ndarray, y: np.ndarray, month: int | None = None) -> None:
        """Adds precomputed feature rows (see `feature_names()`)."""
        self._m.partial_fit_features(np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(y, dtype=np.float64), month)

    def predict(self, data: Any) -> np.ndarray:
        """Fares for raw rides; NaN where cleaning rejects the ride."""
        return self._m.predict(as_arrow(data))

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        return self._m.predict_features(np.ascontiguousarray(x, dtype=np.float64))

    def evaluate(self, data: Any, return_errors: bool = False) -> dict[str, Any]:
        """MAE, RMSE, R² and cleaning counts on labelled raw rides."""
        return self._m.evaluate(as_arrow(data), return_errors)

    def coefficients(self) -> tuple[float, np.ndarray]:
        return self._m.coefficients()

    def merge(self, other: Model) -> None:
        self._m.merge(other._m)

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


def features(data: Any) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """`(X, y, cleaning)` for the rows of `data` that pass cleaning."""
    return _core.compute_features(as_arrow(data))
