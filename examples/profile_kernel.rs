//! Where the kernel's time goes: decode, columns (incl. timestamp parsing), cleaning,
//! features and accumulation of a source slice, timed separately on one thread. Phases are
//! measured in CPU time of the thread (from /proc/thread-self/schedstat), which a shared,
//! loaded machine disturbs much less than wall time (the process's total CPU is in
//! `benches/bench_kernel.py`).
//!
//!     cargo run --profile dev-fast --example profile_kernel -- SOURCE_DIR [ROWS] [BATCH_ROWS]

use std::time::{Duration, Instant};

/// CPU time of the calling thread (Linux), or zero where unavailable.
fn cpu() -> Duration {
    let ns = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

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
    let lap = |i: usize, since: &mut Duration, t: &mut [Duration; 5]| {
        let now = cpu();
        t[i] += now - *since;
        *since = now;
    };
    let (started, cpu0) = (Instant::now(), cpu());
    let reader = reader::read_rows(std::path::Path::new(&dir), 0, rows, batch_rows)?;
    let (mut cleaner, mut counts, mut kept) = (Cleaner::for_training(), CleaningCounts::default(), Vec::new());
    let mut feat = Featurizer::new();
    let mut acc = SparseRows::new(N_FEATURES);
    let mut stats = Stats::new(N_FEATURES);
    let mut x = Vec::new();
    let mut now = cpu();
    for batch in reader {
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
    let (wall, total) = (started.elapsed(), cpu() - cpu0);
    let n = counts.raw as f64;
    println!(
        "{} rows ({} kept) on one thread: {:.3} s CPU ({:.2} M rows per CPU-s), {:.3} s wall",
        counts.raw,
        counts.kept,
        total.as_secs_f64(),
        n / total.as_secs_f64() / 1e6,
        wall.as_secs_f64()
    );
    for (name, d) in ["decode", "columns", "clean", "features", "accumulate"].iter().zip(t) {
        println!("  {name:<11}{:>8.3} s {:>6.1}%  {:>7.1} ns/row", d.as_secs_f64(), 100.0 * d.as_secs_f64() / total.as_secs_f64(), d.as_secs_f64() * 1e9 / n);
    }
    println!("  checksum {:.6e}", stats.xtx.sum());
    Ok(())
}
