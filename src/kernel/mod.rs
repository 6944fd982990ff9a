//! The training kernel: cleaning, features, exact incremental least squares, prediction and
//! metrics, over Arrow batches of raw ride columns.

pub mod cleaning;
pub mod codec;
pub mod columns;
pub mod feature_set;
pub mod features;
pub mod features_v2;
pub mod metrics;
pub mod model;
pub mod pass;
pub(crate) mod pipeline;
pub mod profile;
pub mod stats;

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
}
