//! Bindings of `crate::kernel::profile`: the data-validation statistics as plain Python
//! values (the gate and the run artifact are Python's), and a statistics-only read.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use pyo3_arrow::input::AnyRecordBatch;

use super::{counts_dict, source_rows, CoreResult};
use crate::calendar::Month;
use crate::kernel::profile::{self, Profile, FIELDS, REASONS};
use crate::source::rows_read::Counted;

/// A profile as a list of month dicts (`core_types.MonthProfile`), oldest first; the month
/// is `None` for rows without a pickup time. Histograms are sparse `[bin, count]` pairs.
pub(super) fn profile_list<'py>(py: Python<'py>, p: &Profile) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for (month, m) in &p.months {
        let d = PyDict::new(py);
        d.set_item("month", month.map(|i| Month::from_index(i).to_string()))?;
        d.set_item("raw", m.raw)?;
        d.set_item("kept", m.kept)?;
        let drops = PyDict::new(py);
        for (name, n) in REASONS.iter().zip(m.drops) {
            drops.set_item(name, n)?;
        }
        d.set_item("drops", drops)?;
        let fields = PyDict::new(py);
        for (bins, f) in FIELDS.iter().zip(&m.fields) {
            let fd = PyDict::new(py);
            fd.set_item("count", f.count)?;
            fd.set_item("nan", f.nan)?;
            fd.set_item("zeros", f.zeros)?;
            fd.set_item("sum", f.sum)?;
            fd.set_item("lo", bins.lo)?;
            fd.set_item("width", bins.width)?;
            fd.set_item("bins", bins.bins)?;
            let hist: Vec<(usize, u64)> = f.hist.iter().enumerate().filter(|(_, &n)| n > 0).map(|(i, &n)| (i, n)).collect();
            fd.set_item("hist", hist)?;
            fields.set_item(bins.name, fd)?;
        }
        d.set_item("fields", fields)?;
        out.append(d)?;
    }
    Ok(out)
}

fn profile_dict<'py>(py: Python<'py>, counts: &crate::kernel::cleaning::CleaningCounts, p: &Profile) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("cleaning", counts_dict(py, counts)?)?;
    d.set_item("profile", profile_list(py, p)?)?;
    Ok(d)
}

/// The data-validation statistics alone of Arrow rows (nothing trained): `{"cleaning",
/// "profile"}`.
#[pyfunction]
pub(super) fn profile_rows<'py>(py: Python<'py>, data: AnyRecordBatch) -> PyResult<Bound<'py, PyDict>> {
    let reader = Counted(data.into_reader()?);
    let (counts, p) = py.detach(|| profile::profile_stream(reader)).map_err(super::CoreError::from)?;
    profile_dict(py, &counts, &p)
}

/// `profile_rows` over rows `[first_row, first_row + row_count)` of a local source.
#[pyfunction]
pub(super) fn profile_source_rows(py: Python<'_>, source_dir: PathBuf, first_row: u64, row_count: u64) -> PyResult<Bound<'_, PyDict>> {
    let (counts, p) = py
        .detach(|| -> CoreResult<_> { Ok(profile::profile_stream(source_rows(&source_dir, first_row, Some(row_count), 65_536)?)?) })
        .map_err(PyErr::from)?;
    profile_dict(py, &counts, &p)
}
