//! The local data source: one file per arrived month, rows numbered by an immutable,
//! contiguous `row_id`. This module is the only code that maps `row_id`s to files and row
//! groups.

pub mod append;
pub mod layout;
pub mod reader;

use std::path::PathBuf;

/// Errors of the data source, each naming the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source folder does not exist.
    #[error("data source not found: {0}")]
    Missing(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not valid Parquet/CSV or is truncated.
    #[error("{path}: corrupt or truncated file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// A file lacks a required column or has it with the wrong type.
    #[error("{path}: wrong schema: {reason}")]
    Schema {
        /// The file.
        path: PathBuf,
        /// Which column and why.
        reason: String,
    },
    /// Files do not tile `0..row_count` exactly.
    #[error("row_id {kind} in the data source: {detail}")]
    Continuity {
        /// `gap` or `overlap`.
        kind: &'static str,
        /// Which files and ranges.
        detail: String,
    },
    /// The rows inside a file do not carry the `row_id`s its name promises.
    #[error("{path}: {detail}")]
    RowIdMismatch {
        /// The file.
        path: PathBuf,
        /// What was expected and found.
        detail: String,
    },
    /// A month is already in the source (appending it again would duplicate rows).
    #[error("month {month} is already in the data source ({path})")]
    AlreadyPresent {
        /// The month.
        month: String,
        /// Its file.
        path: PathBuf,
    },
    /// A month older than the newest month of the source cannot arrive any more.
    #[error("month {month} is older than the newest month in the data source ({newest})")]
    OutOfOrder {
        /// The month offered.
        month: String,
        /// The newest month present.
        newest: String,
    },
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
}
