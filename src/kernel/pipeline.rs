//! Decode, clean and learn on different threads: the calling thread decodes batches and
//! extracts their columns, a second thread cleans them (one cleaning state across the stream,
//! in row order), and the caller's `consume` runs on a third with each batch's clean rows, in
//! batch order. A batch is cleaned while the previous one is featurised and accumulated, so
//! neither core waits on the serial part (decode + de-duplication is half the work a row).
//! At most a few batches are in flight: memory stays flat in the row count.

use std::sync::mpsc;

use arrow::array::{Float64Array, RecordBatch};
use arrow::error::ArrowError;

use super::cleaning::{Cleaner, CleaningCounts};
use super::columns::RideColumns;
use super::profile::{clean_profiled, Profile, Profiler};
use super::KernelError;
use crate::schema::FARE;

/// Batches queued between two stages.
const IN_FLIGHT: usize = 1;

/// One batch for the consumer: its first row's position in the stream, the batch, its
/// columns and the indices of its clean rows.
pub(crate) struct Cleaned {
    /// Rows of the stream before this batch.
    pub first: u64,
    /// The raw batch.
    pub batch: RecordBatch,
    /// Its ride columns.
    pub cols: RideColumns,
    /// Its fares (the cleaning's rules need them: a stream without is refused).
    pub fares: Float64Array,
    /// Its rows that pass cleaning, in order.
    pub kept: Vec<usize>,
}

/// Runs `consume` on every batch of `batches` with its clean rows (every rule: training and
/// evaluation), in order; returns the cleaning counts of the whole stream (`raw`: every row).
pub(crate) fn cleaned<I, F>(batches: I, consume: F) -> Result<CleaningCounts, KernelError>
where
    I: IntoIterator<Item = Result<RecordBatch, ArrowError>>,
    F: FnMut(Cleaned) -> Result<(), KernelError> + Send,
{
    Ok(cleaned_profiled(batches, consume, None)?.0)
}

/// [`cleaned`], and with `profiler` the data-validation statistics of every row, computed on
/// the cleaning thread where each row's outcome is known.
pub(crate) fn cleaned_profiled<I, F>(batches: I, consume: F, profiler: Option<Profiler>) -> Result<(CleaningCounts, Option<Profile>), KernelError>
where
    I: IntoIterator<Item = Result<RecordBatch, ArrowError>>,
    F: FnMut(Cleaned) -> Result<(), KernelError> + Send,
{
    let (to_clean, cleaning) = mpsc::sync_channel::<(u64, RecordBatch, RideColumns, Float64Array)>(IN_FLIGHT);
    let (to_learn, learning) = mpsc::sync_channel::<Cleaned>(IN_FLIGHT);
    std::thread::scope(|s| {
        let cleaner = s.spawn(move || {
            let (mut cleaner, mut counts, mut profiler) = (Cleaner::for_training(), CleaningCounts::default(), profiler);
            for (first, batch, cols, fares) in cleaning {
                let mut kept = Vec::with_capacity(cols.len);
                match profiler.as_mut() {
                    Some(p) => clean_profiled(&mut cleaner, &cols, &mut counts, &mut kept, p),
                    None => cleaner.clean(&cols, &mut counts, &mut kept),
                }
                if to_learn.send(Cleaned { first, batch, cols, fares, kept }).is_err() {
                    break; // the consumer failed: its error is reported
                }
            }
            (counts, profiler.map(Profiler::finish))
        });
        let learner = s.spawn(move || -> Result<(), KernelError> {
            let mut consume = consume;
            for c in learning {
                consume(c)?;
            }
            Ok(())
        });
        let fed = (|| -> Result<(), KernelError> {
            let mut first = 0u64;
            for batch in batches {
                let batch = batch?;
                let cols = RideColumns::from_batch(&batch, true)?;
                let fares = cols.fare.clone().ok_or_else(|| KernelError::Schema { column: FARE.into(), reason: "missing".into() })?;
                let n = batch.num_rows() as u64;
                if to_clean.send((first, batch, cols, fares)).is_err() {
                    return Ok(()); // a later stage stopped: its error is reported
                }
                first += n;
            }
            Ok(())
        })();
        drop(to_clean);
        let counts = cleaner.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        let learned = learner.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        fed?;
        learned?;
        Ok(counts)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Month;
    use crate::generator::MonthRides;

    #[test]
    fn the_same_rows_as_one_thread_in_order() {
        let month = Month::parse("2013-05").unwrap();
        let mut seen = Vec::new();
        let counts = cleaned(MonthRides::new(5, month, 20_000, 1_500, false), |c| {
            seen.extend(c.kept.iter().map(|&i| c.first + i as u64));
            Ok(())
        })
        .unwrap();
        let (mut cleaner, mut want_counts, mut want) = (Cleaner::for_training(), CleaningCounts::default(), Vec::new());
        let mut first = 0u64;
        for batch in MonthRides::new(5, month, 20_000, 1_500, false) {
            let batch = batch.unwrap();
            let cols = RideColumns::from_batch(&batch, true).unwrap();
            let mut kept = Vec::new();
            cleaner.clean(&cols, &mut want_counts, &mut kept);
            want.extend(kept.iter().map(|&i| first + i as u64));
            first += batch.num_rows() as u64;
        }
        assert_eq!(counts, want_counts);
        assert_eq!(seen, want);
        assert!(counts.duplicate_key + counts.zero_coordinates > 0, "{counts:?}");
    }

    #[test]
    fn errors_of_any_stage_are_reported() {
        let month = Month::parse("2013-05").unwrap();
        let failing = MonthRides::new(5, month, 5_000, 1_000, false).take(2).chain(std::iter::once(Err(ArrowError::ComputeError("disk".into()))));
        let err = cleaned(failing, |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("disk"), "{err}");
        let mut calls = 0;
        let err = cleaned(MonthRides::new(5, month, 5_000, 1_000, false), |_| {
            calls += 1;
            if calls == 2 { Err(KernelError::Invalid("consumer".into())) } else { Ok(()) }
        })
        .unwrap_err();
        assert!(err.to_string().contains("consumer"), "{err}");
    }
}
