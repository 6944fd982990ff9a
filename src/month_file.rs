//! A month file in Parquet, pending or arrived: how every file is written, and the month it
//! records in its key-value metadata (so a renamed file is caught).

use parquet::basic::Compression;
use parquet::file::metadata::{KeyValue, ParquetMetaData};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::calendar::Month;
use crate::schema;

/// Parquet settings of every file this project writes: row groups small enough to skip.
/// `row_id` is never dictionary-encoded: its values are all distinct, and trying a dictionary
/// first cost most of an arrival's time.
#[must_use]
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(131_072))
        .set_column_dictionary_enabled(ColumnPath::from(schema::ROW_ID), false)
        .build()
}

/// The key-value metadata recording the month of a month file's rows.
#[must_use]
pub fn month_metadata(month: Month) -> KeyValue {
    KeyValue::new(schema::MONTH_METADATA_KEY.to_owned(), month.to_string())
}

/// The month a Parquet file records in its metadata, if it records one.
#[must_use]
pub fn recorded_month(meta: &ParquetMetaData) -> Option<&str> {
    meta.file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|kv| kv.key == schema::MONTH_METADATA_KEY)
        .and_then(|kv| kv.value.as_deref())
}
