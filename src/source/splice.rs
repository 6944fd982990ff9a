//! Arrival without re-encoding: a pending Parquet month whose columns are encoded as the
//! source encodes them (the generator and the Kaggle import write them so) is copied into the
//! source file column chunk by column chunk; only the new `row_id` column is encoded. At the
//! Kaggle size that turns half a second of decoding and encoding a month into a file copy
//! (docs/decisions.md, "Arrival").

use std::fs::File;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowWriter};
use parquet::arrow::ArrowSchemaConverter;
use parquet::column::writer::ColumnCloseResult;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;

use crate::calendar::Month;
use crate::month_file::{month_metadata, recorded_month, writer_properties};
use crate::schema;

/// For each source column after `row_id`, the pending file's column holding it, when the file
/// is one this project wrote as it writes the source (so nothing is learnt about its pages by
/// copying them that decoding would have found): written by parquet-rs with its month recorded,
/// every needed chunk stored as the source stores it (same name, physical and logical type,
/// nullability, no nesting; Snappy; statistics; an offset index, without which the file cannot
/// be written beside `row_id`'s). `None` otherwise, and the month is decoded and encoded again:
/// a file another tool wrote (pyarrow's, another codec this build may not read) or the import's
/// (no statistics, numbers uncompressed, small row groups).
#[must_use]
pub fn plan(pending: &ParquetMetaData) -> Option<Vec<usize>> {
    let ours = pending.file_metadata().created_by().is_some_and(|c| c.starts_with("parquet-rs")) && recorded_month(pending).is_some();
    if !ours {
        return None;
    }
    let target = ArrowSchemaConverter::new().convert(&schema::source_schema()).ok()?;
    let found = pending.file_metadata().schema_descr();
    let plan: Vec<usize> = (1..target.num_columns())
        .map(|i| {
            let want = target.column(i);
            let j = (0..found.num_columns()).find(|&j| found.column(j).path() == want.path())?;
            (found.column(j).as_ref() == want.as_ref()).then_some(j)
        })
        .collect::<Option<_>>()?;
    let indexes = pending.offset_index()?;
    let stored_as_ours = pending.row_groups().iter().zip(indexes).all(|(group, offsets)| {
        plan.iter().all(|&j| {
            let chunk = group.column(j);
            chunk.compression() == Compression::SNAPPY
                && chunk.statistics().is_some()
                && offsets.get(j).is_some_and(|o| !o.page_locations.is_empty())
        })
    });
    (indexes.len() == pending.num_row_groups() && stored_as_ours).then_some(plan)
}

/// Writes the source file of `month` into `out`: per row group of `pending` (whose footer,
/// page indexes included, is `meta`), `row_id`s from `first` on, then the chunks `plan` names,
/// copied. The month is recorded in the key-value metadata and the Arrow schema is the
/// source's, as [`ArrowWriter`] writes them.
pub fn splice(pending: &File, meta: &ParquetMetaData, plan: &[usize], first: u64, month: Month, out: File) -> Result<File, ParquetError> {
    let source = schema::source_schema();
    let mut writer = ArrowWriter::try_new(out, source.clone(), Some(writer_properties()))?;
    writer.append_key_value_metadata(month_metadata(month));
    let (mut file, columns) = writer.into_serialized_writer()?;
    let mut next = i64::try_from(first).map_err(|_| ParquetError::General(format!("row_id {first} is out of range")))?;
    for (g, group_meta) in meta.row_groups().iter().enumerate() {
        let rows = group_meta.num_rows();
        let mut group = file.next_row_group()?;
        let mut ids = columns
            .create_column_writers(g)?
            .into_iter()
            .next()
            .ok_or_else(|| ParquetError::General("the source schema has no row_id column".into()))?;
        let array: ArrayRef = Arc::new(Int64Array::from_iter_values(next..next + rows));
        for leaf in compute_leaves(source.field(0), &array)? {
            ids.write(&leaf)?;
        }
        ids.close()?.append_to_row_group(&mut group)?;
        for &j in plan {
            let chunk = group_meta.column(j);
            group.append_column(
                pending,
                ColumnCloseResult {
                    bytes_written: u64::try_from(chunk.compressed_size()).unwrap_or(0),
                    rows_written: u64::try_from(rows).unwrap_or(0),
                    metadata: chunk.clone(),
                    bloom_filter: None,
                    column_index: meta.column_index().and_then(|c| c.get(g)?.get(j).cloned()),
                    offset_index: meta.offset_index().and_then(|o| o.get(g)?.get(j).cloned()),
                },
            )?;
        }
        group.close()?;
        next += rows;
    }
    file.into_inner()
}
