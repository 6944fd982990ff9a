//! The training kernel: cleaning, features, exact incremental least squares, prediction and
//! metrics, over Arrow batches of raw ride columns.

pub mod cleaning;
pub mod codec;
pub mod columns;
pub mod feature_set;
pub mod features;
pub mod features_v2;
pub mod features_v3;
pub mod holdout;
pub mod ledger;
pub mod metrics;
pub mod model;
pub(crate) mod parallel;
pub mod pass;
pub(crate) mod pipeline;
pub mod profile;
pub mod stats;
pub mod unlearn;

/// Errors of the kernel.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A required column is missing or has a type that cannot be used.
    #[error("column {column:?}: {reason}")]
    Schema {
        /// The column.
        column: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// No row survived cleaning (or none was given) where some are needed.
    #[error("no usable rows: {0}")]
    Empty(String),
    /// Prediction was asked of a model that has seen no data.
    #[error("the model has not been fitted on any row")]
    NotFitted,
    /// Two models or a model and its input do not agree.
    #[error("incompatible: {0}")]
    Incompatible(String),
    /// A bad setting.
    #[error("invalid setting: {0}")]
    Invalid(String),
    /// Serialised bytes that cannot be loaded.
    #[error("cannot load model: {0}")]
    Format(String),
    /// The input stream failed.
    #[error("reading input: {0}")]
    Input(String),
    /// Rows asked to be unlearnt that the model cannot have learnt (newer than its newest
    /// month, or more weight than it holds); the model is unchanged.
    #[error("cannot unlearn: {0}")]
    NotLearnt(String),
}

impl From<arrow::error::ArrowError> for KernelError {
    /// A failed input stream, as [`KernelError::Input`]: the reader's own error when Arrow
    /// wraps one (a data-source or I/O error says which file), else Arrow's.
    fn from(e: arrow::error::ArrowError) -> Self {
        match e {
            arrow::error::ArrowError::ExternalError(inner) => Self::Input(inner.to_string()),
            other => Self::Input(other.to_string()),
        }
    }
}
