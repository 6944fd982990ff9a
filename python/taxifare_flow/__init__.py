"""taxifare-flow: continuous training of a NYC taxi-fare model (Rust core, Python orchestration).

The public API: `Model`, `features`, `get_latest_trained_row`, `load_settings`, `Settings`,
`DEFAULT_FEATURE_VERSION`, and every error (all derive from `TaxifareError`).

Names are resolved lazily so that light commands (`taxifare watermark`) do not pay for numpy,
pyarrow or mlflow imports.
"""

from importlib import import_module
from typing import TYPE_CHECKING

from taxifare_flow import _core

if TYPE_CHECKING:
    from taxifare_flow._core import (
        DataSourceError,
        ModelError,
        MonthAlreadyPresentError,
        SchemaError,
        TaxifareError,
        TrackingDbError,
    )
    from taxifare_flow.errors import (
        BigQueryError,
        HistoryError,
        IntegrityError,
        LockLost,
        LockTimeout,
        NotPostgresError,
        PrefectServerError,
        RegistryError,
        SettingsError,
        SourceBehindError,
        TrackingStoreError,
    )
    from taxifare_flow.ml_logic.watermark import get_latest_trained_row
    from taxifare_flow.model import Model, features
    from taxifare_flow.settings import Settings, load_settings

__version__ = _core.__version__
#: The feature version of a new `Model` and of a new lineage (`FeatureSet::DEFAULT` in Rust).
DEFAULT_FEATURE_VERSION: int = _core.DEFAULT_FEATURE_VERSION

#: Public name → the module that defines it (imported on first use).
_LAZY = {
    **dict.fromkeys(("DataSourceError", "ModelError", "MonthAlreadyPresentError", "SchemaError", "TaxifareError",
                     "TrackingDbError"), "taxifare_flow._core"),
    **dict.fromkeys(("BigQueryError", "HistoryError", "IntegrityError", "LockLost", "LockTimeout", "NotPostgresError",
                     "PrefectServerError", "RegistryError", "SettingsError", "SourceBehindError",
                     "TrackingStoreError"), "taxifare_flow.errors"),
    "get_latest_trained_row": "taxifare_flow.ml_logic.watermark",
    "Model": "taxifare_flow.model",
    "features": "taxifare_flow.model",
    "Settings": "taxifare_flow.settings",
    "load_settings": "taxifare_flow.settings",
}

__all__ = [
    "BigQueryError", "DEFAULT_FEATURE_VERSION", "DataSourceError", "HistoryError", "IntegrityError",
    "LockLost", "LockTimeout", "Model", "ModelError", "MonthAlreadyPresentError", "NotPostgresError",
    "PrefectServerError", "RegistryError", "SchemaError", "Settings", "SettingsError", "SourceBehindError",
    "TaxifareError", "TrackingDbError", "TrackingStoreError", "__version__", "_core", "features",
    "get_latest_trained_row", "load_settings",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'taxifare_flow' has no attribute {name!r}")
    return getattr(import_module(module), name)
