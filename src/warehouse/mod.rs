//! Training inside BigQuery: the lifecycle's statistics, scores and lineage hash computed by
//! SQL generated from the feature spec (`crate::spec`), so that rides never leave the
//! warehouse; only aggregates do. `query` writes the SQL, `results` turns what comes back
//! into the kernel's models and metrics.

pub mod query;
pub mod results;
pub mod sql;

/// Errors of the warehouse path.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    /// A bad argument (table name, row range).
    #[error("{0}")]
    Invalid(String),
    /// What a query returned is not what it was asked for.
    #[error("unexpected query result: {0}")]
    Result(String),
    /// The kernel refused the statistics.
    #[error(transparent)]
    Kernel(#[from] crate::kernel::KernelError),
}
