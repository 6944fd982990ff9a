"""taxifare-flow: continuous training of a NYC taxi-fare model (Rust core, Python orchestration).

Names are resolved lazily so that light commands (`taxifare watermark`) do not pay for numpy,
pyarrow or mlflow imports.
"""

from typing import TYPE_CHECKING

from taxifare_flow import _core

if TYPE_CHECKING:
    from taxifare_flow._core import DataSourceError, ModelError, MonthAlreadyPresentError, SchemaError, TaxifareError
    from taxifare_flow.model import Model

__version__ = _core.__version__

_CORE_ERRORS = ("DataSourceError", "ModelError", "MonthAlreadyPresentError", "SchemaError", "TaxifareError")

__all__ = ["DataSourceError", "Model", "ModelError", "MonthAlreadyPresentError", "SchemaError", "TaxifareError",
           "__version__", "_core"]


def __getattr__(name: str) -> object:
    if name in _CORE_ERRORS:
        return getattr(_core, name)
    if name == "Model":
        from taxifare_flow.model import Model

        return Model
    raise AttributeError(f"module 'taxifare_flow' has no attribute {name!r}")
