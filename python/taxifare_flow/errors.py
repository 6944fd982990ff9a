"""The Python side of the one error hierarchy: every error the package raises derives from
`TaxifareError` (defined by the Rust core, which raises the data, model and watermark kinds).
The CLI turns any of them into one line and exit status 2."""

from __future__ import annotations

from taxifare_flow._core import DataSourceError, TaxifareError


class SettingsError(TaxifareError, ValueError):
    """A setting is missing or invalid; the message names the variable."""


class LockTimeout(TaxifareError):
    """Another lifecycle run holds the lifecycle lock."""


class LockLost(TaxifareError):
    """The lifecycle lock was lost while a lifecycle ran (its database session ended)."""


class SourceBehindError(DataSourceError):
    """The data source holds fewer rows than the model was trained on."""


class HistoryError(DataSourceError):
    """The pending history cannot be used or changed as asked; the message says what to do."""


class BigQueryError(DataSourceError):
    """BigQuery is unreachable or refused a request; the message says which and why."""


class NotPostgresError(SettingsError):
    """The tracking DB is not PostgreSQL (SQLite, or none configured): psql cannot open it."""


class IntegrityError(TaxifareError):
    """The stored state breaks a guarantee (training runs do not tile the trained rows, the
    source is not what its names say): nothing is trained on top of it."""


class LineageError(IntegrityError):
    """The lineage belongs elsewhere: the registered model is another experiment's, or the
    pending history is not the one the lineage was trained on. Nothing was changed."""


class RegistryError(TaxifareError):
    """The model registry lacks what the lineage needs (a version, its artifact)."""


class TrackingStoreError(TaxifareError):
    """The MLflow store cannot be created or opened (no space, half-created, unreachable)."""


class PrefectServerError(TaxifareError):
    """The local Prefect API server did not start."""


class DataValidationError(TaxifareError):
    """The data-validation gate refused a range: its statistics differ from recent trained
    months the way broken data does. Nothing was trained; `taxifare run_flow --accept` trains
    it deliberately."""


class UnlearnRefused(TaxifareError):
    """`taxifare unlearn` cannot remove the rows asked for (an unknown month, rows never trained
    or already unlearnt, statistics of another feature version); nothing was changed."""
