//! How many rows the core has read since the process started: decoded from the local source,
//! or received as Arrow data from Python. A lifecycle's share of it shows that each new row is
//! read once (`rows_read()` before and after).

use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use arrow::error::ArrowError;

static ROWS: AtomicU64 = AtomicU64::new(0);

/// Rows read so far by this process.
#[must_use]
pub fn total() -> u64 {
    ROWS.load(Ordering::Relaxed)
}

/// A stream of batches whose rows are counted as they are read.
pub struct Counted<I>(pub I);

impl<I: Iterator<Item = Result<RecordBatch, ArrowError>>> Iterator for Counted<I> {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = self.0.next();
        if let Some(Ok(batch)) = &next {
            ROWS.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        }
        next
    }
}

impl<I: arrow::array::RecordBatchReader> arrow::array::RecordBatchReader for Counted<I> {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        self.0.schema()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Month;
    use crate::generator::MonthRides;

    #[test]
    fn counts_the_rows_read() {
        let before = total();
        let n = Counted(MonthRides::new(1, Month::parse("2010-01").unwrap(), 1500, 1000, false)).count();
        assert_eq!(n, 2);
        // Other tests may read at the same time: at least these rows were counted.
        assert!(total() - before >= 1500);
    }
}
