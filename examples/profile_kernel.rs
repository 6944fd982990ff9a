//! Where the kernel's time goes: decode, columns (incl. timestamp parsing), cleaning,
//! features and accumulation of a source slice, timed separately on one thread.
//!
//!     cargo run --profile dev-fast --example profile_kernel -- SOURCE_DIR [ROWS] [BATCH_ROWS]

use std::time::{Duration, Instant};

use _core::kernel::cleaning::{Cleaner, CleaningCounts};
use _core::kernel::columns::RideColumns;
use _core::kernel::features::{Featurizer, N_FEATURES};
use _core::kernel::stats::{SparseRows, Stats};
use _core::source::reader;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: profile_kernel SOURCE_DIR [ROWS] [BATCH_ROWS]")?;
    let rows: Option<u64> = args.next().map(|s| s.parse()).transpose()?;
    let batch_rows: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(65_536);
    let mut t = [Duration::ZERO; 5];
    let mut lap = |i: usize, since: &mut Instant, t: &mut [Duration; 5]| {
        let now = Instant::now();
        t[i] += now - *since;
        *since = now;
    };
    let started = Instant::now();
    let mut reader = reader::read_rows(std::path::Path::new(&dir), 0, rows, batch_rows)?;
    let (mut cleaner, mut counts, mut kept) = (Cleaner::for_training(), CleaningCounts::default(), Vec::new());
    let mut feat = Featurizer::new();
    let mut acc = SparseRows::new(N_FEATURES);
    let mut stats = Stats::new(N_FEATURES);
    let mut x = Vec::new();
    let mut now = Instant::now();
    while let Some(batch) = reader.next() {
        let batch = batch?;
        lap(0, &mut now, &mut t);
        let cols = RideColumns::from_batch(&batch, true)?;
        lap(1, &mut now, &mut t);
        kept.clear();
        cleaner.clean(&cols, &mut counts, &mut kept);
        lap(2, &mut now, &mut t);
        x.resize(kept.len() * N_FEATURES, 0.0);
        for (r, &i) in kept.iter().enumerate() {
            feat.write(&cols, i, &mut x[r * N_FEATURES..(r + 1) * N_FEATURES]);
        }
        lap(3, &mut now, &mut t);
        let fares = cols.fare.as_ref().ok_or("no fare")?;
        for (r, &i) in kept.iter().enumerate() {
            acc.add(&x[r * N_FEATURES..(r + 1) * N_FEATURES], fares.value(i));
        }
        stats.absorb(&mut acc);
        lap(4, &mut now, &mut t);
    }
    let total = started.elapsed();
    let n = counts.raw as f64;
    println!("{} rows ({} kept) in {:.3} s on one thread: {:.2} M rows/s", counts.raw, counts.kept, total.as_secs_f64(), n / total.as_secs_f64() / 1e6);
    for (name, d) in ["decode", "columns", "clean", "features", "accumulate"].iter().zip(t) {
        println!("  {name:<11}{:>8.3} s {:>6.1}%  {:>7.1} ns/row", d.as_secs_f64(), 100.0 * d.as_secs_f64() / total.as_secs_f64(), d.as_secs_f64() * 1e9 / n);
    }
    println!("  checksum {:.6e}", stats.xtx.sum());
    Ok(())
}
