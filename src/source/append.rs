//! `append_month`: a pending month arrives in the source with the next `row_id`s, written to a
//! hidden temporary file and renamed into place, so a crash leaves the old or the new state.
//! `stage_month` writes the same file under a hidden name ahead of time (a replay prepares the
//! next month while the current one's lifecycle saves its model), and `Staged::publish` renames
//! it into place only if the source has not changed since.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::PageIndexPolicy;

use super::layout::{self, Format, MonthFile};
use super::{splice, verify, SourceError};
use crate::atomic::{write_atomically, write_synced};
use crate::calendar::Month;
use crate::month_file::{month_metadata, recorded_month, writer_properties};
use crate::schema;

/// Appends the pending month file `pending` (Kaggle columns, any order) to the source in
/// `dir`, numbering its rows from the source's current end, and records the month in the new
/// file (Parquet key-value metadata; a CSV file's rows tell it). Refuses, changing nothing:
/// an unsound source (see [`verify`]), a month already present or older than the newest one
/// (so calling it twice for a month never duplicates rows), and a pending file without rows or
/// recorded as another month.
pub fn append_month(pending: &Path, month: Month, dir: &Path, format: Format) -> Result<MonthFile, SourceError> {
    write_month(pending, month, dir, format, None)
}

/// A pending month written and synced beside the source under a hidden name, not part of it
/// yet: [`Staged::publish`] moves it in, [`Staged::discard`] removes it.
#[derive(Debug)]
pub struct Staged {
    /// The month file it becomes (its final path).
    pub file: MonthFile,
    /// Where it is written meanwhile (hidden: the source's listing skips it).
    pub staged: std::path::PathBuf,
    /// The source's folder.
    dir: std::path::PathBuf,
    /// The pending file it was written from.
    pending: std::path::PathBuf,
    /// The source's files and the pending file when it was staged, to tell whether anything
    /// changed since.
    seen: Vec<FileStamp>,
}

/// A file's name, length and modification time.
type FileStamp = (std::path::PathBuf, u64, Option<std::time::SystemTime>);

fn stamps(dir: &Path, pending: &Path) -> Result<Vec<FileStamp>, SourceError> {
    layout::list(dir)?
        .into_iter()
        .map(|f| f.path)
        .chain(std::iter::once(pending.to_owned()))
        .map(|path| {
            let meta = std::fs::metadata(&path).map_err(|e| SourceError::Io { path: path.clone(), source: e })?;
            Ok((path, meta.len(), meta.modified().ok()))
        })
        .collect()
}

/// Writes the month `append_month` would append now, with the same checks and errors, under a
/// hidden name beside its final one.
pub fn stage_month(pending: &Path, month: Month, dir: &Path, format: Format) -> Result<Staged, SourceError> {
    std::fs::create_dir_all(dir).map_err(|e| SourceError::Io { path: dir.to_owned(), source: e })?;
    let seen = stamps(dir, pending)?;
    let staged = staged_path(dir, month, format);
    let file = write_month(pending, month, dir, format, Some(&staged))?;
    Ok(Staged { file, staged, dir: dir.to_owned(), pending: pending.to_owned(), seen })
}

/// The hidden name a staged month is written under (one per process).
fn staged_path(dir: &Path, month: Month, format: Format) -> std::path::PathBuf {
    dir.join(format!(".staged-{month}-{}.{}", std::process::id(), format.extension()))
}

impl Staged {
    /// Moves the staged month into the source if the source and the pending file are as they
    /// were when the month was staged (their files, lengths and times): the checks
    /// `append_month` made then still hold. Otherwise, or when the staged file is gone, removes it and returns `None`: the
    /// caller appends the month as usual.
    pub fn publish(self) -> Result<Option<MonthFile>, SourceError> {
        let unchanged = stamps(&self.dir, &self.pending).map(|now| now == self.seen);
        if !matches!(unchanged, Ok(true)) || !self.staged.is_file() {
            self.discard();
            return unchanged.map(|_| None);
        }
        crate::atomic::publish(&self.staged, &self.file.path).map_err(|e| {
            let _ = std::fs::remove_file(&self.staged);
            SourceError::Io { path: self.file.path.clone(), source: e }
        })?;
        Ok(Some(self.file))
    }

    /// Removes the staged file.
    pub fn discard(&self) {
        let _ = std::fs::remove_file(&self.staged);
    }
}

/// Writes the month: into place atomically, or (`staged`) synced under that hidden name.
fn write_month(pending: &Path, month: Month, dir: &Path, format: Format, staged: Option<&Path>) -> Result<MonthFile, SourceError> {
    std::fs::create_dir_all(dir).map_err(|e| SourceError::Io { path: dir.to_owned(), source: e })?;
    verify::ensure_sound(dir)?;
    let files = layout::list(dir)?;
    if let Some(f) = files.iter().find(|f| f.month == month) {
        return Err(SourceError::AlreadyPresent { month: month.to_string(), path: f.path.clone() });
    }
    if let Some(newest) = files.iter().map(|f| f.month).max() {
        if month < newest {
            return Err(SourceError::OutOfOrder { month: month.to_string(), newest: newest.to_string() });
        }
    }
    let first = files.last().map_or(0, |f| f.end);
    let input = File::open(pending).map_err(|e| SourceError::Io { path: pending.to_owned(), source: e })?;
    let corrupt = |e: &dyn std::fmt::Display| SourceError::Corrupt { path: pending.to_owned(), reason: e.to_string() };
    let spliced_from = input.try_clone().map_err(|e| SourceError::Io { path: pending.to_owned(), source: e })?;
    // The page indexes are read too: a spliced chunk keeps its own.
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(input, options).map_err(|e| corrupt(&e))?;
    let rows: u64 = builder.metadata().row_groups().iter().map(|rg| rg.num_rows() as u64).sum();
    if rows == 0 {
        return Err(SourceError::EmptyMonth { path: pending.to_owned(), month: month.to_string() });
    }
    if let Some(recorded) = recorded_month(builder.metadata()) {
        if recorded != month.to_string() {
            return Err(SourceError::MonthMismatch {
                path: pending.to_owned(),
                recorded: recorded.to_owned(),
                how: "recorded when the history was written",
                named: month.to_string(),
            });
        }
    }
    let order = schema::ride_schema()
        .fields()
        .iter()
        .map(|f| {
            builder.schema().index_of(f.name()).map_err(|_| SourceError::Schema {
                path: pending.to_owned(),
                reason: format!("required column {:?} is missing", f.name()),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let plan = if format == Format::Parquet { splice::plan(builder.metadata()) } else { None };
    let meta = builder.metadata().clone();
    let reader = builder.with_batch_size(schema::BATCH_ROWS).build().map_err(|e| corrupt(&e))?;
    let end = first + rows;
    let target = dir.join(layout::file_name(month, first, end, format));
    let out_schema = schema::source_schema();
    let unwritten = |e: &(dyn std::error::Error + 'static)| write_failure(&target, e);
    let write = |file: File| {
        let mut next = first as i64;
        let mut write_batch = |batch: RecordBatch, sink: &mut dyn FnMut(&RecordBatch) -> Result<(), SourceError>| {
            let n = batch.num_rows() as i64;
            let mut cols: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(next..next + n))];
            for &i in &order {
                let c = batch.column(i);
                let want = out_schema.field(cols.len()).data_type();
                cols.push(if c.data_type() == want { c.clone() } else { arrow::compute::cast(c, want).map_err(|e| corrupt(&e))? });
            }
            next += n;
            sink(&RecordBatch::try_new(out_schema.clone(), cols).map_err(|e| corrupt(&e))?)
        };
        match (format, plan.as_deref()) {
            (Format::Parquet, Some(plan)) => splice::splice(&spliced_from, &meta, plan, first, month, file).map_err(|e| unwritten(&e)),
            (Format::Parquet, None) => {
                let mut w = ArrowWriter::try_new(file, out_schema.clone(), Some(writer_properties())).map_err(|e| unwritten(&e))?;
                w.append_key_value_metadata(month_metadata(month));
                for batch in reader {
                    let batch = batch.map_err(|e| corrupt(&e))?;
                    write_batch(batch, &mut |b| w.write(b).map_err(|e| unwritten(&e)))?;
                }
                w.into_inner().map_err(|e| unwritten(&e))
            }
            (Format::Csv, _) => {
                let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(file);
                for batch in reader {
                    let batch = batch.map_err(|e| corrupt(&e))?;
                    write_batch(batch, &mut |b| w.write(b).map_err(|e| unwritten(&e)))?;
                }
                Ok(w.into_inner())
            }
        }
    };
    let io = |source| SourceError::Io { path: target.clone(), source };
    match staged {
        None => write_atomically(&target, write, io)?,
        Some(staged) => write_synced(staged, write, io)?,
    }
    Ok(MonthFile { month, first, end, format, path: target })
}

/// A failed write names the file being written and keeps the OS's reason (a full disk is "No
/// space left on device", not a corrupt input): the I/O error is found in the error's chain.
fn write_failure(target: &Path, e: &(dyn std::error::Error + 'static)) -> SourceError {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            let source = io.raw_os_error().map_or_else(|| std::io::Error::new(io.kind(), io.to_string()), std::io::Error::from_raw_os_error);
            return SourceError::Io { path: target.to_owned(), source };
        }
        cause = err.source();
    }
    SourceError::Write { path: target.to_owned(), reason: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::history::{generate_history, pending_file, HistoryOptions};
    use crate::source::verify;
    use crate::source::reader::read_rows;
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    use std::path::PathBuf;

    /// A temporary folder with a generated `pending/` history of `first..=last` and an empty
    /// `source/` beside it.
    fn history(first: &str, last: &str, rows: u64) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let (pending, source) = (tmp.path().join("pending"), tmp.path().join("source"));
        let opts = HistoryOptions {
            seed: 42,
            first: Month::parse(first).unwrap(),
            last: Month::parse(last).unwrap(),
            rows_per_month: Some(rows),
            keep_existing: false,
            scenario: Default::default(),
        };
        generate_history(&pending, &opts, &mut |_| true).unwrap();
        (tmp, pending, source)
    }

    fn ids(dir: &Path, first: u64, count: Option<u64>, batch: usize) -> Vec<i64> {
        read_rows(dir, first, count, batch)
            .unwrap()
            .flat_map(|b| b.unwrap().column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    #[test]
    fn months_arrive_with_contiguous_row_ids_and_slice_exactly() {
        for format in [Format::Parquet, Format::Csv] {
            let (_tmp, pending, source) = history("2012-08", "2012-10", 1000);
            for m in ["2012-08", "2012-09", "2012-10"] {
                let m = Month::parse(m).unwrap();
                append_month(&pending_file(&pending, m), m, &source, format).unwrap();
            }
            assert_eq!(layout::row_count(&source).unwrap(), 3000);
            assert_eq!(ids(&source, 0, None, 333), (0..3000).collect::<Vec<_>>());
            assert_eq!(ids(&source, 999, Some(2), 7), vec![999, 1000], "across a month boundary");
            assert_eq!(ids(&source, 2999, Some(10), 7), vec![2999], "cut at the end");
            assert!(ids(&source, 3000, None, 7).is_empty(), "beyond the end");
            assert!(ids(&source, 10, Some(0), 7).is_empty(), "empty range");
            assert_eq!(ids(&source, 0, Some(1), 7), vec![0]);
            // The same month again is refused, an older one too.
            let m = Month::parse("2012-10").unwrap();
            let again = append_month(&pending_file(&pending, m), m, &source, format);
            assert!(matches!(again, Err(SourceError::AlreadyPresent { .. })));
            let old = Month::parse("2012-01").unwrap();
            let older = append_month(&pending_file(&pending, m), old, &source, format);
            assert!(matches!(older, Err(SourceError::OutOfOrder { .. })));
            assert_eq!(layout::row_count(&source).unwrap(), 3000);
        }
    }

    #[test]
    fn a_staged_month_is_published_only_onto_the_source_it_was_staged_for() {
        let (_tmp, pending, source) = history("2012-08", "2012-11", 500);
        let m = |s: &str| Month::parse(s).unwrap();
        let hidden = |dir: &Path| std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.')).count();
        append_month(&pending_file(&pending, m("2012-08")), m("2012-08"), &source, Format::Parquet).unwrap();
        // Staged: not in the source yet; published: the file append_month would have written.
        let staged = stage_month(&pending_file(&pending, m("2012-09")), m("2012-09"), &source, Format::Parquet).unwrap();
        assert_eq!((staged.file.first, staged.file.end), (500, 1000));
        assert_eq!(layout::row_count(&source).unwrap(), 500, "a staged month is not in the source");
        let published = staged.publish().unwrap().expect("the source did not change");
        assert_eq!(layout::row_count(&source).unwrap(), 1000);
        assert_eq!(ids(&source, 0, None, 333), (0..1000).collect::<Vec<_>>());
        verify::ensure_sound(&source).unwrap();
        assert_eq!(published.path, layout::list(&source).unwrap()[1].path);
        // The source changed after the staging (the month arrived by other means): nothing is
        // published, the staged file is removed.
        let staged = stage_month(&pending_file(&pending, m("2012-10")), m("2012-10"), &source, Format::Parquet).unwrap();
        append_month(&pending_file(&pending, m("2012-10")), m("2012-10"), &source, Format::Parquet).unwrap();
        assert!(staged.publish().unwrap().is_none());
        assert_eq!((layout::row_count(&source).unwrap(), hidden(&source)), (1500, 0));
        // A file rewritten in place counts as a change too; discarding removes the staged file.
        let staged = stage_month(&pending_file(&pending, m("2012-11")), m("2012-11"), &source, Format::Parquet).unwrap();
        let last = layout::list(&source).unwrap().pop().unwrap().path;
        let bytes = std::fs::read(&last).unwrap();
        std::fs::write(&last, &bytes[..bytes.len() - 1]).unwrap();
        assert!(staged.publish().unwrap().is_none());
        std::fs::write(&last, &bytes).unwrap();
        let staged = stage_month(&pending_file(&pending, m("2012-11")), m("2012-11"), &source, Format::Parquet).unwrap();
        assert_eq!(hidden(&source), 1);
        staged.discard();
        assert_eq!((layout::row_count(&source).unwrap(), hidden(&source)), (1500, 0));
        // So does a pending file replaced after the staging.
        let staged = stage_month(&pending_file(&pending, m("2012-11")), m("2012-11"), &source, Format::Parquet).unwrap();
        let pending_bytes = std::fs::read(pending_file(&pending, m("2012-11"))).unwrap();
        std::fs::write(pending_file(&pending, m("2012-11")), &pending_bytes[..pending_bytes.len() - 1]).unwrap();
        assert!(staged.publish().unwrap().is_none());
        std::fs::write(pending_file(&pending, m("2012-11")), &pending_bytes).unwrap();
        assert_eq!((layout::row_count(&source).unwrap(), hidden(&source)), (1500, 0));
        // What append_month refuses, staging refuses alike.
        let err = stage_month(&pending_file(&pending, m("2012-10")), m("2012-10"), &source, Format::Parquet).unwrap_err();
        assert!(matches!(err, SourceError::AlreadyPresent { .. }), "{err}");
    }

    #[test]
    fn slicing_skips_row_groups_in_big_files() {
        let (_tmp, pending, source) = history("2013-01", "2013-01", 300_000);
        let m = Month::parse("2013-01").unwrap();
        append_month(&pending_file(&pending, m), m, &source, Format::Parquet).unwrap();
        assert_eq!(ids(&source, 262_140, Some(10), 4), (262_140..262_150).collect::<Vec<_>>());
        assert_eq!(ids(&source, 131_071, Some(2), 4), vec![131_071, 131_072]);
        // Three row groups whole and in order, boundary groups cut exactly, batches never
        // longer than asked.
        assert_eq!(ids(&source, 0, None, 50_000), (0..300_000).collect::<Vec<_>>());
        assert_eq!(ids(&source, 100_000, Some(170_000), 65_536), (100_000..270_000).collect::<Vec<_>>());
        assert!(read_rows(&source, 0, None, 1000).unwrap().all(|b| b.unwrap().num_rows() <= 1000));
    }

    /// The rows of a Parquet file, every column.
    fn file_rows(path: &Path) -> Vec<RecordBatch> {
        ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap().build().unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn a_month_written_as_the_source_writes_is_spliced_and_another_is_encoded_again() {
        use arrow::compute::concat_batches;
        use parquet::arrow::arrow_reader::ArrowReaderMetadata;

        let (tmp, pending, source) = history("2013-01", "2013-02", 300_000);
        let jan = Month::parse("2013-01").unwrap();
        let indexed = || ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let pending_meta = |path: &Path| ArrowReaderMetadata::load(&File::open(path).unwrap(), indexed()).unwrap();
        assert!(splice::plan(pending_meta(&pending_file(&pending, jan)).metadata()).is_some(), "the generator's files splice");
        let f = append_month(&pending_file(&pending, jan), jan, &source, Format::Parquet).unwrap();
        // The same rows and values as the pending file, behind the new row_ids; the source's
        // schema and recorded month; page indexes and row_id statistics for slicing.
        let got = concat_batches(&schema::source_schema(), &file_rows(&f.path)).unwrap();
        let want = file_rows(&pending_file(&pending, jan));
        let want = concat_batches(&want[0].schema(), &want).unwrap();
        assert_eq!(got.num_rows(), 300_000);
        assert_eq!(got.column(0).as_primitive::<Int64Type>().values().to_vec(), (0..300_000).collect::<Vec<_>>());
        for field in schema::ride_schema().fields() {
            let (a, b) = (got.column_by_name(field.name()).unwrap(), want.column_by_name(field.name()).unwrap());
            assert_eq!(a.as_ref(), b.as_ref(), "{}", field.name());
        }
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let meta = ArrowReaderMetadata::load(&File::open(&f.path).unwrap(), options).unwrap();
        assert_eq!(recorded_month(meta.metadata()), Some("2013-01"));
        assert_eq!(meta.schema().fields(), schema::source_schema().fields());
        let groups = meta.metadata().row_groups();
        assert_eq!(groups.len(), 3);
        let stats = groups[1].column(0).statistics().unwrap();
        assert_eq!((stats.min_bytes_opt(), stats.max_bytes_opt()), (Some(&131_072i64.to_le_bytes()[..]), Some(&262_143i64.to_le_bytes()[..])));
        assert!(verify::problems(&source).unwrap().is_empty());

        // A month stored otherwise (fares as 32-bit floats) is decoded and encoded again.
        let feb = Month::parse("2013-02").unwrap();
        let odd = tmp.path().join("odd.parquet");
        let batches = file_rows(&pending_file(&pending, feb));
        let idx = batches[0].schema().index_of("fare_amount").unwrap();
        let narrowed: Vec<RecordBatch> = batches
            .iter()
            .map(|b| {
                let mut cols = b.columns().to_vec();
                cols[idx] = arrow::compute::cast(&cols[idx], &arrow::datatypes::DataType::Float32).unwrap();
                RecordBatch::try_from_iter(b.schema().fields().iter().map(|f| f.name().clone()).zip(cols)).unwrap()
            })
            .collect();
        let mut w = ArrowWriter::try_new(File::create(&odd).unwrap(), narrowed[0].schema(), None).unwrap();
        w.append_key_value_metadata(month_metadata(feb));
        narrowed.iter().for_each(|b| w.write(b).unwrap());
        w.close().unwrap();
        assert!(splice::plan(pending_meta(&odd).metadata()).is_none());
        // So is a month with the source's types but stored otherwise, or by another writer:
        // each arrives (decoded, encoded again) and reads back.
        use parquet::basic::{Compression, ZstdLevel};
        use parquet::file::properties::{EnabledStatistics, WriterProperties};
        let variants: [(&str, WriterProperties, bool); 4] = [
            ("no offset index (pyarrow's default)", WriterProperties::builder().set_compression(Compression::SNAPPY).set_offset_index_disabled(true).build(), true),
            ("another codec", WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build(), true),
            ("no statistics (the import's)", WriterProperties::builder().set_compression(Compression::SNAPPY).set_statistics_enabled(EnabledStatistics::None).build(), true),
            ("no month recorded", writer_properties(), false),
        ];
        for (i, (what, props, record_month)) in variants.into_iter().enumerate() {
            let path = tmp.path().join(format!("variant{i}.parquet"));
            let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), batches[0].schema(), Some(props)).unwrap();
            if record_month {
                w.append_key_value_metadata(month_metadata(feb));
            }
            batches.iter().for_each(|b| w.write(b).unwrap());
            w.close().unwrap();
            assert!(splice::plan(pending_meta(&path).metadata()).is_none(), "{what}");
            let scratch = tmp.path().join(format!("scratch{i}"));
            append_month(&path, feb, &scratch, Format::Parquet).unwrap();
            assert_eq!(ids(&scratch, 299_998, Some(5), 10), vec![299_998, 299_999], "{what}");
        }
        let f = append_month(&odd, feb, &source, Format::Parquet).unwrap();
        let got = concat_batches(&schema::source_schema(), &file_rows(&f.path)).unwrap();
        assert_eq!(got.column(0).as_primitive::<Int64Type>().value(0), 300_000);
        assert_eq!(got.column_by_name("fare_amount").unwrap().data_type(), &arrow::datatypes::DataType::Float64);
        assert_eq!(ids(&source, 299_999, Some(2), 10), vec![299_999, 300_000]);
    }

    #[test]
    fn bad_files_are_named() {
        let (tmp, pending, source) = history("2012-08", "2012-08", 100);
        let m = Month::parse("2012-08").unwrap();
        let f = append_month(&pending_file(&pending, m), m, &source, Format::Parquet).unwrap();
        // Truncate the file: reading it must name it as corrupt.
        let bytes = std::fs::read(&f.path).unwrap();
        std::fs::write(&f.path, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_rows(&source, 0, None, 10).err().unwrap();
        assert!(matches!(err, SourceError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("2012-08_r"), "{err}");
        // A file without row_id is a schema error naming the column.
        std::fs::copy(pending_file(&pending, m), &f.path).unwrap();
        let err = read_rows(&source, 0, None, 10).err().unwrap();
        assert!(err.to_string().contains("\"row_id\" is missing"), "{err}");
        assert!(matches!(read_rows(&tmp.path().join("nowhere"), 0, None, 10), Err(SourceError::Missing(_))));
    }

    #[test]
    fn an_unsound_source_or_a_mislabelled_pending_file_refuses_the_next_month() {
        let (_tmp, pending, source) = history("2012-08", "2012-10", 100);
        let m = |s: &str| Month::parse(s).unwrap();
        let file = |s: &str| pending_file(&pending, m(s));
        let aug = append_month(&file("2012-08"), m("2012-08"), &source, Format::Parquet).unwrap();
        // The arrived file records its month; relabel it as a later month.
        let relabelled = source.join(layout::file_name(m("2012-09"), 0, 100, Format::Parquet));
        std::fs::rename(&aug.path, &relabelled).unwrap();
        let err = append_month(&file("2012-10"), m("2012-10"), &source, Format::Parquet).unwrap_err();
        assert!(matches!(err, SourceError::Unsound { .. }), "{err}");
        assert!(err.to_string().contains("2012-09_r000000000000-000000000100.parquet") && err.to_string().contains("2012-08"), "{err}");
        assert_eq!(std::fs::read_dir(&source).unwrap().count(), 1, "nothing written");
        std::fs::rename(&relabelled, &aug.path).unwrap();
        // A pending file recorded as another month is refused, naming it.
        let err = append_month(&file("2012-10"), m("2012-11"), &source, Format::Parquet).unwrap_err();
        assert!(matches!(err, SourceError::MonthMismatch { .. }) && err.to_string().contains("2012-10.parquet"), "{err}");
        assert!(verify::problems(&source).unwrap().is_empty());
    }
}
