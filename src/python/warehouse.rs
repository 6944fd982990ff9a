//! Bindings of `crate::warehouse`: the SQL of a lifecycle computed in BigQuery, and what its
//! results do to the models. Python runs the queries; nothing here talks to BigQuery.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_arrow::input::AnyRecordBatch;

use super::{counts_dict, scores_dict, CoreError, CoreResult, PyModel};
use crate::kernel::feature_set::FeatureSet;
use crate::kernel::model::Model;
use crate::warehouse::query::{self, Scored, Slice};
use crate::warehouse::results;

fn scored(m: &mut Model) -> CoreResult<Scored> {
    Ok(Scored { set: m.feature_set, coef: m.coefficients()?.clone() })
}

fn batches(data: AnyRecordBatch) -> PyResult<Vec<arrow::array::RecordBatch>> {
    let reader = data.into_reader()?;
    Ok(reader.collect::<Result<Vec<_>, _>>().map_err(|e| CoreError::Warehouse(crate::warehouse::WarehouseError::Result(e.to_string())))?)
}

/// Query 1 of a lifecycle in the warehouse: training statistics of `[first_row,
/// holdout_start)` and of the holdout by ride month (feature version `feature_version`),
/// cleaning counts, production and the frozen model scored on the range, the lineage hash.
#[pyfunction]
#[pyo3(signature = (table, first_row, end_row, holdout_start, feature_version, production = None, frozen = None))]
pub(super) fn warehouse_stats_query(
    table: String,
    first_row: u64,
    end_row: u64,
    holdout_start: u64,
    feature_version: u16,
    production: Option<PyRef<'_, PyModel>>,
    frozen: Option<PyRef<'_, PyModel>>,
) -> PyResult<String> {
    let set = FeatureSet::from_version(feature_version).map_err(CoreError::from)?;
    let slice = Slice { table, first: first_row, end: end_row, holdout_start };
    let p = production.map(|m| scored(&mut m.inner.clone())).transpose()?;
    let f = frozen.map(|m| scored(&mut m.inner.clone())).transpose()?;
    Ok(query::stats_query(&slice, set, [p.as_ref(), f.as_ref()]).map_err(CoreError::from)?)
}

/// Applies query 1's rows: `challenger` learns the training segment, `holdout` (an empty
/// model like it) the holdout segment, month after month. Returns the cleaning counts, the
/// clean rows per segment, production's and the frozen model's scores, the lineage hash, the
/// data-validation statistics of the raw rows (`profile`, as the local pass's) and how many
/// numbers came back.
#[pyfunction]
pub(super) fn warehouse_absorb<'py>(
    py: Python<'py>,
    rows: AnyRecordBatch,
    mut challenger: PyRefMut<'py, PyModel>,
    mut holdout: PyRefMut<'py, PyModel>,
) -> PyResult<Bound<'py, PyDict>> {
    let batches = batches(rows)?;
    let numbers: usize = batches.iter().map(arrow::array::RecordBatch::num_rows).sum();
    let r = results::read_stats(&batches, challenger.inner.feature_set.p()).map_err(CoreError::from)?;
    r.add_to(0, &mut challenger.inner).map_err(CoreError::from)?;
    r.add_to(1, &mut holdout.inner).map_err(CoreError::from)?;
    let d = PyDict::new(py);
    d.set_item("cleaning", counts_dict(py, &r.counts)?)?;
    d.set_item("train_kept", r.kept(0))?;
    d.set_item("holdout_kept", r.kept(1))?;
    d.set_item("production", scores_dict(py, r.scores[0])?)?;
    d.set_item("frozen", scores_dict(py, r.scores[1])?)?;
    d.set_item("lineage_hash", r.lineage_hash)?;
    d.set_item("profile", super::profile::profile_list(py, &r.profile)?)?;
    d.set_item("numbers", numbers)?;
    Ok(d)
}

/// Query 2: the challenger (as trained so far) and production on the clean holdout rows.
#[pyfunction]
#[pyo3(signature = (table, first_row, end_row, holdout_start, challenger, production = None))]
pub(super) fn warehouse_holdout_query(
    table: String,
    first_row: u64,
    end_row: u64,
    holdout_start: u64,
    challenger: PyRef<'_, PyModel>,
    production: Option<PyRef<'_, PyModel>>,
) -> PyResult<String> {
    let slice = Slice { table, first: first_row, end: end_row, holdout_start };
    let c = scored(&mut challenger.inner.clone())?;
    let p = production.map(|m| scored(&mut m.inner.clone())).transpose()?;
    Ok(query::holdout_query(&slice, &c, p.as_ref()).map_err(CoreError::from)?)
}

/// Reads query 2's rows: what the promotion policy needs (`promotion.Paired`): the clean
/// holdout rows, the sums of the challenger's and production's absolute errors on them, and
/// of their per-row differences (production − challenger) and squares.
#[pyfunction]
pub(super) fn warehouse_paired<'py>(py: Python<'py>, rows: AnyRecordBatch, has_production: bool) -> PyResult<Bound<'py, PyDict>> {
    let p = results::read_holdout(&batches(rows)?, has_production).map_err(CoreError::from)?;
    let d = PyDict::new(py);
    d.set_item("n", p.challenger.n)?;
    d.set_item("challenger_sum", p.challenger.sum_abs())?;
    d.set_item("production_sum", p.production.map(|m| m.sum_abs()))?;
    d.set_item("diff_sum", p.diff_sum)?;
    d.set_item("diff_sq_sum", p.diff_sq_sum)?;
    Ok(d)
}

/// The features (version `feature_version`) of the clean rows of `[first_row, end_row)` as
/// the warehouse computes them: rows `(row_id, i, v)` of the non-zero columns.
#[pyfunction]
pub(super) fn warehouse_features_query(table: String, first_row: u64, end_row: u64, feature_version: u16) -> PyResult<String> {
    let set = FeatureSet::from_version(feature_version).map_err(CoreError::from)?;
    Ok(query::features_query(&table, first_row, end_row, set).map_err(CoreError::from)?)
}

/// The lineage hash of `[first_row, end_row)` computed in BigQuery (what a warehouse pass
/// records), as one query.
#[pyfunction]
pub(super) fn warehouse_hash_query(table: String, first_row: u64, end_row: u64) -> PyResult<String> {
    Ok(query::hash_query(&table, first_row, end_row).map_err(CoreError::from)?)
}

/// Reads a `warehouse_hash_query`'s row: the lineage digest (`bq:…`).
#[pyfunction]
pub(super) fn warehouse_hash(rows: AnyRecordBatch) -> PyResult<String> {
    Ok(results::read_hash(&batches(rows)?).map_err(CoreError::from)?)
}
