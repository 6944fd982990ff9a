//! Work on every core: the one thread helper of the kernel (the model's accumulation and
//! prediction, the lifecycle pass).

/// Batches with fewer kept rows are summed on the calling thread.
const PARALLEL_MIN_ROWS: usize = 8192;

/// Splits `rows` into one chunk per core and runs `work` on each, results in chunk order. Few
/// rows run inline. A worker that panics re-raises here: no row is ever silently dropped.
pub(crate) fn on_cores<T: Send>(rows: &[usize], work: impl Fn(&[usize]) -> T + Sync) -> Vec<T> {
    if rows.len() < PARALLEL_MIN_ROWS {
        return vec![work(rows)];
    }
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get).clamp(1, 8);
    let work = &work;
    std::thread::scope(|s| {
        let handles: Vec<_> = rows.chunks(rows.len().div_ceil(threads)).map(|chunk| s.spawn(move || work(chunk))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_once_in_order() {
        for n in [0, 10, PARALLEL_MIN_ROWS + 3] {
            let rows: Vec<usize> = (0..n).collect();
            let got: Vec<usize> = on_cores(&rows, <[usize]>::to_vec).concat();
            assert_eq!(got, rows);
        }
    }
}
