//! Imports a Kaggle-format CSV (`train.csv`: 55 M rows, 5.7 GB, not sorted by time) as month
//! files in the pending layout, in one streaming pass with bounded memory.
//!
//! - Columns are found by their header names; extra columns are ignored, `key` may be absent
//!   (it is then null: cleaning only uses it to drop duplicated rides).
//! - Rows are split by the month of `pickup_datetime`, file order kept within a month. A row
//!   whose time is missing or does not parse is skipped and counted by reason; a malformed
//!   number becomes a null that cleaning counts and drops (the row keeps its place).
//! - Every month's writer is open at once (the file is unordered), so their buffered row groups
//!   share one memory budget: when the sum passes it, the largest buffer is written out as a
//!   row group. Memory is then the budget plus the few batches in flight, whatever the file's
//!   size.
//! - Parsing, Parquet encoding and the file's SHA-256 run on three threads.
//! - Everything is written into a folder the import creates and, on any failure, removes.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{cast_with_options, take_record_batch, CastOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use super::history::{pending_file, HistoryError, Progress, ProgressFn, PROGRESS_EVERY_ROWS};
use crate::calendar::{self, Month};
use crate::month_file::{month_metadata, writer_properties};
use crate::schema;

/// Options of [`import_kaggle_csv`].
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// CSV rows decoded at a time.
    pub batch_rows: usize,
    /// Bytes all month writers may buffer together before the largest writes a row group.
    pub writer_budget: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self { batch_rows: schema::BATCH_ROWS, writer_budget: 64 << 20 }
    }
}

/// What an import read and wrote: the provenance of the history it made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Rows written per month, oldest first.
    pub months: Vec<(Month, u64)>,
    /// Data rows read (written + skipped).
    pub rows_read: u64,
    /// Rows skipped, by reason: `missing_time`, `unparseable_time`.
    pub skipped: BTreeMap<&'static str, u64>,
    /// Values kept as nulls because they do not parse, by column.
    pub malformed_values: BTreeMap<&'static str, u64>,
    /// Whether the file has a `key` column.
    pub has_key: bool,
    /// Size of the file.
    pub bytes: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

/// Imports `csv` into the new folder `out_dir` (which must not exist: the import creates it,
/// and removes it with everything in it when it fails, so nothing half-made is left), one
/// `YYYY-MM.parquet` per month with its month recorded. `progress` counts bytes read.
pub fn import_kaggle_csv(csv: &Path, out_dir: &Path, opts: &ImportOptions, progress: &mut ProgressFn<'_>) -> Result<ImportSummary, HistoryError> {
    std::fs::create_dir(out_dir).map_err(|e| HistoryError::Io { path: out_dir.to_owned(), source: e })?;
    let result = import_into(csv, out_dir, opts, progress);
    if result.is_err() {
        if let Err(e) = std::fs::remove_dir_all(out_dir) {
            log::warn!("{}: could not remove the unfinished import: {e}", out_dir.display());
        }
    }
    result
}

/// A reader that counts the bytes it passes on (for progress).
struct Counting<R> {
    inner: R,
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// SHA-256 (hex) and size of `path`, read on its own (from the page cache, as the parser reads
/// the same bytes at the same time); gives up when `stop` is set.
fn sha256_of(path: &Path, stop: &AtomicBool) -> Result<(String, u64), HistoryError> {
    let io = |e: std::io::Error| HistoryError::Io { path: path.to_owned(), source: e };
    let mut file = File::open(path).map_err(io)?;
    let (mut hasher, mut buf, mut read) = (Sha256::new(), vec![0u8; 1 << 20], 0u64);
    while !stop.load(Ordering::Relaxed) {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            return Ok((hasher.finalize().iter().map(|b| format!("{b:02x}")).collect(), read));
        }
        hasher.update(&buf[..n]);
        read += n as u64;
    }
    Err(HistoryError::Cancelled)
}

fn csv_error(csv: &Path, reason: impl Into<String>) -> HistoryError {
    HistoryError::Csv { path: csv.to_owned(), reason: reason.into() }
}

/// Where each ride column is in the file's header (`None`: absent, allowed for `key` only).
fn locate_columns(csv: &Path, header: &[String]) -> Result<Vec<Option<usize>>, HistoryError> {
    if header.iter().all(|h| h.trim().is_empty()) {
        return Err(csv_error(csv, "is empty: a Kaggle-format CSV starts with a header line"));
    }
    let names: Vec<&str> = header.iter().map(|h| h.trim_start_matches('\u{feff}').trim()).collect();
    schema::ride_schema()
        .fields()
        .iter()
        .map(|f| {
            let mut at = names.iter().enumerate().filter(|(_, n)| **n == f.name().as_str()).map(|(i, _)| i);
            match (at.next(), at.next()) {
                (Some(_), Some(_)) => Err(csv_error(csv, format!("has the column {:?} twice in its header", f.name()))),
                (Some(i), None) => Ok(Some(i)),
                (None, _) if f.name() == schema::KEY => Ok(None),
                (None, _) => Err(csv_error(
                    csv,
                    format!("has no column {:?} (its header: {}); a Kaggle-format CSV needs {}", f.name(), names.join(","), required_names()),
                )),
            }
        })
        .collect()
}

fn required_names() -> String {
    let schema = schema::ride_schema();
    schema.fields().iter().map(|f| f.name().as_str()).filter(|n| *n != schema::KEY).collect::<Vec<_>>().join(", ")
}

/// One month's output: its temporary file and rows so far.
struct MonthOut {
    tmp: PathBuf,
    writer: ArrowWriter<File>,
    rows: u64,
}

fn import_into(csv: &Path, out_dir: &Path, opts: &ImportOptions, progress: &mut ProgressFn<'_>) -> Result<ImportSummary, HistoryError> {
    let io = |e: std::io::Error| HistoryError::Io { path: csv.to_owned(), source: e };
    let format_err = |e: &dyn std::fmt::Display| HistoryError::Format { path: csv.to_owned(), reason: e.to_string() };
    let bytes = std::fs::metadata(csv).map_err(io)?.len();
    let (header, _) = arrow::csv::reader::Format::default()
        .with_header(true)
        .infer_schema(File::open(csv).map_err(io)?, Some(0))
        .map_err(|e| format_err(&e))?;
    let header: Vec<String> = header.fields().iter().map(|f| f.name().clone()).collect();
    let located = locate_columns(csv, &header)?;
    // Every column read as text under a name of its own (headers may repeat foreign names),
    // only the ride columns decoded, in the ride schema's order.
    let text = Arc::new(Schema::new((0..header.len()).map(|i| Field::new(format!("c{i}"), DataType::Utf8, true)).collect::<Vec<_>>()));
    let projection: Vec<usize> = located.iter().flatten().copied().collect();
    let read = Rc::new(Cell::new(0u64));
    let counting = Counting { inner: File::open(csv).map_err(io)?, read: Rc::clone(&read) };
    let reader = arrow::csv::ReaderBuilder::new(text)
        .with_header(true)
        .with_truncated_rows(true)
        .with_batch_size(opts.batch_rows.max(1))
        .with_projection(projection)
        .build_buffered(BufReader::with_capacity(1 << 20, counting))
        .map_err(|e| format_err(&e))?;

    let mut summary = ImportSummary { has_key: located[0].is_some(), bytes, ..Default::default() };
    // Three stages on their own threads: this one reads, decodes and splits by month; one
    // encodes and compresses Parquet (at most two split batches wait in between); one hashes
    // the file.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Split>(2);
    let budget = opts.writer_budget;
    let stop = AtomicBool::new(false);
    let (parsed, written, hashed) = std::thread::scope(|scope| {
        let spawn = |name: &str| std::thread::Builder::new().name(name.to_owned());
        let writer = spawn("import-parquet").spawn_scoped(scope, move || write_months(rx, out_dir, budget));
        let hasher = spawn("import-sha256").spawn_scoped(scope, || sha256_of(csv, &stop));
        let (writer, hasher) = match (writer, hasher) {
            (Ok(w), Ok(h)) => (w, h),
            (Err(e), _) | (_, Err(e)) => {
                stop.store(true, Ordering::Relaxed);
                return (Err(HistoryError::Io { path: csv.to_owned(), source: e }), Ok(Default::default()), Ok(Default::default()));
            }
        };
        let parsed = parse(csv, reader, &located, tx, &mut summary, &mut |rows| progress(Progress { done: read.get(), total: bytes, rows }));
        if parsed.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let written = writer.join().unwrap_or_else(|_| panicked("Parquet writer"));
        let hashed = hasher.join().unwrap_or_else(|_| panicked("hashing"));
        (parsed, written, hashed)
    });
    // A writer failure comes first: the parser only stopped because the writer was gone.
    let (months, malformed) = written?;
    parsed?;
    summary.malformed_values = malformed;
    let (sha256, hashed_bytes) = hashed?;
    if summary.rows_read == 0 {
        return Err(csv_error(csv, "has a header but no rows"));
    }
    if months.is_empty() {
        return Err(csv_error(csv, format!("none of its {} rows has a readable pickup_datetime (YYYY-MM-DD HH:MM:SS UTC)", summary.rows_read)));
    }
    if read.get() != bytes || hashed_bytes != bytes {
        return Err(csv_error(csv, format!("changed while it was read ({} bytes read, {bytes} expected)", read.get().max(hashed_bytes))));
    }
    summary.sha256 = sha256;
    for (month, out) in months {
        let file = out.writer.into_inner().map_err(|e| HistoryError::Format { path: out.tmp.clone(), reason: e.to_string() })?;
        file.sync_all().map_err(|e| HistoryError::Io { path: out.tmp.clone(), source: e })?;
        let target = pending_file(out_dir, month);
        std::fs::rename(&out.tmp, &target).map_err(|e| HistoryError::Io { path: target.clone(), source: e })?;
        summary.months.push((month, out.rows));
    }
    if !progress(Progress { done: bytes, total: bytes, rows: summary.rows_read }) {
        return Err(HistoryError::Cancelled);
    }
    Ok(summary)
}

fn panicked<T>(what: &str) -> Result<T, HistoryError> {
    Err(HistoryError::Invalid(format!("the {what} thread panicked")))
}

/// A batch with its rows ordered by month, and each month's `(month, first row, rows)`.
struct Split {
    batch: RecordBatch,
    spans: Vec<(Month, usize, usize)>,
}

/// The parsing stage: decodes every batch as text in the ride columns' order, splits it by
/// month and hands it to the writer; `progress(rows)` about every [`PROGRESS_EVERY_ROWS`]
/// rows (`false` stops).
fn parse<R: std::io::BufRead>(
    csv: &Path,
    reader: arrow::csv::reader::BufReader<R>,
    located: &[Option<usize>],
    tx: std::sync::mpsc::SyncSender<Split>,
    summary: &mut ImportSummary,
    progress: &mut dyn FnMut(u64) -> bool,
) -> Result<(), HistoryError> {
    let format_err = |e: &dyn std::fmt::Display| HistoryError::Format { path: csv.to_owned(), reason: e.to_string() };
    let text = text_schema();
    let mut reported = 0u64;
    for raw in reader {
        let raw = raw.map_err(|e| format_err(&e))?;
        let n = raw.num_rows();
        let mut next_raw = 0;
        let cols: Vec<ArrayRef> = located
            .iter()
            .map(|at| match at {
                None => new_null_array(&DataType::Utf8, n),
                Some(_) => {
                    next_raw += 1;
                    Arc::clone(raw.column(next_raw - 1))
                }
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&text), cols).map_err(|e| format_err(&e))?;
        summary.rows_read += n as u64;
        let split = split_by_month(&batch, summary).map_err(|e| format_err(&e))?;
        if tx.send(split).is_err() {
            return Err(HistoryError::Invalid("the Parquet writer stopped".into()));
        }
        if summary.rows_read - reported >= PROGRESS_EVERY_ROWS {
            reported = summary.rows_read;
            if !progress(summary.rows_read) {
                return Err(HistoryError::Cancelled);
            }
        }
    }
    Ok(())
}

/// The ride columns, all as text: what the parser hands over before casting.
fn text_schema() -> SchemaRef {
    Arc::new(Schema::new(schema::ride_schema().fields().iter().map(|f| Field::new(f.name(), DataType::Utf8, true)).collect::<Vec<_>>()))
}

/// Casts a text batch to the ride schema. A value that does not parse becomes a null that
/// cleaning counts and drops, instead of failing the whole import; they are counted by column.
fn cast_rides(batch: &RecordBatch, malformed: &mut BTreeMap<&'static str, u64>) -> Result<RecordBatch, arrow::error::ArrowError> {
    let ride = schema::ride_schema();
    let lenient = CastOptions { safe: true, ..Default::default() };
    let mut cols = Vec::with_capacity(ride.fields().len());
    for (c, f) in batch.columns().iter().zip(ride.fields()) {
        let cast = cast_with_options(c, f.data_type(), &lenient)?;
        let bad = (cast.null_count() - c.null_count()) as u64;
        if bad > 0 {
            *malformed.entry(static_name(f.name())).or_default() += bad;
        }
        cols.push(cast);
    }
    RecordBatch::try_new(ride, cols)
}

/// The ride column names as `'static` strings, for the summary's keys.
fn static_name(name: &str) -> &'static str {
    [schema::KEY, schema::FARE, schema::PICKUP_DATETIME, schema::PICKUP_LON, schema::PICKUP_LAT, schema::DROPOFF_LON, schema::DROPOFF_LAT, schema::PASSENGERS]
        .into_iter()
        .find(|n| *n == name)
        .unwrap_or("other")
}

/// Orders the rows of `batch` by month with one `take` (file order kept within a month), so
/// that each month is a zero-copy slice; rows without a usable time are counted and dropped.
fn split_by_month(batch: &RecordBatch, summary: &mut ImportSummary) -> Result<Split, arrow::error::ArrowError> {
    let dt = batch.column(2).as_string::<i32>();
    let mut by_month: BTreeMap<Month, Vec<u32>> = BTreeMap::new();
    for i in 0..batch.num_rows() {
        if dt.is_null(i) {
            *summary.skipped.entry("missing_time").or_default() += 1;
            continue;
        }
        match calendar::parse_datetime(dt.value(i).as_bytes()) {
            Some(ts) => by_month.entry(Month::from_index(calendar::month_index_of(ts))).or_default().push(i as u32),
            None => *summary.skipped.entry("unparseable_time").or_default() += 1,
        }
    }
    let mut order = Vec::with_capacity(batch.num_rows());
    let mut spans = Vec::with_capacity(by_month.len());
    for (month, idx) in by_month {
        spans.push((month, order.len(), idx.len()));
        order.extend(idx);
    }
    Ok(Split { batch: take_record_batch(batch, &UInt32Array::from(order))?, spans })
}

/// The writing stage: casts each split batch, appends each month's slice to its writer
/// (opened on its first row) and keeps the writers within the memory budget. Returns the
/// writers and the malformed values by column.
fn write_months(rx: std::sync::mpsc::Receiver<Split>, out_dir: &Path, budget: usize) -> Result<Written, HistoryError> {
    let mut months: BTreeMap<Month, MonthOut> = BTreeMap::new();
    let mut malformed = BTreeMap::new();
    for split in rx {
        let batch = cast_rides(&split.batch, &mut malformed).map_err(|e| HistoryError::Format { path: out_dir.to_owned(), reason: e.to_string() })?;
        for (month, start, len) in split.spans {
            let out = match months.entry(month) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => v.insert(open_month(out_dir, month, batch.schema())?),
            };
            out.writer
                .write(&batch.slice(start, len))
                .map_err(|e| HistoryError::Format { path: out.tmp.clone(), reason: e.to_string() })?;
            out.rows += len as u64;
        }
        enforce_budget(&mut months, budget)?;
    }
    Ok((months, malformed))
}

/// What the writing stage leaves: the open writers, and malformed values by column.
type Written = (BTreeMap<Month, MonthOut>, BTreeMap<&'static str, u64>);

/// The project's Parquet settings without dictionaries (keys and times are unique, and the
/// dictionary's hashing was a third of an import's time) nor statistics (a pending file is
/// read whole, once, when its month arrives). Snappy compresses the text columns only: on the
/// numbers it cost a quarter of the import's CPU for a fifth of the file's size.
fn import_properties() -> WriterProperties {
    let mut b = writer_properties().into_builder().set_dictionary_enabled(false).set_statistics_enabled(EnabledStatistics::None);
    for f in schema::ride_schema().fields() {
        if f.data_type() != &DataType::Utf8 {
            b = b.set_column_compression(ColumnPath::from(f.name().as_str()), Compression::UNCOMPRESSED);
        }
    }
    b.build()
}

fn open_month(out_dir: &Path, month: Month, schema: SchemaRef) -> Result<MonthOut, HistoryError> {
    let tmp = out_dir.join(format!(".{month}.parquet.tmp"));
    let file = File::create(&tmp).map_err(|e| HistoryError::Io { path: tmp.clone(), source: e })?;
    let mut writer =
        ArrowWriter::try_new(file, schema, Some(import_properties())).map_err(|e| HistoryError::Format { path: tmp.clone(), reason: e.to_string() })?;
    writer.append_key_value_metadata(month_metadata(month));
    Ok(MonthOut { tmp, writer, rows: 0 })
}

/// Writes out the largest buffered row groups until all writers together hold at most
/// `budget` bytes.
fn enforce_budget(months: &mut BTreeMap<Month, MonthOut>, budget: usize) -> Result<(), HistoryError> {
    let mut total: usize = months.values().map(|m| m.writer.memory_size()).sum();
    while total > budget {
        let Some(largest) = months.values_mut().max_by_key(|m| m.writer.memory_size()) else { break };
        let before = largest.writer.memory_size();
        largest.writer.flush().map_err(|e| HistoryError::Format { path: largest.tmp.clone(), reason: e.to_string() })?;
        total = total - before + largest.writer.memory_size();
        if before == 0 {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    const HEADER: &str = "key,fare_amount,pickup_datetime,pickup_longitude,pickup_latitude,dropoff_longitude,dropoff_latitude,passenger_count";

    fn import(text: &[u8], opts: &ImportOptions) -> (tempfile::TempDir, Result<ImportSummary, HistoryError>) {
        let tmp = tempfile::tempdir().unwrap();
        let csv = tmp.path().join("train.csv");
        std::fs::write(&csv, text).unwrap();
        let r = import_kaggle_csv(&csv, &tmp.path().join("out"), opts, &mut |_| true);
        (tmp, r)
    }

    fn rows(n: usize, month: &str) -> String {
        (0..n).map(|i| format!("{month}-03 10:00:{:02}.{i},7.5,{month}-03 10:00:{:02} UTC,-73.98,40.75,-73.97,40.76,1\n", i % 60, i % 60)).collect()
    }

    #[test]
    fn columns_are_read_by_name_and_extra_ones_ignored() {
        let text = "extra,pickup_latitude,pickup_longitude,passenger_count,dropoff_latitude,dropoff_longitude,pickup_datetime,fare_amount\n\
                    x,40.75,-73.98,2,40.76,-73.97,2013-05-01 10:00:00 UTC,7.5\n\
                    y,40.70,-73.90,1,40.71,-73.91,2013-06-01 10:00:00 UTC,not-a-number\n\
                    z,40.70,-73.90,1,40.71,-73.91,yesterday,5\n";
        let (tmp, r) = import(text.as_bytes(), &ImportOptions::default());
        let s = r.unwrap();
        assert_eq!(s.months.iter().map(|(m, n)| (m.to_string(), *n)).collect::<Vec<_>>(), [("2013-05".into(), 1), ("2013-06".to_string(), 1)]);
        assert_eq!((s.rows_read, s.skipped["unparseable_time"], s.malformed_values[schema::FARE]), (3, 1, 1));
        assert!(!s.has_key);
        assert_eq!(s.sha256.len(), 64);
        let file = File::open(tmp.path().join("out/2013-05.parquet")).unwrap();
        let b = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        assert_eq!(crate::month_file::recorded_month(b.metadata()), Some("2013-05"));
        let batch = b.build().unwrap().next().unwrap().unwrap();
        assert_eq!(batch.schema(), schema::ride_schema());
        let f = |name: &str| batch.column_by_name(name).unwrap().as_primitive::<arrow::datatypes::Float64Type>().value(0);
        assert_eq!((f(schema::PICKUP_LAT), f(schema::PICKUP_LON), f(schema::FARE)), (40.75, -73.98, 7.5));
        assert!(batch.column(0).is_null(0), "no key column: null keys");
    }

    #[test]
    fn bad_inputs_are_named_errors_and_leave_nothing() {
        let cases = [
            (String::new(), "is empty"),
            ("a,b,c\n1,2,3\n".to_owned(), "has no column \"fare_amount\""),
            (format!("{HEADER}\n"), "has a header but no rows"),
            (format!("{HEADER},fare_amount\n"), "twice"),
            (format!("{HEADER}\nk,1,nope,0,0,0,0,1\n"), "none of its 1 rows"),
        ];
        for (text, want) in cases {
            let (tmp, r) = import(text.as_bytes(), &ImportOptions::default());
            let err = r.unwrap_err().to_string();
            assert!(err.contains(want) && err.contains("train.csv"), "{want}: {err}");
            assert!(!tmp.path().join("out").exists(), "{want}: the output folder is removed");
        }
    }

    #[test]
    fn a_bad_byte_late_in_the_file_removes_every_temporary_file() {
        let mut text = format!("{HEADER}\n{}{}", rows(300, "2013-05"), rows(300, "2013-06")).into_bytes();
        let late = text.len() - 30;
        text[late] = 0xff;
        // Small batches and a one-byte budget: both month files hold row groups when it fails.
        let (tmp, r) = import(&text, &ImportOptions { batch_rows: 100, writer_budget: 1 });
        let err = r.unwrap_err().to_string();
        assert!(err.contains("UTF-8") && err.contains("train.csv"), "{err}");
        assert!(!tmp.path().join("out").exists());
    }

    #[test]
    fn a_tight_budget_writes_many_row_groups_and_keeps_every_row() {
        let interleaved: String = (0..40).map(|_| format!("{}{}", rows(50, "2014-01"), rows(50, "2014-02"))).collect();
        let (tmp, r) = import(format!("{HEADER}\n{interleaved}").as_bytes(), &ImportOptions { batch_rows: 100, writer_budget: 1 });
        let s = r.unwrap();
        assert_eq!(s.months.iter().map(|(_, n)| n).sum::<u64>(), 4000);
        let file = File::open(tmp.path().join("out/2014-01.parquet")).unwrap();
        let b = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        assert!(b.metadata().num_row_groups() > 10, "{}", b.metadata().num_row_groups());
        assert_eq!(b.metadata().file_metadata().num_rows(), 2000);
    }

    #[test]
    fn cancelling_removes_everything() {
        let tmp = tempfile::tempdir().unwrap();
        let csv = tmp.path().join("train.csv");
        std::fs::write(&csv, format!("{HEADER}\n{}", rows(10, "2013-01"))).unwrap();
        let out = tmp.path().join("out");
        let r = import_kaggle_csv(&csv, &out, &ImportOptions::default(), &mut |_| false);
        assert!(matches!(r, Err(HistoryError::Cancelled)));
        assert!(!out.exists());
        std::fs::create_dir(&out).unwrap();
        let r = import_kaggle_csv(&csv, &out, &ImportOptions::default(), &mut |_| true);
        assert!(matches!(r, Err(HistoryError::Io { .. })), "an existing folder is never reused");
        assert!(out.exists(), "nor removed");
    }
}

