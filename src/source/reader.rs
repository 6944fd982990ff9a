//! `read_rows`: the rows with `first <= row_id < end` as a stream of Arrow batches. Whole files
//! are skipped by name and whole row groups by their row counts, so the cost follows the rows
//! read.
//!
//! Decoding runs on a few worker threads, one row group (or one CSV file) per task, ahead of
//! the consumer by a bounded number of tasks: batches still come out in `row_id` order, memory
//! is a few batches per worker whatever the slice, and the consumer's own work (cleaning,
//! features) overlaps the decoding of the next batches.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use arrow::array::{Array, AsArray, RecordBatch, RecordBatchReader};
use arrow::datatypes::{DataType, Int64Type, Schema, SchemaRef};
use arrow::error::ArrowError;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use parquet::arrow::ProjectionMask;

use super::layout::{self, Format, MonthFile};
use super::SourceError;
use crate::schema;

/// Most decoding threads, whatever the cores.
const MAX_WORKERS: usize = 4;

/// How a task's rows are decoded.
#[derive(Clone)]
enum Kind {
    /// One row group, starting at row `group_first` of the file; `roots` are the file's
    /// columns to decode, in file order.
    Parquet { meta: ArrowReaderMetadata, group: usize, group_first: u64, roots: Arc<[usize]> },
    /// A whole CSV file's part (CSV cannot be entered in the middle).
    Csv,
}

/// One unit of decoding: rows `[lo, hi)` of a file, counted from the file's first row.
struct Task {
    path: PathBuf,
    kind: Kind,
    lo: u64,
    hi: u64,
    /// The file's columns in source-schema order, as positions after projection.
    order: Arc<[usize]>,
    /// `row_id` of the file's first row.
    first_row_id: u64,
}

type Decoded = Result<RecordBatch, SourceError>;
type Job = (Task, SyncSender<Decoded>);

/// Decoding threads fed tasks in order; each task answers on its own bounded channel.
struct Workers {
    jobs: Option<mpsc::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    fn start(n: usize, batch_rows: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..n)
            .map(|_| {
                let rx = Arc::clone(&rx);
                std::thread::spawn(move || loop {
                    // A poisoned lock means another worker panicked: stop too (the reader
                    // notices the rows that never came).
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((task, out)) = job else { return };
                    decode(&task, batch_rows, &out);
                })
            })
            .collect();
        Self { jobs: Some(tx), threads }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Closing the job queue ends idle workers; busy ones stop at their next send, the
        // reader having dropped the receivers first.
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A task in flight: where its batches arrive and the `row_id` it must reach.
struct InFlight {
    path: PathBuf,
    end_row_id: i64,
    batches: Receiver<Decoded>,
}

/// A stream of the source's rows in a `row_id` range, in `row_id` order, with the columns of
/// [`schema::source_schema`].
pub struct SliceReader {
    todo: VecDeque<Task>,
    // Declared before `workers` so that it drops first: blocked workers are released.
    in_flight: VecDeque<InFlight>,
    workers: Option<Workers>,
    next_row_id: i64,
    batch_rows: usize,
    schema: SchemaRef,
}

/// Opens the rows `[first, first + count)` of the source in `dir` (all remaining rows when
/// `count` is `None`). A range reaching beyond the end is cut at the end; a range starting at
/// or beyond the end is empty.
pub fn read_rows(dir: &Path, first: u64, count: Option<u64>, batch_rows: usize) -> Result<SliceReader, SourceError> {
    if batch_rows == 0 {
        return Err(SourceError::Invalid("batch_rows must be positive".into()));
    }
    let files = layout::list(dir)?;
    let total = files.last().map_or(0, |f| f.end);
    let end = count.map_or(total, |c| first.saturating_add(c).min(total));
    let mut todo = VecDeque::new();
    for f in files {
        if f.end <= first || f.first >= end || f.rows() == 0 {
            continue;
        }
        let lo = first.max(f.first) - f.first;
        let hi = end.min(f.end) - f.first;
        // Every file's footer/header is checked here: schema errors surface before any row
        // is used.
        plan_file(&f, lo, hi, &mut todo)?;
    }
    Ok(SliceReader { todo, in_flight: VecDeque::new(), workers: None, next_row_id: first as i64, batch_rows, schema: schema::source_schema() })
}

pub(crate) fn check_types(path: &std::path::Path, file_schema: &Schema) -> Result<Vec<usize>, SourceError> {
    let want = schema::source_schema();
    want.fields()
        .iter()
        .map(|f| {
            let (i, got) = file_schema.column_with_name(f.name()).ok_or_else(|| SourceError::Schema {
                path: path.to_owned(),
                reason: format!("required column {:?} is missing", f.name()),
            })?;
            let same = got.data_type() == f.data_type()
                || matches!((got.data_type(), f.data_type()), (DataType::LargeUtf8 | DataType::Utf8View, DataType::Utf8));
            if !same {
                return Err(SourceError::Schema {
                    path: path.to_owned(),
                    reason: format!("column {:?} is {} (expected {})", f.name(), got.data_type(), f.data_type()),
                });
            }
            Ok(i)
        })
        .collect()
}

fn corrupt(path: &std::path::Path, e: impl std::fmt::Display) -> SourceError {
    SourceError::Corrupt { path: path.to_owned(), reason: e.to_string() }
}

fn open_file(path: &std::path::Path) -> Result<File, SourceError> {
    File::open(path).map_err(|e| SourceError::Io { path: path.to_owned(), source: e })
}

/// Checks a file's footer or header and appends the tasks that decode its rows `[lo, hi)`.
fn plan_file(f: &MonthFile, lo: u64, hi: u64, todo: &mut VecDeque<Task>) -> Result<(), SourceError> {
    let task = |kind, lo, hi, order: &Arc<[usize]>| Task { path: f.path.clone(), kind, lo, hi, order: Arc::clone(order), first_row_id: f.first };
    match f.format {
        Format::Parquet => {
            let meta = ArrowReaderMetadata::load(&open_file(&f.path)?, Default::default()).map_err(|e| corrupt(&f.path, e))?;
            let order = check_types(&f.path, meta.schema())?;
            let rows: i64 = meta.metadata().row_groups().iter().map(|rg| rg.num_rows()).sum();
            if rows as u64 != f.rows() {
                return Err(SourceError::RowIdMismatch {
                    path: f.path.clone(),
                    detail: format!("holds {rows} rows but its name promises {}", f.rows()),
                });
            }
            let mut sorted = order.clone();
            sorted.sort_unstable();
            // After projection the columns keep file order; map canonical order onto it.
            let order: Arc<[usize]> = order.iter().map(|i| sorted.binary_search(i).unwrap_or(0)).collect();
            let roots: Arc<[usize]> = sorted.into();
            let mut start = 0u64;
            for (group, rg) in meta.metadata().row_groups().iter().enumerate() {
                let n = rg.num_rows() as u64;
                if start + n > lo && start < hi {
                    let kind = Kind::Parquet { meta: meta.clone(), group, group_first: start, roots: Arc::clone(&roots) };
                    todo.push_back(task(kind, lo.max(start), hi.min(start + n), &order));
                }
                start += n;
            }
        }
        Format::Csv => {
            let mut header = String::new();
            BufReader::new(open_file(&f.path)?).read_line(&mut header).map_err(|e| SourceError::Io { path: f.path.clone(), source: e })?;
            let names: Vec<&str> = header.trim_end().split(',').collect();
            let want = schema::source_schema();
            let want: Vec<&str> = want.fields().iter().map(|f| f.name().as_str()).collect();
            if names != want {
                return Err(SourceError::Schema {
                    path: f.path.clone(),
                    reason: format!("CSV header is {names:?}, expected {want:?}"),
                });
            }
            todo.push_back(task(Kind::Csv, lo, hi, &(0..want.len()).collect()));
        }
    }
    Ok(())
}

/// Decodes a task into `out`, batch by batch, in the source schema's column order. Stops
/// early when the reader is gone.
fn decode(t: &Task, batch_rows: usize, out: &SyncSender<Decoded>) {
    let batches: Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>>> = match open_task(t, batch_rows) {
        Ok(b) => b,
        Err(e) => {
            let _ = out.send(Err(e));
            return;
        }
    };
    for batch in batches {
        let batch = batch.and_then(|b| normalise_strings(b.project(&t.order)?)).map_err(|e| corrupt(&t.path, e));
        let failed = batch.is_err();
        if out.send(batch).is_err() || failed {
            return;
        }
    }
}

fn open_task(t: &Task, batch_rows: usize) -> Result<Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>>>, SourceError> {
    let path = &t.path;
    match &t.kind {
        Kind::Parquet { meta, group, group_first, roots } => {
            let b = ParquetRecordBatchReaderBuilder::new_with_metadata(open_file(path)?, meta.clone());
            let mask = ProjectionMask::roots(b.parquet_schema(), roots.iter().copied());
            let group_rows = meta.metadata().row_group(*group).num_rows() as u64;
            let selection = RowSelection::from(vec![
                RowSelector::skip((t.lo - group_first) as usize),
                RowSelector::select((t.hi - t.lo) as usize),
                RowSelector::skip((group_first + group_rows - t.hi) as usize),
            ]);
            let reader = b
                .with_projection(mask)
                .with_row_groups(vec![*group])
                .with_row_selection(selection)
                .with_batch_size(batch_rows)
                .build()
                .map_err(|e| corrupt(path, e))?;
            Ok(Box::new(reader))
        }
        Kind::Csv => {
            let reader = arrow::csv::ReaderBuilder::new(schema::source_schema())
                .with_header(true)
                .with_batch_size(batch_rows)
                .with_bounds(t.lo as usize, t.hi as usize)
                .build(open_file(path)?)
                .map_err(|e| corrupt(path, e))?;
            Ok(Box::new(reader))
        }
    }
}


impl SliceReader {
    /// Hands tasks to the workers (started on first use) until enough are in flight.
    fn refill(&mut self) {
        if self.todo.is_empty() {
            return;
        }
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let n = cores.clamp(1, MAX_WORKERS).min(self.todo.len() + self.in_flight.len());
        let batch_rows = self.batch_rows;
        let workers = self.workers.get_or_insert_with(|| Workers::start(n, batch_rows));
        let Some(jobs) = workers.jobs.as_ref() else { return };
        // One task per worker: the consumer hands out the next as soon as it reaches the end
        // of the current one, and memory stays at most two batches per worker.
        while self.in_flight.len() < workers.threads.len() {
            let Some(task) = self.todo.pop_front() else { break };
            // One batch waits in the channel, the worker may hold the next one.
            let (tx, rx) = mpsc::sync_channel(1);
            let flight = InFlight { path: task.path.clone(), end_row_id: (task.first_row_id + task.hi) as i64, batches: rx };
            if jobs.send((task, tx)).is_err() {
                // Every worker is gone (one panicked): the missing rows are reported below.
                self.todo.clear();
                break;
            }
            self.in_flight.push_back(flight);
        }
    }

    fn pull(&mut self) -> Result<Option<RecordBatch>, SourceError> {
        loop {
            self.refill();
            let Some(front) = self.in_flight.front() else {
                return Ok(None);
            };
            let batch = match front.batches.recv() {
                Ok(batch) => batch?,
                Err(_) => {
                    // The task's worker is done with it: all its rows must have come.
                    if self.next_row_id != front.end_row_id {
                        return Err(SourceError::RowIdMismatch {
                            path: front.path.clone(),
                            detail: format!("decoding stopped at row_id {} before {}", self.next_row_id, front.end_row_id),
                        });
                    }
                    self.in_flight.pop_front();
                    continue;
                }
            };
            let path = &front.path;
            let ids = batch.column(0).as_primitive::<Int64Type>();
            let n = ids.len() as i64;
            if n > 0 && (ids.null_count() > 0 || ids.value(0) != self.next_row_id || ids.value(ids.len() - 1) != self.next_row_id + n - 1) {
                return Err(SourceError::RowIdMismatch {
                    path: path.clone(),
                    detail: format!("expected row_id {}..{}, found {}..{}", self.next_row_id, self.next_row_id + n, ids.value(0), ids.value(ids.len() - 1) + 1),
                });
            }
            self.next_row_id += n;
            return Ok(Some(batch.with_schema(self.schema.clone()).map_err(|e| corrupt(path, e))?));
        }
    }
}

/// Casts large/view strings to plain `Utf8` so that every batch has the source schema.
fn normalise_strings(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    if batch.columns().iter().all(|c| !matches!(c.data_type(), DataType::LargeUtf8 | DataType::Utf8View)) {
        return Ok(batch);
    }
    let cols = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::LargeUtf8 | DataType::Utf8View => arrow::compute::cast(c, &DataType::Utf8),
            _ => Ok(c.clone()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema::source_schema(), cols)
}

impl Iterator for SliceReader {
    type Item = Result<RecordBatch, ArrowError>;
    fn next(&mut self) -> Option<Self::Item> {
        match self.pull() {
            Ok(b) => b.map(Ok),
            Err(e) => {
                self.todo.clear();
                self.in_flight.clear();
                Some(Err(ArrowError::ExternalError(Box::new(e))))
            }
        }
    }
}

impl RecordBatchReader for SliceReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}
