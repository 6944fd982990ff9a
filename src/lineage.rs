//! A content hash of rows, independent of how they are batched: the lineage tag of a
//! training run (which exact rows it consumed).

use arrow::array::{Array, AsArray, GenericStringArray, RecordBatch};
use arrow::buffer::NullBuffer;
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

    /// Both lanes in one loop: two independent chains of multiplications that the CPU
    /// overlaps (one lane after the other waited on each multiplication twice).
    #[inline]
    fn bytes(&mut self, b: &[u8]) {
        let (mut h0, mut h1) = (self.0, self.1);
        for &x in b {
            h0 = (h0 ^ u64::from(x)).wrapping_mul(fnv::PRIME);
            h1 = (h1 ^ u64::from(x)).wrapping_mul(fnv::PRIME ^ 0x2a);
        }
        (self.0, self.1) = (h0, h1);
    }
}

/// A column's values, its type resolved once per batch rather than once per value.
enum Values<'a> {
    Utf8(&'a GenericStringArray<i32>),
    LargeUtf8(&'a GenericStringArray<i64>),
    Float64(&'a [f64]),
    Int64(&'a [i64]),
    Other(&'a dyn Array),
}

impl<'a> Values<'a> {
    fn of(col: &'a dyn Array) -> Self {
        match col.data_type() {
            DataType::Utf8 => Self::Utf8(col.as_string::<i32>()),
            DataType::LargeUtf8 => Self::LargeUtf8(col.as_string::<i64>()),
            DataType::Float64 => Self::Float64(col.as_primitive::<Float64Type>().values()),
            DataType::Int64 => Self::Int64(col.as_primitive::<Int64Type>().values()),
            _ => Self::Other(col),
        }
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
        let cols: Vec<(Values<'_>, Option<&NullBuffer>)> = batch.columns().iter().map(|c| (Values::of(c.as_ref()), c.nulls())).collect();
        for row in 0..batch.num_rows() {
            for (values, nulls) in &cols {
                if nulls.is_some_and(|n| n.is_null(row)) {
                    h.bytes(&[0xff, 0x00]);
                    continue;
                }
                match values {
                    Values::Utf8(a) => h.bytes(a.value(row).as_bytes()),
                    Values::LargeUtf8(a) => h.bytes(a.value(row).as_bytes()),
                    Values::Float64(v) => h.bytes(&v[row].to_le_bytes()),
                    Values::Int64(v) => h.bytes(&v[row].to_le_bytes()),
                    Values::Other(col) => {
                        let v = arrow::util::display::array_value_to_string(*col, row)?;
                        h.bytes(col.data_type().to_string().as_bytes());
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
