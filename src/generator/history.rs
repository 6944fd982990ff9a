//! Writes the pending history: one Parquet file per month plus the noise-floor sidecar, and
//! imports a real Kaggle-format CSV into the same layout.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::compute::take_record_batch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;

use super::{MonthRides, MonthSummary};
use crate::atomic::write_atomically;
use crate::calendar::{self, Month};
use crate::schema;

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
    /// A setting is out of range.
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug)]
struct Wrapped(HistoryError);
impl From<std::io::Error> for Wrapped {
    fn from(e: std::io::Error) -> Self {
        Self(HistoryError::Io { path: PathBuf::new(), source: e })
    }
}
impl From<ParquetError> for Wrapped {
    fn from(e: ParquetError) -> Self {
        Self(HistoryError::Format { path: PathBuf::new(), reason: e.to_string() })
    }
}
impl From<arrow::error::ArrowError> for Wrapped {
    fn from(e: arrow::error::ArrowError) -> Self {
        Self(HistoryError::Format { path: PathBuf::new(), reason: e.to_string() })
    }
}
fn at(path: &Path) -> impl FnOnce(Wrapped) -> HistoryError + '_ {
    move |Wrapped(e)| match e {
        HistoryError::Io { source, .. } => HistoryError::Io { path: path.to_owned(), source },
        HistoryError::Format { reason, .. } => HistoryError::Format { path: path.to_owned(), reason },
        other => other,
    }
}

/// Parquet settings of every file this project writes: row groups small enough to skip.
#[must_use]
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(131_072)).build()
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
}

/// Per-month result of [`generate_history`].
#[derive(Clone, Debug)]
pub struct GeneratedMonth {
    /// The month.
    pub month: Month,
    /// Its statistics (`None` when an existing file was kept).
    pub summary: Option<MonthSummary>,
}

/// Generates the months of `opts` into `dir` (one Parquet file each, written atomically) and
/// writes the noise-floor sidecar for the months generated now.
pub fn generate_history(dir: &Path, opts: &HistoryOptions) -> Result<Vec<GeneratedMonth>, HistoryError> {
    if opts.last < opts.first {
        return Err(HistoryError::Invalid(format!("last month {} is before first month {}", opts.last, opts.first)));
    }
    std::fs::create_dir_all(dir).map_err(|e| HistoryError::Io { path: dir.to_owned(), source: e })?;
    let span = (super::LAST_MONTH.index() - super::FIRST_MONTH.index() + 1) as u64;
    let mut out = Vec::new();
    let mut m = opts.first;
    while m <= opts.last {
        let path = pending_file(dir, m);
        if opts.keep_existing && path.exists() {
            out.push(GeneratedMonth { month: m, summary: None });
        } else {
            let i = (m.index() - super::FIRST_MONTH.index()).max(0) as u64;
            let rows = opts.rows_per_month.unwrap_or_else(|| super::rows_for_month(super::KAGGLE_ROWS, span, i));
            let mut rides = MonthRides::new(opts.seed, m, rows, 65_536, false);
            let schema = rides.schema();
            write_atomically(&path, |file| {
                let mut w = ArrowWriter::try_new(file, schema, Some(writer_properties()))?;
                for batch in rides.by_ref() {
                    w.write(&batch?)?;
                }
                Ok::<File, Wrapped>(w.into_inner()?)
            })
            .map_err(at(&path))?;
            log::info!("generated {m}: {} rows", rides.summary.rows);
            out.push(GeneratedMonth { month: m, summary: Some(rides.summary) });
        }
        m = m.next();
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
    write_atomically(&path, |mut f| {
        writeln!(f, "month,rows,clean_rows,noise_floor_mae,noise_floor_rmse")?;
        for line in rows.values() {
            writeln!(f, "{line}")?;
        }
        Ok::<File, Wrapped>(f)
    })
    .map_err(at(&path))
}

/// Imports a Kaggle-format CSV (`train.csv` or any file with its columns) as the pending
/// history: rows are split by the month of `pickup_datetime`, keeping file order within a
/// month. Rows whose time does not parse are counted and skipped. Returns rows per month and
/// the number skipped.
pub fn import_kaggle_csv(csv: &Path, dir: &Path, batch_rows: usize) -> Result<(Vec<(Month, u64)>, u64), HistoryError> {
    std::fs::create_dir_all(dir).map_err(|e| HistoryError::Io { path: dir.to_owned(), source: e })?;
    let file = File::open(csv).map_err(|e| HistoryError::Io { path: csv.to_owned(), source: e })?;
    let schema = schema::ride_schema();
    // Read every column as text, then cast: a malformed number becomes a null that cleaning
    // counts and drops, instead of failing the whole import.
    let text = Arc::new(Schema::new(schema.fields().iter().map(|f| Field::new(f.name(), DataType::Utf8, true)).collect::<Vec<_>>()));
    let reader = arrow::csv::ReaderBuilder::new(text)
        .with_header(true)
        .with_truncated_rows(true)
        .with_batch_size(batch_rows.max(1))
        .build(file)
        .map_err(|e| HistoryError::Format { path: csv.to_owned(), reason: e.to_string() })?;
    let mut writers: BTreeMap<Month, (PathBuf, ArrowWriter<File>, u64)> = BTreeMap::new();
    let (mut skipped, mut malformed) = (0u64, 0u64);
    let lenient = CastOptions { safe: true, ..Default::default() };
    for batch in reader {
        let raw = batch.map_err(|e| HistoryError::Format { path: csv.to_owned(), reason: e.to_string() })?;
        let mut cols = Vec::with_capacity(raw.num_columns());
        for (c, f) in raw.columns().iter().zip(schema.fields()) {
            let cast = cast_with_options(c, f.data_type(), &lenient)
                .map_err(|e| HistoryError::Format { path: csv.to_owned(), reason: e.to_string() })?;
            malformed += (cast.null_count() - c.null_count()) as u64;
            cols.push(cast);
        }
        let batch = RecordBatch::try_new(schema.clone(), cols)
            .map_err(|e| HistoryError::Format { path: csv.to_owned(), reason: e.to_string() })?;
        let dt = batch.column(2).as_string::<i32>();
        let mut by_month: BTreeMap<Month, Vec<u32>> = BTreeMap::new();
        for i in 0..batch.num_rows() {
            match (!dt.is_null(i)).then(|| calendar::parse_datetime(dt.value(i).as_bytes())).flatten() {
                Some(ts) => by_month.entry(Month::from_index(calendar::month_index_of(ts))).or_default().push(i as u32),
                None => skipped += 1,
            }
        }
        for (month, idx) in by_month {
            if !writers.contains_key(&month) {
                let path = pending_file(dir, month);
                let tmp = crate::atomic::temp_path(&path);
                let f = File::create(&tmp).map_err(|e| HistoryError::Io { path: tmp.clone(), source: e })?;
                let w = ArrowWriter::try_new(f, schema.clone(), Some(writer_properties()))
                    .map_err(|e| HistoryError::Format { path: tmp.clone(), reason: e.to_string() })?;
                writers.insert(month, (path, w, 0));
            }
            let Some((path, w, n)) = writers.get_mut(&month) else { continue };
            let part = take_record_batch(&batch, &UInt32Array::from(idx))
                .map_err(|e| HistoryError::Format { path: path.clone(), reason: e.to_string() })?;
            *n += part.num_rows() as u64;
            w.write(&part).map_err(|e| HistoryError::Format { path: path.clone(), reason: e.to_string() })?;
        }
    }
    let mut out = Vec::new();
    for (month, (path, w, n)) in writers {
        let tmp = crate::atomic::temp_path(&path);
        let f = w.into_inner().map_err(|e| HistoryError::Format { path: tmp.clone(), reason: e.to_string() })?;
        f.sync_all().map_err(|e| HistoryError::Io { path: tmp.clone(), source: e })?;
        std::fs::rename(&tmp, &path).map_err(|e| HistoryError::Io { path: path.clone(), source: e })?;
        out.push((month, n));
    }
    if skipped > 0 {
        log::warn!("{}: skipped {skipped} rows whose pickup_datetime does not parse", csv.display());
    }
    if malformed > 0 {
        log::warn!("{}: {malformed} malformed values kept as nulls (cleaning drops those rows)", csv.display());
    }
    Ok((out, skipped))
}
