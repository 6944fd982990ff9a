"""taxifare-flow: continuous training of a NYC taxi-fare model (Rust core, Python orchestration)."""

from taxifare_flow import _core
from taxifare_flow._core import (
    DataSourceError,
    ModelError,
    MonthAlreadyPresentError,
    SchemaError,
    TaxifareError,
)
from taxifare_flow.model import Model

__version__ = _core.__version__

__all__ = [
    "DataSourceError",
    "Model",
    "ModelError",
    "MonthAlreadyPresentError",
    "SchemaError",
    "TaxifareError",
    "__version__",
    "_core",
]
