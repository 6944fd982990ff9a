//! The local data source: one file per arrived month, rows numbered by an immutable,
//! contiguous `row_id`. This module is the only code that maps `row_id`s to files and row
//! groups.

pub mod append;
pub mod layout;
pub mod reader;
pub mod rows_read;
pub mod splice;
pub mod verify;

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
    /// Writing a file failed for a reason other than the OS's.
    #[error("{path}: cannot be written: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the encoder said.
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
    /// A file's name gives it no rows.
    #[error("{path}: its name gives an empty row_id range {first}..{end}, but a month file always holds rows (remove the file)")]
    EmptyRange {
        /// The file.
        path: PathBuf,
        /// First `row_id` of the name.
        first: u64,
        /// End `row_id` of the name.
        end: u64,
    },
    /// Months do not strictly increase along `row_id`.
    #[error("{path}: month {month} follows {previous} (month {previous_month}) in row_id order, but months must strictly increase")]
    MonthOrder {
        /// The file out of order.
        path: PathBuf,
        /// Its month.
        month: String,
        /// The file before it.
        previous: PathBuf,
        /// The month of the file before it.
        previous_month: String,
    },
    /// A file's rows are not of the month its name states.
    #[error("{path}: its rows are of month {recorded} ({how}) but its name says {named}")]
    MonthMismatch {
        /// The file.
        path: PathBuf,
        /// The month found in the file.
        recorded: String,
        /// Where that month was found.
        how: &'static str,
        /// The month of its name.
        named: String,
    },
    /// A file's footer or first and last rows lack what the check needs.
    #[error("{path}: cannot be checked: {reason}")]
    Unverifiable {
        /// The file.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// A pending month file holds no rows: it cannot arrive.
    #[error("{path}: holds no rows, so month {month} cannot arrive")]
    EmptyMonth {
        /// The pending file.
        path: PathBuf,
        /// Its month.
        month: String,
    },
    /// The source failed its content check; nothing was changed.
    #[error("{first}{}", if *.more > 0 { format!(" (and {} more: `taxifare check` lists them)", .more) } else { String::new() })]
    Unsound {
        /// The first problem found.
        first: Box<SourceError>,
        /// How many more.
        more: usize,
    },
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
}
