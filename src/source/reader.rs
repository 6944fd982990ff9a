//! `read_rows`: the rows with `first <= row_id < end` as a stream of Arrow batches. Whole files
//! are skipped by name and whole row groups by their row counts, so the cost follows the rows
//! read; memory is one batch (plus one decoded page per column). A Parquet file's footer is
//! parsed once per slice, by the check before any row is read, and reused by the read.
//!
//! Decoding stays on the calling thread: decoding a file's row groups ahead on the cores was
//! measured slower (docs/decisions.md, Data path).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use arrow::array::{Array, AsArray, RecordBatch, RecordBatchReader};
use arrow::datatypes::{DataType, Int64Type, Schema, SchemaRef};
use arrow::error::ArrowError;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use parquet::arrow::ProjectionMask;

use super::layout::{self, Format, MonthFile};
use super::SourceError;
use crate::schema;

/// One file's part of a slice: rows `[lo, hi)` counted from the file's first row; a Parquet
/// file's footer, parsed once when the slice is opened.
struct Part {
    file: MonthFile,
    lo: u64,
    hi: u64,
    meta: Option<ArrowReaderMetadata>,
}

enum Open {
    Parquet(ParquetRecordBatchReader),
    Csv(arrow::csv::Reader<File>),
}

/// A stream of the source's rows in a `row_id` range, in `row_id` order, with the columns of
/// [`schema::source_schema`].
pub struct SliceReader {
    parts: VecDeque<Part>,
    current: Option<(Open, PathBuf, Vec<usize>)>,
    next_row_id: i64,
    batch_rows: usize,
    schema: SchemaRef,
}

/// Opens the rows `[first, first + count)` of the source in `dir` (all remaining rows when
/// `count` is `None`). A range reaching beyond the end is cut at the end; a range starting at
/// or beyond the end is empty.
pub fn read_rows(dir: &std::path::Path, first: u64, count: Option<u64>, batch_rows: usize) -> Result<SliceReader, SourceError> {
    if batch_rows == 0 {
        return Err(SourceError::Invalid("batch_rows must be positive".into()));
    }
    let files = layout::list(dir)?;
    let total = files.last().map_or(0, |f| f.end);
    let end = count.map_or(total, |c| first.saturating_add(c).min(total));
    let mut parts = VecDeque::new();
    for f in files {
        if f.end <= first || f.first >= end || f.rows() == 0 {
            continue;
        }
        let lo = first.max(f.first) - f.first;
        let hi = end.min(f.end) - f.first;
        parts.push_back(Part { file: f, lo, hi, meta: None });
    }
    // Check every file's footer/header up front: schema errors surface before any row is used.
    for p in &mut parts {
        p.meta = check_file(&p.file)?;
    }
    Ok(SliceReader { parts, current: None, next_row_id: first as i64, batch_rows, schema: schema::source_schema() })
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

/// Checks a file's schema and row count; a Parquet file's parsed footer is returned for the
/// reader (parsing it again would cost as much as a small slice).
fn check_file(f: &MonthFile) -> Result<Option<ArrowReaderMetadata>, SourceError> {
    match f.format {
        Format::Parquet => {
            let meta = ArrowReaderMetadata::load(&open_file(&f.path)?, ArrowReaderOptions::new()).map_err(|e| corrupt(&f.path, e))?;
            check_types(&f.path, meta.schema())?;
            let rows: i64 = meta.metadata().row_groups().iter().map(|rg| rg.num_rows()).sum();
            if rows as u64 != f.rows() {
                return Err(SourceError::RowIdMismatch {
                    path: f.path.clone(),
                    detail: format!("holds {rows} rows but its name promises {}", f.rows()),
                });
            }
            Ok(Some(meta))
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
            Ok(None)
        }
    }
}

/// Rows `[skip, skip + select)` of row group `group`.
#[derive(Clone, Copy)]
struct GroupSlice {
    group: usize,
    skip: usize,
    select: usize,
    rows: usize,
}

impl GroupSlice {
    fn selection(self) -> [RowSelector; 3] {
        [RowSelector::skip(self.skip), RowSelector::select(self.select), RowSelector::skip(self.rows - self.skip - self.select)]
    }
}

/// A Parquet part to read: the path, the parsed footer, the columns read.
struct ParquetPart {
    path: PathBuf,
    meta: ArrowReaderMetadata,
    mask: ProjectionMask,
    batch_rows: usize,
}

impl ParquetPart {
    /// A reader of `slices` (in file order) of this part.
    fn reader(&self, slices: &[GroupSlice]) -> Result<ParquetRecordBatchReader, SourceError> {
        let selection: Vec<RowSelector> = slices.iter().flat_map(|g| g.selection()).collect();
        ParquetRecordBatchReaderBuilder::new_with_metadata(open_file(&self.path)?, self.meta.clone())
            .with_projection(self.mask.clone())
            .with_row_groups(slices.iter().map(|g| g.group).collect())
            .with_row_selection(RowSelection::from(selection))
            .with_batch_size(self.batch_rows)
            .build()
            .map_err(|e| corrupt(&self.path, e))
    }
}

fn open_part(p: &Part, batch_rows: usize) -> Result<(Open, Vec<usize>), SourceError> {
    let path = &p.file.path;
    match (p.file.format, &p.meta) {
        (Format::Parquet, Some(meta)) => {
            let order = check_types(path, meta.schema())?;
            let mut sorted = order.clone();
            sorted.sort_unstable();
            let mask = ProjectionMask::roots(meta.parquet_schema(), sorted.iter().copied());
            // After projection the columns keep file order; map canonical order onto it.
            let order: Vec<usize> = order.iter().map(|i| sorted.binary_search(i).unwrap_or(0)).collect();
            let mut slices = Vec::new();
            let mut start = 0u64;
            for (group, rg) in meta.metadata().row_groups().iter().enumerate() {
                let n = rg.num_rows() as u64;
                if start + n > p.lo && start < p.hi {
                    let first = p.lo.max(start);
                    let end = p.hi.min(start + n);
                    slices.push(GroupSlice { group, skip: (first - start) as usize, select: (end - first) as usize, rows: n as usize });
                }
                start += n;
            }
            let part = ParquetPart { path: path.clone(), meta: meta.clone(), mask, batch_rows };
            Ok((Open::Parquet(part.reader(&slices)?), order))
        }
        (Format::Parquet, None) => Err(SourceError::Invalid(format!("{}: footer not read", path.display()))),
        (Format::Csv, _) => {
            let reader = arrow::csv::ReaderBuilder::new(schema::source_schema())
                .with_header(true)
                .with_batch_size(batch_rows)
                .with_bounds(p.lo as usize, p.hi as usize)
                .build(open_file(path)?)
                .map_err(|e| corrupt(path, e))?;
            Ok((Open::Csv(reader), (0..schema::source_schema().fields().len()).collect()))
        }
    }
}

/// A decoded batch with the source's columns in canonical order and plain strings.
fn shape(batch: RecordBatch, order: &[usize]) -> Result<RecordBatch, ArrowError> {
    normalise_strings(batch.project(order)?)
}

impl SliceReader {
    fn pull(&mut self) -> Result<Option<RecordBatch>, SourceError> {
        loop {
            if self.current.is_none() {
                let Some(part) = self.parts.pop_front() else { return Ok(None) };
                let (open, order) = open_part(&part, self.batch_rows)?;
                self.current = Some((open, part.file.path.clone(), order));
            }
            let Some((open, path, order)) = &mut self.current else { continue };
            let next = match open {
                Open::Parquet(r) => r.next().map(|b| b.and_then(|b| shape(b, order)).map_err(|e| corrupt(path, e))),
                Open::Csv(r) => r.next().map(|b| b.and_then(|b| shape(b, order)).map_err(|e| corrupt(path, e))),
            };
            match next {
                None => self.current = None,
                Some(Err(e)) => return Err(e),
                Some(Ok(batch)) => {
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
                self.parts.clear();
                self.current = None;
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
