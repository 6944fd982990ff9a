//! `_core._testing`: bindings only the tests use, kept out of the public module.

use pyo3::prelude::*;

/// Logs one line at INFO from Rust (target `_core.python::testing`), to check the log bridge.
#[pyfunction]
fn log_hello(message: &str) {
    log::info!("{message}");
}

/// The submodule, added to `_core` by its init.
pub(super) fn module<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyModule>> {
    let m = PyModule::new(py, "_testing")?;
    m.add_function(wrap_pyfunction!(log_hello, &m)?)?;
    m.add_function(wrap_pyfunction!(super::warehouse::warehouse_features_query, &m)?)?;
    Ok(m)
}
