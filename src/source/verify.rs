//! The content check of the source: every file holds what its name says. Cheap by design (it
//! runs before every arrival and lifecycle): a Parquet file is judged by its footer alone (row
//! count, the month recorded at arrival, `row_id` statistics), a CSV file by its header and its
//! first and last rows. No row group is decoded.
//!
//! A CSV file carries no metadata, so its month is the month of its first and last rows'
//! `pickup_datetime` (every row of a month file is of that month) and its row count is implied
//! by the first and last `row_id`; the reader checks that every `row_id` in between is there
//! when it reads them.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;

use super::layout::{self, Format, MonthFile};
use super::reader::check_types;
use super::SourceError;
use crate::month_file::recorded_month;
use crate::schema;

/// Bytes read at each end of a CSV file to find its first and last rows.
const CSV_PROBE: u64 = 64 * 1024;

/// Everything wrong with the source in `dir`, each naming its file; empty when it is sound (a
/// source folder that does not exist yet is sound: nothing has arrived). Name-level problems
/// (gaps, overlaps, empty ranges, months out of order) come first, then each file's content.
pub fn problems(dir: &Path) -> Result<Vec<SourceError>, SourceError> {
    let files = match layout::scan(dir) {
        Err(SourceError::Missing(_)) => return Ok(Vec::new()),
        other => other?,
    };
    let mut found = layout::name_problems(&files);
    for f in files.iter().filter(|f| f.end > f.first) {
        if let Err(e) = check_file(f) {
            found.push(e);
        }
    }
    Ok(found)
}

/// Refuses an unsound source with its first problem (and how many more there are).
pub fn ensure_sound(dir: &Path) -> Result<(), SourceError> {
    let mut found = problems(dir)?.into_iter();
    match found.next() {
        None => Ok(()),
        Some(first) => Err(SourceError::Unsound { first: Box::new(first), more: found.count() }),
    }
}

/// Checks one month file's content against its name.
pub fn check_file(f: &MonthFile) -> Result<(), SourceError> {
    match f.format {
        Format::Parquet => check_parquet(f),
        Format::Csv => check_csv(f),
    }
}

fn check_parquet(f: &MonthFile) -> Result<(), SourceError> {
    let path = &f.path;
    let file = File::open(path).map_err(|e| SourceError::Io { path: path.clone(), source: e })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| SourceError::Corrupt { path: path.clone(), reason: e.to_string() })?;
    check_types(path, builder.schema())?;
    let meta = builder.metadata();
    let rows: i64 = meta.row_groups().iter().map(|rg| rg.num_rows()).sum();
    if rows as u64 != f.rows() {
        return Err(SourceError::RowIdMismatch { path: path.clone(), detail: format!("holds {rows} rows but its name promises {}", f.rows()) });
    }
    let named = f.month.to_string();
    match recorded_month(meta) {
        Some(recorded) if recorded != named => {
            return Err(SourceError::MonthMismatch { path: path.clone(), recorded: recorded.to_owned(), how: "recorded at arrival", named });
        }
        Some(_) => {}
        // Files that arrived before months were recorded: the pickup times' statistics tell.
        None => {
            let (lo, hi) = byte_range(meta, schema::PICKUP_DATETIME).ok_or_else(|| SourceError::Unverifiable {
                path: path.clone(),
                reason: "it records no month and has no pickup_datetime statistics".into(),
            })?;
            for end in [lo, hi] {
                let month = String::from_utf8_lossy(&end[..end.len().min(7)]).into_owned();
                if month != named {
                    return Err(SourceError::MonthMismatch { path: path.clone(), recorded: month, how: "pickup_datetime statistics", named });
                }
            }
        }
    }
    let (lo, hi) = int_range(meta, schema::ROW_ID)
        .ok_or_else(|| SourceError::Unverifiable { path: path.clone(), reason: "it has no row_id statistics".into() })?;
    if lo != f.first as i64 || hi != f.end as i64 - 1 {
        return Err(SourceError::RowIdMismatch {
            path: path.clone(),
            detail: format!("holds row_id {lo}..={hi} but its name promises {}..={}", f.first, f.end - 1),
        });
    }
    Ok(())
}

fn column_index(meta: &ParquetMetaData, name: &str) -> Option<usize> {
    meta.file_metadata().schema_descr().columns().iter().position(|c| c.name() == name)
}

/// Minimum and maximum of an INT64 column over every row group, from the footer's statistics.
fn int_range(meta: &ParquetMetaData, name: &str) -> Option<(i64, i64)> {
    let i = column_index(meta, name)?;
    let mut range: Option<(i64, i64)> = None;
    for rg in meta.row_groups() {
        let Some(Statistics::Int64(s)) = rg.column(i).statistics() else { return None };
        let (lo, hi) = (*s.min_opt()?, *s.max_opt()?);
        range = Some(range.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
    }
    range
}

/// Minimum and maximum of a string column over every row group, from the footer's statistics.
fn byte_range(meta: &ParquetMetaData, name: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let i = column_index(meta, name)?;
    let mut range: Option<(Vec<u8>, Vec<u8>)> = None;
    for rg in meta.row_groups() {
        let Some(Statistics::ByteArray(s)) = rg.column(i).statistics() else { return None };
        let (lo, hi) = (s.min_opt()?.data().to_vec(), s.max_opt()?.data().to_vec());
        range = Some(match range {
            None => (lo, hi),
            Some((a, b)) => (a.min(lo), b.max(hi)),
        });
    }
    range
}

fn check_csv(f: &MonthFile) -> Result<(), SourceError> {
    let path = &f.path;
    let io = |e: std::io::Error| SourceError::Io { path: path.clone(), source: e };
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut head = Vec::new();
    (&mut file).take(CSV_PROBE).read_to_end(&mut head).map_err(io)?;
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let (header, first) = (lines.next().unwrap_or_default().to_vec(), lines.next().unwrap_or_default().to_vec());
    file.seek(SeekFrom::Start(len.saturating_sub(CSV_PROBE))).map_err(io)?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).map_err(io)?;
    let tail = tail.strip_suffix(b"\n").unwrap_or(&tail);
    let last = tail.rsplit(|&b| b == b'\n').next().unwrap_or_default();
    let last = last.strip_suffix(b"\r").unwrap_or(last);
    if first.is_empty() || last == header.as_slice() {
        return Err(SourceError::RowIdMismatch { path: path.clone(), detail: format!("holds no rows but its name promises {}", f.rows()) });
    }
    let want = schema::source_schema();
    let names: Vec<&[u8]> = header.split(|&b| b == b',').collect();
    if names.len() != want.fields().len() || names.iter().zip(want.fields()).any(|(n, f)| *n != f.name().as_bytes()) {
        return Err(SourceError::Schema {
            path: path.clone(),
            reason: format!("CSV header is {:?}, expected the columns {:?}", String::from_utf8_lossy(&header), want.fields().iter().map(|f| f.name()).collect::<Vec<_>>()),
        });
    }
    let mut text = header;
    for line in [first.as_slice(), last] {
        text.push(b'\n');
        text.extend_from_slice(line);
    }
    let corrupt = |e: &dyn std::fmt::Display| SourceError::Corrupt { path: path.clone(), reason: e.to_string() };
    let mut reader = arrow::csv::ReaderBuilder::new(Arc::clone(&want))
        .with_header(true)
        .build(std::io::Cursor::new(text))
        .map_err(|e| corrupt(&e))?;
    let batch = reader.next().ok_or_else(|| corrupt(&"no rows after the header"))?.map_err(|e| corrupt(&e))?;
    let ids = batch.column(0).as_primitive::<Int64Type>();
    let times = batch.column(want.index_of(schema::PICKUP_DATETIME).map_err(|e| corrupt(&e))?).as_string::<i32>();
    if ids.len() != 2 || ids.null_count() > 0 {
        return Err(corrupt(&"its first or last row has no row_id"));
    }
    if ids.value(0) != f.first as i64 || ids.value(1) != f.end as i64 - 1 {
        return Err(SourceError::RowIdMismatch {
            path: path.clone(),
            detail: format!("holds row_id {}..={} but its name promises {}..={}", ids.value(0), ids.value(1), f.first, f.end - 1),
        });
    }
    let named = f.month.to_string();
    for i in 0..2 {
        let t = if times.is_null(i) { "" } else { times.value(i) };
        let month = t.get(..7).unwrap_or(t);
        if month != named {
            return Err(SourceError::MonthMismatch { path: path.clone(), recorded: month.to_owned(), how: "pickup_datetime of its first and last rows", named });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Month;
    use crate::generator::history::{generate_history, pending_file, HistoryOptions};
    use crate::source::append::append_month;

    fn source(format: Format) -> (tempfile::TempDir, Vec<MonthFile>) {
        let tmp = tempfile::tempdir().unwrap();
        let (pending, src) = (tmp.path().join("pending"), tmp.path().join("source"));
        let opts = HistoryOptions {
            seed: 3,
            first: Month::parse("2009-01").unwrap(),
            last: Month::parse("2009-03").unwrap(),
            rows_per_month: Some(200),
            keep_existing: false,
            scenario: Default::default(),
        };
        let months = generate_history(&pending, &opts, &mut |_| true).unwrap();
        let files = months.iter().map(|g| append_month(&pending_file(&pending, g.month), g.month, &src, format).unwrap()).collect();
        (tmp, files)
    }

    fn messages(dir: &Path) -> Vec<String> {
        problems(dir).unwrap().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_sound_source_has_no_problems_and_a_missing_one_is_sound() {
        for format in [Format::Parquet, Format::Csv] {
            let (tmp, _) = source(format);
            assert!(messages(&tmp.path().join("source")).is_empty());
        }
        assert!(messages(Path::new("/nonexistent/source")).is_empty());
    }

    #[test]
    fn a_relabelled_file_is_caught_by_its_content() {
        for format in [Format::Parquet, Format::Csv] {
            let (tmp, files) = source(format);
            let dir = tmp.path().join("source");
            // The last month renamed as a later one: names alone stay sound.
            let later = dir.join(layout::file_name(Month::parse("2009-05").unwrap(), 400, 600, format));
            std::fs::rename(&files[2].path, &later).unwrap();
            assert!(layout::list(&dir).is_ok());
            let found = messages(&dir);
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].contains("2009-05_r000000000400-000000000600") && found[0].contains("of month 2009-03"), "{found:?}");
            assert!(matches!(ensure_sound(&dir), Err(SourceError::Unsound { more: 0, .. })));
        }
    }

    #[test]
    fn row_counts_and_row_ids_must_match_the_name() {
        for format in [Format::Parquet, Format::Csv] {
            let (tmp, files) = source(format);
            let dir = tmp.path().join("source");
            // Two files swap their contents: names tile, months are right, rows are not.
            let (a, b) = (&files[0].path, &files[1].path);
            let keep = std::fs::read(a).unwrap();
            std::fs::copy(b, a).unwrap();
            std::fs::write(b, keep).unwrap();
            let found = messages(&dir);
            assert_eq!(found.len(), 2, "{found:?}");
            for name in ["2009-01_r", "2009-02_r"] {
                assert!(found.iter().any(|m| m.contains(name)), "{found:?}");
            }
        }
        let (tmp, files) = source(Format::Parquet);
        let short = files[1].path.with_file_name(layout::file_name(files[1].month, 200, 300, Format::Parquet));
        std::fs::rename(&files[1].path, &short).unwrap();
        let found = messages(&tmp.path().join("source"));
        assert!(found.iter().any(|m| m.contains("holds 200 rows but its name promises 100")), "{found:?}");
        assert!(found.iter().any(|m| m.contains("gap")), "{found:?}");
    }

    #[test]
    fn files_from_before_months_were_recorded_are_judged_by_their_pickup_times() {
        let (tmp, files) = source(Format::Parquet);
        let dir = tmp.path().join("source");
        // Rewrite a file without the month metadata, as older versions wrote it.
        let f = &files[2];
        let batches: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(File::open(&f.path).unwrap()).unwrap().build().unwrap().map(Result::unwrap).collect();
        let mut w = parquet::arrow::ArrowWriter::try_new(File::create(&f.path).unwrap(), batches[0].schema(), None).unwrap();
        for b in &batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
        assert!(messages(&dir).is_empty());
        std::fs::rename(&f.path, dir.join(layout::file_name(Month::parse("2009-05").unwrap(), 400, 600, Format::Parquet))).unwrap();
        let found = messages(&dir);
        assert!(found.iter().any(|m| m.contains("pickup_datetime statistics")), "{found:?}");
    }
}
