//! The only PyO3 code: thin bindings over the core, errors mapped to Python exceptions in one
//! place, the GIL released around every heavy call.

mod testing;
mod profile;
mod warehouse;

use std::path::PathBuf;

use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyBytes, PyDict};
use pyo3_arrow::input::AnyRecordBatch;
use pyo3_arrow::{PyRecordBatchReader, PySchema};

use crate::calendar::Month;
use crate::generator::history::{self, HistoryError, HistoryOptions, Progress};
use crate::generator::import::{self, ImportOptions};
use crate::generator::scenario::Scenario;
use crate::kernel::cleaning::CleaningCounts;
use crate::kernel::model::{Evaluation, Model, Settings};
use crate::kernel::feature_set::{features_of_batches, FeatureSet};
use crate::kernel::holdout::holdout_offset;
use crate::kernel::ledger::{Ledger, Weighting};
use crate::kernel::{codec, KernelError};
use crate::source::layout::{self, Format};
use crate::kernel::pass::{self, PassModels, PassResult};
use crate::kernel::metrics::Metrics;
use crate::source::rows_read::{self, Counted};
use crate::source::reader::SliceReader;
use crate::source::{append, reader, verify, SourceError};
use crate::watermark::{self, WatermarkError};

create_exception!(_core, TaxifareError, PyException, "Base of every error raised by the taxifare-flow core.");
create_exception!(_core, DataSourceError, TaxifareError, "The data source is missing, corrupt, or not contiguous.");
create_exception!(_core, SchemaError, TaxifareError, "A required column is missing or has the wrong type.");
create_exception!(_core, MonthAlreadyPresentError, DataSourceError, "The month is already in the data source.");
create_exception!(_core, ModelError, TaxifareError, "The kernel cannot fit, predict, or load a model.");
create_exception!(_core, UnlearnError, ModelError, "Rows asked to be unlearnt that the model cannot have learnt; the model is unchanged.");
create_exception!(_core, TrackingDbError, TaxifareError, "Reading the MLflow tracking database failed.");
create_exception!(_core, TrackingDbUnreachableError, TrackingDbError, "The tracking database cannot be reached.");
create_exception!(_core, TrackingDbAuthError, TrackingDbError, "The tracking database refused the credentials.");
create_exception!(_core, NotAnMlflowStoreError, TrackingDbError, "The database holds no MLflow tables.");
create_exception!(_core, InvalidRunParamError, TrackingDbError, "A run's first_row/row_count param is not an integer.");
create_exception!(_core, TrackingStoreNotFoundError, TrackingDbError, "The SQLite tracking store does not exist.");
create_exception!(_core, TrackingDbTlsError, TrackingDbError, "TLS to the tracking database failed, or its settings are invalid.");
create_exception!(_core, TrackingDbCertificateError, TrackingDbTlsError, "The tracking database's TLS certificate does not verify.");
create_exception!(_core, TrackingDbTlsRequiredError, TrackingDbTlsError, "The tracking database accepts only TLS, and sslmode does not encrypt.");
create_exception!(_core, TrackingDbTlsNotOfferedError, TrackingDbTlsError, "sslmode requires TLS, and the tracking database does not offer it.");

/// Every core error becomes one Python exception class, here and nowhere else.
#[derive(Debug, thiserror::Error)]
enum CoreError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Watermark(#[from] WatermarkError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Warehouse(#[from] crate::warehouse::WarehouseError),
    #[error("{0}")]
    Invalid(String),
}

impl From<CoreError> for PyErr {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Source(e @ SourceError::Schema { .. }) => SchemaError::new_err(e.to_string()),
            CoreError::Source(e @ SourceError::AlreadyPresent { .. }) => MonthAlreadyPresentError::new_err(e.to_string()),
            CoreError::Source(SourceError::Invalid(m)) => pyo3::exceptions::PyValueError::new_err(m),
            CoreError::Source(e) => DataSourceError::new_err(e.to_string()),
            CoreError::Kernel(e @ KernelError::Schema { .. }) => SchemaError::new_err(e.to_string()),
            CoreError::Kernel(KernelError::Input(m)) => DataSourceError::new_err(m),
            CoreError::Kernel(e @ KernelError::Invalid(_)) => pyo3::exceptions::PyValueError::new_err(e.to_string()),
            CoreError::Kernel(e @ KernelError::NotLearnt(_)) => UnlearnError::new_err(e.to_string()),
            CoreError::Kernel(e) => ModelError::new_err(e.to_string()),
            CoreError::Watermark(e) => {
                let m = e.to_string();
                match e {
                    WatermarkError::Unreachable { .. } => TrackingDbUnreachableError::new_err(m),
                    WatermarkError::Authentication { .. } => TrackingDbAuthError::new_err(m),
                    WatermarkError::NotAnMlflowStore { .. } => NotAnMlflowStoreError::new_err(m),
                    WatermarkError::InvalidParam { .. } => InvalidRunParamError::new_err(m),
                    WatermarkError::StoreNotFound(_) => TrackingStoreNotFoundError::new_err(m),
                    WatermarkError::TlsCertificate { .. } => TrackingDbCertificateError::new_err(m),
                    WatermarkError::TlsRequired { .. } => TrackingDbTlsRequiredError::new_err(m),
                    WatermarkError::TlsNotOffered { .. } => TrackingDbTlsNotOfferedError::new_err(m),
                    WatermarkError::TlsConfig { .. } | WatermarkError::TlsHandshake { .. } => TrackingDbTlsError::new_err(m),
                    _ => TrackingDbError::new_err(m),
                }
            }
            CoreError::History(e) => DataSourceError::new_err(e.to_string()),
            CoreError::Warehouse(crate::warehouse::WarehouseError::Kernel(e)) => CoreError::Kernel(e).into(),
            CoreError::Warehouse(crate::warehouse::WarehouseError::Invalid(m)) => pyo3::exceptions::PyValueError::new_err(m),
            CoreError::Warehouse(e) => DataSourceError::new_err(e.to_string()),
            CoreError::Invalid(m) => pyo3::exceptions::PyValueError::new_err(m),
        }
    }
}

impl From<arrow::error::ArrowError> for CoreError {
    fn from(e: arrow::error::ArrowError) -> Self {
        Self::Kernel(e.into())
    }
}

type CoreResult<T> = Result<T, CoreError>;

fn month(s: &str) -> CoreResult<Month> {
    Month::parse(s).ok_or_else(|| CoreError::Invalid(format!("{s:?} is not a month (YYYY-MM)")))
}

fn counts_dict<'py>(py: Python<'py>, c: &CleaningCounts) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in c.pairs() {
        d.set_item(k, v)?;
    }
    Ok(d)
}

fn evaluation_dict<'py>(py: Python<'py>, ev: Evaluation) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("n", ev.metrics.n)?;
    d.set_item("mae", ev.metrics.mae())?;
    d.set_item("rmse", ev.metrics.rmse())?;
    d.set_item("r2", ev.metrics.r2())?;
    d.set_item("cleaning", counts_dict(py, &ev.counts)?)?;
    if let Some(errors) = ev.abs_errors {
        d.set_item("abs_errors", errors.into_pyarray(py))?;
    }
    Ok(d)
}

/// Rows of the local source, counted as read.
fn source_rows(dir: &std::path::Path, first: u64, count: Option<u64>, batch_rows: usize) -> CoreResult<Counted<SliceReader>> {
    Ok(Counted(reader::read_rows(dir, first, count, batch_rows)?))
}

fn scores_dict<'py>(py: Python<'py>, m: Option<Metrics>) -> PyResult<Option<Bound<'py, PyDict>>> {
    let Some(m) = m else { return Ok(None) };
    let d = PyDict::new(py);
    d.set_item("n", m.n)?;
    d.set_item("mae", m.mae())?;
    d.set_item("rmse", m.rmse())?;
    d.set_item("r2", m.r2())?;
    Ok(Some(d))
}

fn pass_dict<'py>(py: Python<'py>, r: PassResult) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("rows", r.rows)?;
    d.set_item("cleaning", counts_dict(py, &r.counts)?)?;
    d.set_item("train_kept", r.train_kept)?;
    d.set_item("holdout_kept", r.holdout_kept)?;
    d.set_item("production", scores_dict(py, r.production)?)?;
    d.set_item("frozen", scores_dict(py, r.frozen)?)?;
    d.set_item("holdout_challenger_errors", r.holdout_challenger.map(|e| e.into_pyarray(py)))?;
    d.set_item("holdout_production_errors", r.holdout_production.map(|e| e.into_pyarray(py)))?;
    let horizons: Vec<_> = r.holdout_horizons.into_iter().map(|e| e.map(|v| v.into_pyarray(py))).collect();
    d.set_item("holdout_horizon_errors", horizons)?;
    d.set_item("ledger", r.ledger.map(|inner| Py::new(py, PyLedger { inner })).transpose()?)?;
    d.set_item("lineage_hash", r.lineage_hash)?;
    d.set_item("profile", profile::profile_list(py, &r.profile)?)?;
    Ok(d)
}

/// Runs the one lifecycle pass with copies of the scored models (they are only read).
fn run_pass<I>(
    py: Python<'_>,
    rows: impl FnOnce() -> CoreResult<I> + Send,
    holdout_offset: u64,
    challenger: &mut Model,
    production: Option<PyRef<'_, PyModel>>,
    frozen: Option<PyRef<'_, PyModel>>,
    horizons: Option<Vec<PyRefMut<'_, PyModel>>>,
) -> PyResult<PassResult>
where
    I: IntoIterator<Item = Result<arrow::array::RecordBatch, arrow::error::ArrowError>>,
{
    let mut production = production.map(|m| m.inner.clone());
    let mut frozen = frozen.map(|m| m.inner.clone());
    let mut horizons = horizons.unwrap_or_default();
    let horizons: Vec<&mut Model> = horizons.iter_mut().map(|h| &mut h.inner).collect();
    Ok(py
        .detach(|| -> CoreResult<PassResult> {
            let models = PassModels { challenger, production: production.as_mut(), frozen: frozen.as_mut(), horizons };
            Ok(pass::lifecycle_pass(rows()?, holdout_offset, models)?)
        })
        .map_err(PyErr::from)?)
}

/// One lifecycle's pass over Arrow rows `[w, t)` whose holdout starts `holdout_offset` rows in:
/// production and frozen scored, the challenger trained (ending with all the rows), the
/// holdout scored row by row, the rows hashed, their ledger summed; `horizons` (other
/// challengers of the challenger's feature version) are trained and scored as the challenger
/// is. Each row is read once.
#[pyfunction]
#[pyo3(signature = (data, holdout_offset, challenger, production = None, frozen = None, horizons = None))]
fn lifecycle_pass<'py>(
    py: Python<'py>,
    data: AnyRecordBatch,
    holdout_offset: u64,
    mut challenger: PyRefMut<'py, PyModel>,
    production: Option<PyRef<'py, PyModel>>,
    frozen: Option<PyRef<'py, PyModel>>,
    horizons: Option<Vec<PyRefMut<'py, PyModel>>>,
) -> PyResult<Bound<'py, PyDict>> {
    let reader = Counted(data.into_reader()?);
    let r = run_pass(py, move || Ok(reader), holdout_offset, &mut challenger.inner, production, frozen, horizons)?;
    pass_dict(py, r)
}

/// `lifecycle_pass` over rows `[first_row, first_row + row_count)` of a local source, read in
/// Rust; the holdout starts at row `holdout_start`.
#[pyfunction]
#[pyo3(signature = (source_dir, first_row, row_count, holdout_start, challenger, production = None, frozen = None, horizons = None, batch_rows = crate::schema::BATCH_ROWS))]
#[allow(clippy::too_many_arguments)]
fn lifecycle_pass_source<'py>(
    py: Python<'py>,
    source_dir: PathBuf,
    first_row: u64,
    row_count: u64,
    holdout_start: u64,
    mut challenger: PyRefMut<'py, PyModel>,
    production: Option<PyRef<'py, PyModel>>,
    frozen: Option<PyRef<'py, PyModel>>,
    horizons: Option<Vec<PyRefMut<'py, PyModel>>>,
    batch_rows: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let offset = holdout_offset(first_row, first_row + row_count, holdout_start).map_err(|e| CoreError::Invalid(e.to_string()))?;
    let rows = move || source_rows(&source_dir, first_row, Some(row_count), batch_rows);
    let r = run_pass(py, rows, offset, &mut challenger.inner, production, frozen, horizons)?;
    pass_dict(py, r)
}

/// Rows the core has read since the process started (decoded from the local source, or
/// received as Arrow from Python).
#[pyfunction]
fn rows_decoded() -> u64 {
    rows_read::total()
}

/// The lineage hash of rows `[first_row, first_row + row_count)` of a local source.
#[pyfunction]
fn hash_source_rows(py: Python<'_>, source_dir: PathBuf, first_row: u64, row_count: u64) -> PyResult<String> {
    py.detach(|| -> CoreResult<String> {
        let r = source_rows(&source_dir, first_row, Some(row_count), crate::schema::BATCH_ROWS)?;
        Ok(crate::lineage::hash_rows(r)?)
    })
    .map_err(PyErr::from)
}

/// The taxi-fare model: exact incremental ridge regression over cleaned, featurised rides.
#[pyclass(name = "Model", module = "taxifare_flow._core")]
pub struct PyModel {
    inner: Model,
}

#[pymethods]
impl PyModel {
    #[new]
    #[pyo3(signature = (ridge_alpha = 1e-3, half_life_months = f64::INFINITY, feature_version = FeatureSet::DEFAULT.version()))]
    fn new(ridge_alpha: f64, half_life_months: f64, feature_version: u16) -> PyResult<Self> {
        let settings = Settings { ridge_alpha, half_life_months };
        let set = FeatureSet::from_version(feature_version).map_err(CoreError::from)?;
        Ok(Self { inner: Model::with_features(settings, set).map_err(CoreError::from)? })
    }

    /// Adds raw ride rows (any Arrow table, batch or stream); returns the cleaning counts.
    fn partial_fit<'py>(&mut self, py: Python<'py>, data: AnyRecordBatch) -> PyResult<Bound<'py, PyDict>> {
        let reader = Counted(data.into_reader()?);
        let model = &mut self.inner;
        let counts = py.detach(|| model.partial_fit(reader)).map_err(CoreError::from)?;
        counts_dict(py, &counts)
    }

    /// Adds rows `[first_row, first_row + row_count)` of a local source, read in Rust.
    #[pyo3(signature = (source_dir, first_row, row_count = None, batch_rows = crate::schema::BATCH_ROWS))]
    fn partial_fit_source<'py>(
        &mut self,
        py: Python<'py>,
        source_dir: PathBuf,
        first_row: u64,
        row_count: Option<u64>,
        batch_rows: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        let model = &mut self.inner;
        let counts = py
            .detach(|| -> CoreResult<CleaningCounts> {
                let r = source_rows(&source_dir, first_row, row_count, batch_rows)?;
                Ok(model.partial_fit(r)?)
            })
            .map_err(PyErr::from)?;
        counts_dict(py, &counts)
    }

    /// Adds precomputed features (n × len(feature_names())) and labels.
    #[pyo3(signature = (x, y, month = None))]
    fn partial_fit_features(&mut self, x: PyReadonlyArray2<f64>, y: PyReadonlyArray1<f64>, month: Option<i32>) -> PyResult<()> {
        Ok(self.inner.partial_fit_features(x.as_array(), y.as_array(), month).map_err(CoreError::from)?)
    }

    /// Predicted fares for raw rides; NaN where cleaning rejects the ride.
    fn predict<'py>(&mut self, py: Python<'py>, data: AnyRecordBatch) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let reader = Counted(data.into_reader()?);
        let model = &mut self.inner;
        let out = py.detach(|| model.predict_stream(reader)).map_err(CoreError::from)?;
        Ok(out.into_pyarray(py))
    }

    /// Predicted fares for raw rides and, per ride, why cleaning rejected it (`None` where it
    /// was kept; the fare is then finite, NaN where rejected).
    fn predict_explained<'py>(&mut self, py: Python<'py>, data: AnyRecordBatch) -> PyResult<(Bound<'py, PyArray1<f64>>, Vec<Option<String>>)> {
        let reader = Counted(data.into_reader()?);
        let model = &mut self.inner;
        let (fares, reasons) = py
            .detach(|| -> CoreResult<(Vec<f64>, Vec<Option<String>>)> {
                let (mut fares, mut reasons) = (Vec::new(), Vec::new());
                for batch in reader {
                    let batch = batch.map_err(|e| KernelError::Input(e.to_string()))?;
                    let (f, r) = model.predict_explained(&batch)?;
                    fares.extend(f);
                    reasons.extend(r);
                }
                Ok((fares, reasons))
            })
            .map_err(PyErr::from)?;
        Ok((fares.into_pyarray(py), reasons))
    }

    /// Predictions on precomputed features.
    fn predict_features<'py>(&mut self, py: Python<'py>, x: PyReadonlyArray2<f64>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        Ok(self.inner.predict_features(x.as_array()).map_err(CoreError::from)?.into_pyarray(py))
    }

    /// MAE, RMSE, R², cleaning counts (and per-row absolute errors) on labelled raw rides.
    #[pyo3(signature = (data, return_errors = false))]
    fn evaluate<'py>(&mut self, py: Python<'py>, data: AnyRecordBatch, return_errors: bool) -> PyResult<Bound<'py, PyDict>> {
        let reader = Counted(data.into_reader()?);
        let model = &mut self.inner;
        let ev = py.detach(|| model.evaluate(reader, return_errors)).map_err(CoreError::from)?;
        evaluation_dict(py, ev)
    }

    /// Like `evaluate`, on rows `[first_row, first_row + row_count)` of a local source.
    #[pyo3(signature = (source_dir, first_row, row_count = None, return_errors = false, batch_rows = crate::schema::BATCH_ROWS))]
    fn evaluate_source<'py>(
        &mut self,
        py: Python<'py>,
        source_dir: PathBuf,
        first_row: u64,
        row_count: Option<u64>,
        return_errors: bool,
        batch_rows: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        let model = &mut self.inner;
        let ev = py
            .detach(|| -> CoreResult<Evaluation> {
                let r = source_rows(&source_dir, first_row, row_count, batch_rows)?;
                Ok(model.evaluate(r, return_errors)?)
            })
            .map_err(PyErr::from)?;
        evaluation_dict(py, ev)
    }

    /// `(intercept, coefficients)`, solving if needed.
    fn coefficients<'py>(&mut self, py: Python<'py>) -> PyResult<(f64, Bound<'py, PyArray1<f64>>)> {
        let c = self.inner.coefficients().map_err(CoreError::from)?;
        Ok((c.intercept, c.beta.clone().into_pyarray(py)))
    }

    /// `(XᵀX, Xᵀy, Σy²)` of the design augmented with a leading column of ones (so row 0
    /// holds n and the feature sums), as weighted by forgetting.
    fn statistics<'py>(&self, py: Python<'py>) -> (Bound<'py, PyArray2<f64>>, Bound<'py, PyArray1<f64>>, f64) {
        let st = self.inner.stats();
        (st.xtx.clone().into_pyarray(py), st.xty.clone().into_pyarray(py), st.syy)
    }

    /// An empty model with the same settings and feature version.
    fn empty_like(&self) -> PyResult<Self> {
        Ok(Self { inner: Model::with_features(self.inner.settings, self.inner.feature_set).map_err(CoreError::from)? })
    }

    /// Removes raw ride rows the model learnt, exactly, each at the weight it has now under
    /// forgetting; returns the cleaning counts, and `unlearnt`, the clean rows removed. The
    /// first `skip` rows are cleaned but kept (they seed the de-duplication as when the rows
    /// were learnt in one pass). `UnlearnError` (model unchanged) for rows it cannot have learnt.
    #[pyo3(signature = (data, skip = 0))]
    fn unlearn<'py>(&mut self, py: Python<'py>, data: AnyRecordBatch, skip: u64) -> PyResult<Bound<'py, PyDict>> {
        let reader = Counted(data.into_reader()?);
        let model = &mut self.inner;
        let (counts, removed) = py.detach(|| model.unlearn_after(reader, skip)).map_err(CoreError::from)?;
        let d = counts_dict(py, &counts)?;
        d.set_item("unlearnt", removed)?;
        Ok(d)
    }

    /// Removes what another model of the same feature version and settings learnt (rows this
    /// one learnt too): the inverse of `merge`.
    fn unlearn_model(&mut self, other: PyRef<'_, PyModel>) -> PyResult<()> {
        Ok(self.inner.unlearn_model(&other.inner).map_err(CoreError::from)?)
    }

    /// Adds the statistics of a model trained on disjoint rows.
    fn merge(&mut self, other: PyRef<'_, PyModel>) -> PyResult<()> {
        Ok(self.inner.merge(&other.inner).map_err(CoreError::from)?)
    }

    /// A deep copy.
    fn copy(&self) -> Self {
        Self { inner: self.inner.clone() }
    }

    /// The versioned, checksummed byte form.
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &codec::to_bytes(&self.inner))
    }

    /// Loads bytes written by `to_bytes`.
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        Ok(Self { inner: codec::from_bytes(data).map_err(CoreError::from)? })
    }

    /// Names of the features of a version (default: `DEFAULT_FEATURE_VERSION`), in column order.
    #[staticmethod]
    #[pyo3(signature = (feature_version = FeatureSet::DEFAULT.version()))]
    fn feature_names(feature_version: u16) -> PyResult<Vec<String>> {
        Ok(FeatureSet::from_version(feature_version).map_err(CoreError::from)?.names())
    }

    /// Total weight of the rows learnt.
    #[getter]
    fn n_rows(&self) -> f64 {
        self.inner.n_rows()
    }

    /// Feature-set version.
    #[getter]
    fn feature_version(&self) -> u16 {
        self.inner.feature_version()
    }

    /// Ridge penalty.
    #[getter]
    fn ridge_alpha(&self) -> f64 {
        self.inner.settings.ridge_alpha
    }

    /// Half-life in months (inf = no forgetting).
    #[getter]
    fn half_life_months(&self) -> f64 {
        self.inner.settings.half_life_months
    }

    /// Newest ride month learnt, as `YYYY-MM`.
    #[getter]
    fn last_month(&self) -> Option<String> {
        self.inner.last_month.map(|m| Month::from_index(m).to_string())
    }
}

/// Per ride month, the sufficient statistics of the rows learnt (one feature version): a model
/// is a weighted sum over it (`compose`).
#[pyclass(name = "Ledger", module = "taxifare_flow._core")]
pub struct PyLedger {
    inner: Ledger,
}

#[pymethods]
impl PyLedger {
    #[new]
    #[pyo3(signature = (feature_version = FeatureSet::DEFAULT.version()))]
    fn new(feature_version: u16) -> PyResult<Self> {
        Ok(Self { inner: Ledger::new(FeatureSet::from_version(feature_version).map_err(CoreError::from)?) })
    }

    /// The ledger of raw ride rows, cleaned as for training (one cleaning state).
    #[staticmethod]
    #[pyo3(signature = (data, feature_version = FeatureSet::DEFAULT.version()))]
    fn of_rows(py: Python<'_>, data: AnyRecordBatch, feature_version: u16) -> PyResult<Self> {
        let set = FeatureSet::from_version(feature_version).map_err(CoreError::from)?;
        let reader = Counted(data.into_reader()?);
        let (inner, _) = py.detach(|| Ledger::of_rows(set, reader)).map_err(CoreError::from)?;
        Ok(Self { inner })
    }

    /// The ledger of rows `[first_row, first_row + row_count)` of a local source, read in Rust.
    #[staticmethod]
    #[pyo3(signature = (source_dir, first_row, row_count, feature_version = FeatureSet::DEFAULT.version()))]
    fn of_source(py: Python<'_>, source_dir: PathBuf, first_row: u64, row_count: u64, feature_version: u16) -> PyResult<Self> {
        let set = FeatureSet::from_version(feature_version).map_err(CoreError::from)?;
        let inner = py
            .detach(|| -> CoreResult<Ledger> {
                let r = source_rows(&source_dir, first_row, Some(row_count), crate::schema::BATCH_ROWS)?;
                Ok(Ledger::of_rows(set, r)?.0)
            })
            .map_err(PyErr::from)?;
        Ok(Self { inner })
    }

    /// Adds a ledger of other rows (same feature version).
    fn merge(&mut self, other: PyRef<'_, PyLedger>) -> PyResult<()> {
        Ok(self.inner.merge(&other.inner).map_err(CoreError::from)?)
    }

    /// `(month, weight of its rows)` per month, oldest first.
    fn rows(&self) -> Vec<(String, f64)> {
        self.inner.months().map(|(m, s)| (Month::from_index(m).to_string(), s.n())).collect()
    }

    /// The model of a weighting, its clock at `clock` (default: the newest month): every
    /// month at weight 1 (`half_life_months` inf, the exact model), `0.5^(age/half_life)` (the
    /// forgetting model), or weight 1 from month `since` on (a window; exact).
    #[pyo3(signature = (ridge_alpha = 1e-3, half_life_months = f64::INFINITY, since = None, clock = None))]
    fn compose(&self, ridge_alpha: f64, half_life_months: f64, since: Option<&str>, clock: Option<&str>) -> PyResult<PyModel> {
        let weighting = match since {
            Some(_) if half_life_months.is_finite() => {
                return Err(CoreError::Invalid("a window (since) is exact: give no half-life with it".into()).into())
            }
            Some(s) => Weighting::Since(month(s)?.index()),
            None => Weighting::HalfLife(half_life_months),
        };
        let clock = clock.map(month).transpose()?.map(Month::index);
        Ok(PyModel { inner: self.inner.compose(ridge_alpha, weighting, clock).map_err(CoreError::from)? })
    }

    /// Where this ledger and another differ beyond `tolerance` (relative), in words; `None`
    /// when they agree.
    #[pyo3(signature = (other, tolerance = 1e-9))]
    fn mismatch(&self, other: PyRef<'_, PyLedger>, tolerance: f64) -> Option<String> {
        self.inner.mismatch(&other.inner, tolerance)
    }

    /// The versioned, checksummed byte form.
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }

    /// Loads bytes written by `to_bytes`.
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        Ok(Self { inner: Ledger::from_bytes(data).map_err(CoreError::from)? })
    }

    /// A deep copy.
    fn copy(&self) -> Self {
        Self { inner: self.inner.clone() }
    }

    /// Feature-set version.
    #[getter]
    fn feature_version(&self) -> u16 {
        self.inner.feature_set().version()
    }

    /// Newest month, as `YYYY-MM`.
    #[getter]
    fn last_month(&self) -> Option<String> {
        self.inner.last_month().map(|m| Month::from_index(m).to_string())
    }
}

/// The core's version.
#[pyfunction]
fn version() -> &'static str {
    crate::version()
}

/// The Kaggle ride columns as a `pyarrow.Schema`: what a pending month file holds.
#[pyfunction]
fn ride_schema(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    PySchema::new(crate::schema::ride_schema()).into_pyarrow(py)
}

/// `row_id` then the ride columns, as a `pyarrow.Schema`: what the data source holds.
#[pyfunction]
fn source_schema(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    PySchema::new(crate::schema::source_schema()).into_pyarrow(py)
}

/// Progress reports from Rust to an optional Python callable `progress(done, total, rows)`,
/// taking the GIL briefly; a Python exception there (Ctrl-C included) stops the work, which
/// cleans up, and is then raised.
struct PyProgress {
    callable: Option<Py<PyAny>>,
    raised: Option<PyErr>,
}

impl PyProgress {
    fn new(callable: Option<Py<PyAny>>) -> Self {
        Self { callable, raised: None }
    }

    fn report(&mut self, p: Progress) -> bool {
        let outcome = Python::attach(|py| {
            py.check_signals()?;
            match &self.callable {
                Some(f) => f.call1(py, (p.done, p.total, p.rows)).map(drop),
                None => Ok(()),
            }
        });
        match outcome {
            Ok(()) => true,
            Err(e) => {
                self.raised = Some(e);
                false
            }
        }
    }

    /// The work's result, or the Python exception that stopped it.
    fn finish<T>(self, result: Result<T, HistoryError>) -> PyResult<T> {
        match (result, self.raised) {
            (Err(HistoryError::Cancelled), Some(e)) => Err(e),
            (r, _) => r.map_err(|e| CoreError::from(e).into()),
        }
    }
}

/// Writes the pending history (one Parquet file per month) and its noise-floor sidecar.
#[pyfunction]
#[pyo3(signature = (pending_dir, seed = 42, first_month = "2009-01", last_month = "2015-06", rows_per_month = None, keep_existing = true, progress = None, scenario = "plain"))]
#[allow(clippy::too_many_arguments)]
fn generate_history<'py>(
    py: Python<'py>,
    pending_dir: PathBuf,
    seed: u64,
    first_month: &str,
    last_month: &str,
    rows_per_month: Option<u64>,
    keep_existing: bool,
    progress: Option<Py<PyAny>>,
    scenario: &str,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let scenario = history_scenario(scenario)?;
    let opts = HistoryOptions { seed, first: month(first_month)?, last: month(last_month)?, rows_per_month, keep_existing, scenario };
    let mut reporter = PyProgress::new(progress);
    let result = py.detach(|| history::generate_history(&pending_dir, &opts, &mut |p| reporter.report(p)));
    let months = reporter.finish(result)?;
    months
        .iter()
        .map(|g| {
            let d = PyDict::new(py);
            d.set_item("month", g.month.to_string())?;
            d.set_item("rows", g.rows)?;
            d.set_item("generated", g.summary.is_some())?;
            if let Some(s) = &g.summary {
                d.set_item("clean_rows", s.clean_rows)?;
                d.set_item("noise_floor_mae", s.noise_floor_mae())?;
            }
            Ok(d)
        })
        .collect()
}

/// The scenario called `name`, or a `ValueError` listing the names.
fn history_scenario(name: &str) -> CoreResult<Scenario> {
    Scenario::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        CoreError::Invalid(format!("unknown history scenario {name:?}: one of {}", names.join(", ")))
    })
}

/// The names of the history scenarios, the default (`plain`) first.
#[pyfunction]
fn history_scenarios() -> Vec<&'static str> {
    Scenario::ALL.iter().map(|s| s.name()).collect()
}

/// The dated changes of a history scenario, oldest first: `start`, `end` (New York dates
/// `YYYY-MM-DD`) and `what`.
#[pyfunction]
fn scenario_changes<'py>(py: Python<'py>, scenario: &str) -> PyResult<Vec<Bound<'py, PyDict>>> {
    history_scenario(scenario)?
        .changes()
        .into_iter()
        .map(|c| [("start", c.start), ("end", c.end), ("what", c.what)].into_py_dict(py))
        .collect()
}

/// One generated month as a `pyarrow.RecordBatchReader` (with `expected_fare` when asked).
#[pyfunction]
#[pyo3(signature = (month_, rows, seed = 42, with_expected = false, batch_rows = crate::schema::BATCH_ROWS, scenario = "plain"))]
fn generate_month<'py>(py: Python<'py>, month_: &str, rows: u64, seed: u64, with_expected: bool, batch_rows: usize, scenario: &str) -> PyResult<Bound<'py, PyAny>> {
    let rides = crate::generator::MonthRides::new(seed, month(month_)?, rows, batch_rows, with_expected).with_scenario(history_scenario(scenario)?);
    PyRecordBatchReader::new(Box::new(rides)).into_pyarrow(py)
}

/// Imports a Kaggle-format CSV into the new folder `out_dir`, one Parquet file per month;
/// returns its provenance: `months` [(month, rows)], `rows_read`, `skipped` {reason: rows},
/// `malformed_values` {column: values}, `has_key`, `bytes`, `sha256`.
#[pyfunction]
#[pyo3(signature = (csv_path, out_dir, batch_rows = None, writer_budget = None, progress = None))]
fn import_kaggle_csv<'py>(
    py: Python<'py>,
    csv_path: PathBuf,
    out_dir: PathBuf,
    batch_rows: Option<usize>,
    writer_budget: Option<usize>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = ImportOptions::default();
    let opts = ImportOptions { batch_rows: batch_rows.unwrap_or(d.batch_rows), writer_budget: writer_budget.unwrap_or(d.writer_budget) };
    let mut reporter = PyProgress::new(progress);
    let result = py.detach(|| import::import_kaggle_csv(&csv_path, &out_dir, &opts, &mut |p| reporter.report(p)));
    let s = reporter.finish(result)?;
    let d = PyDict::new(py);
    d.set_item("months", s.months.iter().map(|(m, n)| (m.to_string(), *n)).collect::<Vec<_>>())?;
    d.set_item("rows_read", s.rows_read)?;
    d.set_item("skipped", s.skipped.into_iter().collect::<Vec<_>>().into_py_dict(py)?)?;
    d.set_item("malformed_values", s.malformed_values.into_iter().collect::<Vec<_>>().into_py_dict(py)?)?;
    d.set_item("has_key", s.has_key)?;
    d.set_item("bytes", s.bytes)?;
    d.set_item("sha256", s.sha256)?;
    Ok(d)
}

/// Everything wrong with the source, one sentence per problem naming its file; empty when the
/// source is sound. Cheap: names, footers, and a CSV file's first and last rows only.
#[pyfunction]
fn source_problems(py: Python<'_>, source_dir: PathBuf) -> PyResult<Vec<String>> {
    let found = py.detach(|| verify::problems(&source_dir)).map_err(CoreError::from)?;
    Ok(found.iter().map(ToString::to_string).collect())
}

fn file_dict<'py>(py: Python<'py>, f: &layout::MonthFile) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("month", f.month.to_string())?;
    d.set_item("first_row", f.first)?;
    d.set_item("end_row", f.end)?;
    d.set_item("rows", f.rows())?;
    d.set_item("path", f.path.clone())?;
    d.set_item("bytes", f.bytes())?;
    Ok(d)
}

/// Appends a pending month to the source with the next row_ids (atomic, never twice).
#[pyfunction]
#[pyo3(signature = (pending_file, month_, source_dir, format = "parquet"))]
fn append_month<'py>(py: Python<'py>, pending_file: PathBuf, month_: &str, source_dir: PathBuf, format: &str) -> PyResult<Bound<'py, PyDict>> {
    let (m, fmt) = (month(month_)?, Format::parse(format).map_err(CoreError::from)?);
    let f = py.detach(|| append::append_month(&pending_file, m, &source_dir, fmt)).map_err(CoreError::from)?;
    file_dict(py, &f)
}

/// Writes the month `append_month` would append now (the same checks and errors), synced
/// under a hidden name beside the source; `StagedMonth.publish` moves it in.
#[pyfunction]
#[pyo3(signature = (pending_file, month_, source_dir, format = "parquet"))]
fn stage_month(py: Python<'_>, pending_file: PathBuf, month_: &str, source_dir: PathBuf, format: &str) -> PyResult<PyStagedMonth> {
    let (m, fmt) = (month(month_)?, Format::parse(format).map_err(CoreError::from)?);
    let staged = py.detach(|| append::stage_month(&pending_file, m, &source_dir, fmt)).map_err(CoreError::from)?;
    Ok(PyStagedMonth { inner: Some(staged) })
}

/// A month staged beside the source (`stage_month`), not in it yet.
#[pyclass(name = "StagedMonth", module = "taxifare_flow._core")]
pub struct PyStagedMonth {
    inner: Option<append::Staged>,
}

#[pymethods]
impl PyStagedMonth {
    /// The month.
    #[getter]
    fn month(&self) -> Option<String> {
        self.inner.as_ref().map(|s| s.file.month.to_string())
    }

    /// Moves it into the source if the source has not changed since it was staged (the month
    /// file's dict); else removes it and returns `None`. Either way the staging is over.
    fn publish<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(staged) = self.inner.take() else { return Ok(None) };
        match py.detach(|| staged.publish()).map_err(CoreError::from)? {
            Some(f) => Ok(Some(file_dict(py, &f)?)),
            None => Ok(None),
        }
    }

    /// Removes the staged file (a no-op once published or discarded).
    fn discard(&mut self) {
        if let Some(staged) = self.inner.take() {
            staged.discard();
        }
    }
}

/// The month files of the source, ordered by row_id, checked for gaps and overlaps.
#[pyfunction]
fn source_files(py: Python<'_>, source_dir: PathBuf) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let files = layout::list(&source_dir).map_err(CoreError::from)?;
    files.iter().map(|f| file_dict(py, f)).collect()
}

/// Total rows of the source, from file names only.
#[pyfunction]
fn row_count(source_dir: PathBuf) -> PyResult<u64> {
    Ok(layout::row_count(&source_dir).map_err(CoreError::from)?)
}

/// Rows `[first_row, first_row + row_count)` of the source as a `pyarrow.RecordBatchReader`.
#[pyfunction]
#[pyo3(signature = (source_dir, first_row, row_count = None, batch_rows = crate::schema::BATCH_ROWS))]
fn read_rows<'py>(py: Python<'py>, source_dir: PathBuf, first_row: u64, row_count: Option<u64>, batch_rows: usize) -> PyResult<Bound<'py, PyAny>> {
    let r = source_rows(&source_dir, first_row, row_count, batch_rows)?;
    PyRecordBatchReader::new(Box::new(r)).into_pyarrow(py)
}

/// The first untrained row of `experiment`: the end of the chain of finished training runs' rows
/// `[first_row, first_row + row_count)` that starts at row 0, or 0.
#[pyfunction]
fn get_latest_trained_row(py: Python<'_>, tracking_db: String, experiment: String) -> PyResult<u64> {
    Ok(py.detach(|| watermark::get_latest_trained_row(&tracking_db, &experiment)).map_err(CoreError::from)?)
}

/// A DSN with its password replaced by `***`.
#[pyfunction]
fn mask_dsn(dsn: &str) -> String {
    watermark::mask_dsn(dsn)
}

/// `(X, y, cleaning)`: the features of version `feature_version` and the labels of the rows of
/// `data` that pass cleaning.
#[pyfunction]
#[pyo3(signature = (data, feature_version = FeatureSet::DEFAULT.version()))]
fn compute_features<'py>(py: Python<'py>, data: AnyRecordBatch, feature_version: u16) -> PyResult<(Bound<'py, PyArray2<f64>>, Bound<'py, PyArray1<f64>>, Bound<'py, PyDict>)> {
    let set = FeatureSet::from_version(feature_version).map_err(CoreError::from)?;
    let (batches, schema) = data.into_table()?.into_inner();
    let (x, y, c) = py.detach(|| features_of_batches(&schema, &batches, set)).map_err(CoreError::from)?;
    Ok((x.into_pyarray(py), y.into_pyarray(py), counts_dict(py, &c)?))
}

/// Content hash of the rows of any Arrow stream (independent of batching).
#[pyfunction]
fn hash_rows(py: Python<'_>, data: AnyRecordBatch) -> PyResult<String> {
    let reader = Counted(data.into_reader()?);
    Ok(py.detach(|| crate::lineage::hash_rows(reader)).map_err(CoreError::from)?)
}

#[pymodule]
mod _core {
    #[pymodule_export]
    use super::{
        append_month, compute_features, generate_history, generate_month, get_latest_trained_row, hash_rows, hash_source_rows,
        import_kaggle_csv, lifecycle_pass, lifecycle_pass_source, mask_dsn, read_rows, ride_schema, row_count,
        rows_decoded, source_files, source_problems, source_schema, stage_month, version, PyLedger, PyModel, PyStagedMonth,
    };

    #[pymodule_export]
    use super::{history_scenarios, scenario_changes, UnlearnError};

    #[pymodule_export]
    use super::profile::{profile_rows, profile_source_rows};

    #[pymodule_export]
    use super::warehouse::{
        warehouse_absorb, warehouse_hash, warehouse_hash_query, warehouse_holdout_query,
        warehouse_paired, warehouse_stats_query,
    };

    #[pymodule_export]
    use super::{
        DataSourceError, InvalidRunParamError, ModelError, MonthAlreadyPresentError, NotAnMlflowStoreError, SchemaError,
        TaxifareError, TrackingDbAuthError, TrackingDbCertificateError, TrackingDbTlsError, TrackingDbTlsNotOfferedError,
        TrackingDbTlsRequiredError, TrackingDbUnreachableError, TrackingStoreNotFoundError, TrackingDbError,
    };

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        // No level cache: Python may change logging levels at any time (tests, CLI flags).
        let _ = pyo3_log::Logger::new(m.py(), pyo3_log::Caching::Nothing)?.filter(log::LevelFilter::Info).install();
        m.add("__version__", crate::version())?;
        m.add("BATCH_ROWS", crate::schema::BATCH_ROWS)?;
        // DEFAULT_FEATURE_VERSION: what a new Model gets by default and a new lineage starts
        // with; FEATURE_VERSIONS: every version this build trains, predicts with and loads.
        use crate::kernel::feature_set::FeatureSet;
        m.add("DEFAULT_FEATURE_VERSION", FeatureSet::DEFAULT.version())?;
        let versions = pyo3::types::PyTuple::new(m.py(), FeatureSet::ALL.map(FeatureSet::version))?;
        m.add("FEATURE_VERSIONS", versions)?;
        m.add_submodule(&super::testing::module(m.py())?)?;
        Ok(())
    }
}
