//! A content hash of rows, independent of how they are batched: the lineage tag of a
//! training run (which exact rows it consumed).

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use arrow::error::ArrowError;

use crate::fnv;

/// Two FNV-1a lanes with different offsets and primes: 128 bits, stable across platforms and
/// releases (lineage tags stored in MLflow are compared with it).
struct Fnv2(u64, u64);

impl Fnv2 {
    fn new() -> Self {
        Self(fnv::OFFSET, 0x6c62_272e_07bb_0142)
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0 = fnv::fnv1a_from(self.0, fnv::PRIME, b);
        self.1 = fnv::fnv1a_from(self.1, fnv::PRIME ^ 0x2a, b);
    }
}

/// Hex digest of the values of every row, column by column in schema order. Strings, floats
/// and integers are hashed by value; nulls by a marker.
pub fn hash_rows<I>(batches: I) -> Result<String, ArrowError>
where
    I: IntoIterator<Item = Result<RecordBatch, ArrowError>>,
{
    let mut h = Fnv2::new();
    for batch in batches {
        let batch = batch?;
        for row in 0..batch.num_rows() {
            for col in batch.columns() {
                if col.is_null(row) {
                    h.bytes(&[0xff, 0x00]);
                    continue;
                }
                match col.data_type() {
                    DataType::Utf8 => h.bytes(col.as_string::<i32>().value(row).as_bytes()),
                    DataType::LargeUtf8 => h.bytes(col.as_string::<i64>().value(row).as_bytes()),
                    DataType::Float64 => h.bytes(&col.as_primitive::<Float64Type>().value(row).to_le_bytes()),
                    DataType::Int64 => h.bytes(&col.as_primitive::<Int64Type>().value(row).to_le_bytes()),
                    other => {
                        let v = arrow::util::display::array_value_to_string(col, row)?;
                        h.bytes(other.to_string().as_bytes());
                        h.bytes(v.as_bytes());
                    }
                }
                h.bytes(&[0x1f]);
            }
        }
    }
    Ok(format!("{:016x}{:016x}", h.0, h.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Month;
    use crate::generator::MonthRides;

    #[test]
    fn independent_of_batching_and_sensitive_to_content() {
        let m = Month::parse("2014-02").unwrap();
        let a = hash_rows(MonthRides::new(3, m, 1000, 7, false)).unwrap();
        let b = hash_rows(MonthRides::new(3, m, 1000, 1000, false)).unwrap();
        let c = hash_rows(MonthRides::new(4, m, 1000, 1000, false)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn digest_is_stable() {
        // Lineage tags stored by earlier runs are compared with this digest: it never changes.
        use arrow::array::{Float64Array, Int64Array, StringArray};
        use std::sync::Arc;
        let batch = RecordBatch::try_from_iter([
            ("k", Arc::new(StringArray::from(vec!["ab", "c"])) as Arc<dyn Array>),
            ("n", Arc::new(Int64Array::from(vec![7, -1]))),
            ("x", Arc::new(Float64Array::from(vec![None, Some(2.5)]))),
        ])
        .unwrap();
        assert_eq!(hash_rows([Ok(batch)]).unwrap(), "415f64bed9f405eecf0915893fedf181");
    }
}
