//! Writes the generated pending history: one Parquet file per month plus the noise-floor
//! sidecar. (A real Kaggle-format CSV becomes the same layout through [`super::import`].)

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

use super::scenario::Scenario;
use super::{MonthRides, MonthSummary};
use crate::atomic::write_atomically;
use crate::calendar::Month;
use crate::month_file::{month_metadata, writer_properties};

/// Name of the noise-floor sidecar in the pending folder.
pub const NOISE_FLOOR_FILE: &str = "noise_floor.csv";

/// Errors of writing or importing a history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Arrow or Parquet failed on a file.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A CSV to import lacks what an import needs (a header, a required column, rows).
    #[error("{path}: {reason}")]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// What is wrong, in plain words.
        reason: String,
    },
    /// The progress callback asked to stop (Ctrl-C); every file written so far was removed.
    #[error("stopped before the end; nothing was kept")]
    Cancelled,
    /// A setting is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// Where a long write stands: `done` of `total` units (rows when generating, bytes read when
/// importing) and the rows written so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
    /// Rows so far.
    pub rows: u64,
}

/// Receives [`Progress`] about every [`PROGRESS_EVERY_ROWS`] rows and at the end; `false`
/// stops the work, which then removes what it wrote and fails with [`HistoryError::Cancelled`].
pub type ProgressFn<'a> = dyn FnMut(Progress) -> bool + Send + 'a;

/// Rows between two progress reports.
pub const PROGRESS_EVERY_ROWS: u64 = 1 << 20;

impl HistoryError {
    /// The I/O errors on `path`, for `map_err`.
    fn io_at(path: &Path) -> impl Fn(std::io::Error) -> Self + '_ {
        move |source| Self::Io { path: path.to_owned(), source }
    }

    /// An Arrow or Parquet error on `path`.
    fn format_at(path: &Path, e: impl std::fmt::Display) -> Self {
        Self::Format { path: path.to_owned(), reason: e.to_string() }
    }
}

/// The pending file of a month.
#[must_use]
pub fn pending_file(dir: &Path, month: Month) -> PathBuf {
    dir.join(format!("{month}.parquet"))
}

/// Options of [`generate_history`].
#[derive(Clone, Debug)]
pub struct HistoryOptions {
    /// Seed of the whole history.
    pub seed: u64,
    /// First month generated.
    pub first: Month,
    /// Last month generated (inclusive).
    pub last: Month,
    /// Rows of each month, or `None` for the Kaggle size spread over the Kaggle span.
    pub rows_per_month: Option<u64>,
    /// Keep months whose pending file already exists.
    pub keep_existing: bool,
    /// The fare changes no feature knows ([`Scenario::Plain`]: none).
    pub scenario: Scenario,
}

/// Per-month result of [`generate_history`].
#[derive(Clone, Debug)]
pub struct GeneratedMonth {
    /// The month.
    pub month: Month,
    /// Rows in its file.
    pub rows: u64,
    /// Its statistics (`None` when an existing file was kept).
    pub summary: Option<MonthSummary>,
}

/// Rows of a month of the generated history.
fn planned_rows(opts: &HistoryOptions, m: Month) -> u64 {
    let span = (super::LAST_MONTH.index() - super::FIRST_MONTH.index() + 1) as u64;
    let i = (m.index() - super::FIRST_MONTH.index()).max(0) as u64;
    opts.rows_per_month.unwrap_or_else(|| super::rows_for_month(super::KAGGLE_ROWS, span, i))
}

/// Rows of an existing Parquet file, from its footer.
fn rows_in(path: &Path) -> Result<u64, HistoryError> {
    let file = File::open(path).map_err(HistoryError::io_at(path))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| HistoryError::format_at(path, e))?;
    Ok(b.metadata().file_metadata().num_rows() as u64)
}

/// Generates the months of `opts` into `dir` (one Parquet file each, written atomically, its
/// month recorded in its metadata) and writes the noise-floor sidecar for the months generated
/// now. `progress` counts rows of the months generated now.
pub fn generate_history(dir: &Path, opts: &HistoryOptions, progress: &mut ProgressFn<'_>) -> Result<Vec<GeneratedMonth>, HistoryError> {
    if opts.last < opts.first {
        return Err(HistoryError::Invalid(format!("last month {} is before first month {}", opts.last, opts.first)));
    }
    std::fs::create_dir_all(dir).map_err(HistoryError::io_at(dir))?;
    let mut months = Vec::new();
    let mut m = opts.first;
    while m <= opts.last {
        months.push(m);
        m = m.next();
    }
    let keep = |m: Month| opts.keep_existing && pending_file(dir, m).exists();
    let total: u64 = months.iter().filter(|&&m| !keep(m)).map(|&m| planned_rows(opts, m)).sum();
    let (mut done, mut reported) = (0u64, 0u64);
    let mut out = Vec::new();
    for m in months {
        let path = pending_file(dir, m);
        if keep(m) {
            out.push(GeneratedMonth { month: m, rows: rows_in(&path)?, summary: None });
            continue;
        }
        let mut rides = MonthRides::new(opts.seed, m, planned_rows(opts, m), crate::schema::BATCH_ROWS, false).with_scenario(opts.scenario);
        let schema = rides.schema();
        let format = |e: &dyn std::fmt::Display| HistoryError::format_at(&path, e);
        write_atomically(
            &path,
            |file| {
                let mut w = ArrowWriter::try_new(file, schema, Some(writer_properties())).map_err(|e| format(&e))?;
                w.append_key_value_metadata(month_metadata(m));
                for batch in rides.by_ref() {
                    let batch = batch.map_err(|e| format(&e))?;
                    w.write(&batch).map_err(|e| format(&e))?;
                    done += batch.num_rows() as u64;
                    if done - reported >= PROGRESS_EVERY_ROWS {
                        reported = done;
                        if !progress(Progress { done, total, rows: done }) {
                            return Err(HistoryError::Cancelled);
                        }
                    }
                }
                w.into_inner().map_err(|e| format(&e))
            },
            HistoryError::io_at(&path),
        )?;
        log::info!("generated {m}: {} rows", rides.summary.rows);
        out.push(GeneratedMonth { month: m, rows: rides.summary.rows, summary: Some(rides.summary) });
    }
    if !progress(Progress { done, total, rows: done }) {
        return Err(HistoryError::Cancelled);
    }
    write_noise_floor(dir, &out)?;
    Ok(out)
}

/// Merges the summaries of newly generated months into the sidecar CSV.
fn write_noise_floor(dir: &Path, months: &[GeneratedMonth]) -> Result<(), HistoryError> {
    let path = dir.join(NOISE_FLOOR_FILE);
    let mut rows: BTreeMap<String, String> = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(&path) {
        for line in text.lines().skip(1) {
            if let Some((month, _)) = line.split_once(',') {
                rows.insert(month.to_owned(), line.to_owned());
            }
        }
    }
    for g in months {
        if let Some(s) = &g.summary {
            rows.insert(
                g.month.to_string(),
                format!("{},{},{},{:.6},{:.6}", g.month, s.rows, s.clean_rows, s.noise_floor_mae(), s.noise_floor_rmse()),
            );
        }
    }
    let io = HistoryError::io_at(&path);
    write_atomically(
        &path,
        |mut f| {
            writeln!(f, "month,rows,clean_rows,noise_floor_mae,noise_floor_rmse").map_err(&io)?;
            for line in rows.values() {
                writeln!(f, "{line}").map_err(&io)?;
            }
            Ok(f)
        },
        &io,
    )
}
