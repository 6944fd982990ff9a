//! The Rust core of taxifare-flow: reading the MLflow tracking database, slicing the data
//! source by `row_id`, cleaning, features, the incremental least-squares kernel, metrics and
//! the synthetic ride history. `python` holds the only PyO3 code.

pub mod atomic;
pub mod calendar;
pub mod fare_rules;
pub mod fnv;
pub mod generator;
pub mod geo;
pub mod kernel;
pub mod lineage;
pub mod month_file;
#[cfg(feature = "python")]
mod python;
pub mod schema;
pub mod source;
pub mod spec;
pub mod warehouse;
pub mod watermark;

/// The crate version, as Python sees it in `taxifare_flow._core.__version__`.
#[must_use]
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
