//! Data-validation statistics of raw rows, per ride month, computed while the rows are
//! cleaned (the one pass): rows dropped by each cleaning reason, and for the target and each
//! raw input a fixed-bin histogram with its count, sum, zeros and NaN/nulls.
//!
//! Fixed bins make the statistics mergeable by addition (months into a reference, halves of a
//! stream into the whole) and let the warehouse compute the same numbers in SQL; quantiles and
//! distribution distances (Kolmogorov–Smirnov) are read off the histograms by the gate.

use std::collections::BTreeMap;

use arrow::array::{Array, Float64Array, RecordBatch};
use arrow::error::ArrowError;

use super::cleaning::{Cleaner, CleaningCounts, Reason};
use super::columns::{RideColumns, NO_TIME};
use super::KernelError;
use crate::calendar::{Month, MonthIndexCache, NyClock};

/// A field's fixed bins: `bins` bins of `width` from `lo`, plus an underflow bin (index 0)
/// and an overflow bin (index `bins + 1`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bins {
    /// The field's name (the Kaggle column, or `distance_km` / `hour`).
    pub name: &'static str,
    /// Lower edge of the first regular bin.
    pub lo: f64,
    /// Width of a bin.
    pub width: f64,
    /// Regular bins.
    pub bins: usize,
}

impl Bins {
    /// The histogram index of a finite value.
    #[inline]
    #[must_use]
    pub fn index(&self, v: f64) -> usize {
        // The same arithmetic as the profiler's loop (and the warehouse's SQL): a multiplication
        // by the inverse width, truncated.
        let x = (v - self.lo) * (1.0 / self.width);
        if x < 0.0 {
            0
        } else if x >= self.bins as f64 {
            self.bins + 1
        } else {
            x as usize + 1
        }
    }
}

/// The profiled fields, in the order of [`MonthProfile::fields`]. The ranges hold a century of
/// real NYC rides with room for gross errors (a fare in cents, coordinates swapped) to land in
/// regular bins, so that their medians can be told.
pub const FIELDS: [Bins; 8] = [
    Bins { name: "fare_amount", lo: -50.0, width: 0.5, bins: 2100 },
    Bins { name: "distance_km", lo: 0.0, width: 0.1, bins: 1500 },
    Bins { name: "pickup_latitude", lo: 40.0, width: 0.005, bins: 400 },
    Bins { name: "pickup_longitude", lo: -75.0, width: 0.005, bins: 400 },
    Bins { name: "dropoff_latitude", lo: 40.0, width: 0.005, bins: 400 },
    Bins { name: "dropoff_longitude", lo: -75.0, width: 0.005, bins: 400 },
    Bins { name: "hour", lo: 0.0, width: 1.0, bins: 24 },
    Bins { name: "passenger_count", lo: 0.0, width: 1.0, bins: 10 },
];

/// Kilometres per degree of longitude and latitude at New York (40.75° N): the profile's
/// distance is the equirectangular one, cheap here and in SQL, exact enough for a histogram.
pub const KM_PER_DEG_LON: f64 = 84.29;
/// See [`KM_PER_DEG_LON`].
pub const KM_PER_DEG_LAT: f64 = 111.05;

/// The cleaning reasons, in the order of [`MonthProfile::drops`].
pub const REASONS: [&str; 6] = ["missing", "zero_coordinates", "fare_out_of_range", "passenger_count", "outside_nyc", "duplicate_key"];

fn reason_index(r: Reason) -> usize {
    match r {
        Reason::Missing => 0,
        Reason::ZeroCoordinates => 1,
        Reason::FareOutOfRange => 2,
        Reason::PassengerCount => 3,
        Reason::OutsideNyc => 4,
        Reason::DuplicateKey => 5,
    }
}

/// One field's statistics over raw rows.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldStats {
    /// Finite values seen.
    pub count: u64,
    /// Nulls and non-finite values.
    pub nan: u64,
    /// Values equal to zero.
    pub zeros: u64,
    /// Sum of the finite values (the mean is `sum / count`).
    pub sum: f64,
    /// Counts per bin: underflow, the regular bins, overflow.
    pub hist: Vec<u64>,
}

impl FieldStats {
    fn new(bins: &Bins) -> Self {
        Self { count: 0, nan: 0, zeros: 0, sum: 0.0, hist: vec![0; bins.bins + 2] }
    }

    fn merge(&mut self, o: &Self) {
        self.count += o.count;
        self.nan += o.nan;
        self.zeros += o.zeros;
        self.sum += o.sum;
        for (a, b) in self.hist.iter_mut().zip(&o.hist) {
            *a += b;
        }
    }
}

/// The statistics of one ride month's raw rows.
#[derive(Clone, Debug, PartialEq)]
pub struct MonthProfile {
    /// Raw rows.
    pub raw: u64,
    /// Rows kept by cleaning.
    pub kept: u64,
    /// Rows dropped, per reason of [`REASONS`].
    pub drops: [u64; 6],
    /// Per field of [`FIELDS`].
    pub fields: Vec<FieldStats>,
}

impl Default for MonthProfile {
    fn default() -> Self {
        Self { raw: 0, kept: 0, drops: [0; 6], fields: FIELDS.iter().map(FieldStats::new).collect() }
    }
}

impl MonthProfile {
    /// Adds another profile's counts to this one.
    pub fn merge(&mut self, o: &Self) {
        self.raw += o.raw;
        self.kept += o.kept;
        for (a, b) in self.drops.iter_mut().zip(o.drops) {
            *a += b;
        }
        for (a, b) in self.fields.iter_mut().zip(&o.fields) {
            a.merge(b);
        }
    }
}

/// Profiles of a stream, per ride month (UTC month index since 2009-01; `None` for rows
/// without a pickup time).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    /// The months, oldest first.
    pub months: BTreeMap<Option<i32>, MonthProfile>,
}

impl Profile {
    /// Adds another profile (for example, of the rows that follow) to this one.
    pub fn merge(&mut self, o: &Self) {
        for (m, p) in &o.months {
            self.months.entry(*m).or_default().merge(p);
        }
    }
}

/// Accumulates a [`Profile`] a batch at a time, column by column over each run of rows of
/// one ride month (a month's rows are contiguous in the source: a batch is one run, and the
/// map is looked up once per month change).
#[derive(Default)]
pub struct Profiler {
    done: Profile,
    current: Option<(Option<i32>, MonthProfile)>,
    months: MonthIndexCache,
    clock: NyClock,
    /// Each row's cleaning outcome in the batch: 0 kept, else 1 + the reason's index.
    outcomes: Vec<u8>,
}

/// Adds the finite values of `vals` (nulls where `arr` has them) to `f`, with the sums kept
/// in registers.
#[inline]
fn add_values(f: &mut FieldStats, bins: &Bins, vals: impl Iterator<Item = f64>) {
    let (inv, lo, top) = (1.0 / bins.width, bins.lo, bins.bins as f64);
    let (mut count, mut nan, mut zeros, mut sum) = (0u64, 0u64, 0u64, 0.0f64);
    let hist = &mut f.hist[..];
    for v in vals {
        if v.is_finite() {
            count += 1;
            sum += v;
            zeros += u64::from(v == 0.0);
            let x = (v - lo) * inv;
            // `as usize` truncates: the floor for x ≥ 0.
            let i = if x < 0.0 { 0 } else if x >= top { bins.bins + 1 } else { x as usize + 1 };
            hist[i.min(bins.bins + 1)] += 1;
        } else {
            nan += 1;
        }
    }
    f.count += count;
    f.nan += nan;
    f.zeros += zeros;
    f.sum += sum;
}

/// The values of rows `a..b` of a float column, NaN for nulls.
fn floats(arr: &Float64Array, a: usize, b: usize) -> impl Iterator<Item = f64> + '_ {
    let vals = &arr.values()[a..b];
    let nulls = arr.nulls().filter(|n| n.null_count() > 0);
    vals.iter().enumerate().map(move |(k, &v)| if nulls.is_some_and(|n| n.is_null(a + k)) { f64::NAN } else { v })
}

impl Profiler {
    /// Adds the rows of `c`, whose cleaning outcomes are in `self.outcomes`.
    fn add_batch(&mut self, c: &RideColumns) {
        let mut a = 0;
        while a < c.len {
            let month_of = |m: &mut MonthIndexCache, ts: i64| (ts != NO_TIME).then(|| m.of(ts));
            let month = month_of(&mut self.months, c.ts[a]);
            let mut b = a + 1;
            while b < c.len && month_of(&mut self.months, c.ts[b]) == month {
                b += 1;
            }
            self.add_run(c, a, b, month);
            a = b;
        }
    }

    /// Adds rows `a..b` of `c`, all of ride month `month`.
    fn add_run(&mut self, c: &RideColumns, a: usize, b: usize, month: Option<i32>) {
        if self.current.as_ref().is_none_or(|(m, _)| *m != month) {
            self.flush();
            let p = self.done.months.remove(&month).unwrap_or_default();
            self.current = Some((month, p));
        }
        let Some((_, p)) = self.current.as_mut() else { return };
        let mut tally = [0u64; 7];
        for &o in &self.outcomes[a..b] {
            tally[usize::from(o)] += 1;
        }
        p.raw += (b - a) as u64;
        p.kept += tally[0];
        for (d, t) in p.drops.iter_mut().zip(&tally[1..]) {
            *d += t;
        }
        let f = &mut p.fields;
        match c.fare.as_ref() {
            Some(fare) => add_values(&mut f[0], &FIELDS[0], floats(fare, a, b)),
            None => f[0].nan += (b - a) as u64,
        }
        let distance = floats(&c.plon, a, b).zip(floats(&c.plat, a, b)).zip(floats(&c.dlon, a, b).zip(floats(&c.dlat, a, b))).map(
            |((plon, plat), (dlon, dlat))| {
                let (dx, dy) = ((dlon - plon) * KM_PER_DEG_LON, (dlat - plat) * KM_PER_DEG_LAT);
                (dx * dx + dy * dy).sqrt()
            },
        );
        add_values(&mut f[1], &FIELDS[1], distance);
        add_values(&mut f[2], &FIELDS[2], floats(&c.plat, a, b));
        add_values(&mut f[3], &FIELDS[3], floats(&c.plon, a, b));
        add_values(&mut f[4], &FIELDS[4], floats(&c.dlat, a, b));
        add_values(&mut f[5], &FIELDS[5], floats(&c.dlon, a, b));
        // New York's offset is constant over a run of one UTC month but at a DST change: find
        // that instant once (rows are not in time order within a month, so a per-row clock
        // cache would miss).
        let (off_lo, switch, off_hi) = match month {
            Some(m) => {
                let (lo, hi) = (Month::from_index(m).start(), Month::from_index(m + 1).start() - 1);
                let (off_lo, off_hi) = (self.clock.offset(lo), self.clock.offset(hi));
                let (mut l, mut h) = (lo, hi);
                while off_lo != off_hi && h - l > 1 {
                    let mid = l + (h - l) / 2;
                    if self.clock.offset(mid) == off_lo { l = mid } else { h = mid }
                }
                (off_lo, if off_lo == off_hi { i64::MAX } else { h }, off_hi)
            }
            None => (0, i64::MAX, 0),
        };
        let hours = c.ts[a..b].iter().map(|&ts| {
            if ts == NO_TIME {
                f64::NAN
            } else {
                let off = if ts < switch { off_lo } else { off_hi };
                ((ts + off).rem_euclid(86_400) / 3600) as f64
            }
        });
        add_values(&mut f[6], &FIELDS[6], hours);
        let pc = &c.passengers;
        let nulls = pc.nulls().filter(|n| n.null_count() > 0);
        let passengers = pc.values()[a..b].iter().enumerate().map(|(k, &v)| if nulls.is_some_and(|n| n.is_null(a + k)) { f64::NAN } else { v as f64 });
        add_values(&mut f[7], &FIELDS[7], passengers);
    }

    fn flush(&mut self) {
        if let Some((m, p)) = self.current.take() {
            self.done.months.insert(m, p);
        }
    }

    /// The profile of every row added.
    #[must_use]
    pub fn finish(mut self) -> Profile {
        self.flush();
        self.done
    }
}

/// [`Cleaner::clean`] that also profiles every row.
pub fn clean_profiled(cleaner: &mut Cleaner, c: &RideColumns, counts: &mut CleaningCounts, kept: &mut Vec<usize>, profiler: &mut Profiler) {
    profiler.outcomes.clear();
    for i in 0..c.len {
        counts.raw += 1;
        let code = match cleaner.check(c, i) {
            Ok(()) => {
                counts.kept += 1;
                kept.push(i);
                0
            }
            Err(r) => {
                counts.count(r);
                1 + reason_index(r) as u8
            }
        };
        profiler.outcomes.push(code);
    }
    profiler.add_batch(c);
}

/// The statistics alone of a raw stream (`taxifare validate`: no model, nothing trained), with
/// the same cleaning state across the stream as the lifecycle's pass.
pub fn profile_stream<I>(batches: I) -> Result<(CleaningCounts, Profile), KernelError>
where
    I: IntoIterator<Item = Result<RecordBatch, ArrowError>>,
{
    let (mut cleaner, mut counts, mut profiler, mut kept) = (Cleaner::for_training(), CleaningCounts::default(), Profiler::default(), Vec::new());
    for batch in batches {
        let batch = batch?;
        let cols = RideColumns::from_batch(&batch, true)?;
        kept.clear();
        clean_profiled(&mut cleaner, &cols, &mut counts, &mut kept, &mut profiler);
    }
    Ok((counts, profiler.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Month;
    use crate::generator::MonthRides;

    fn batches(months: &[&str], n: u64) -> Vec<RecordBatch> {
        months.iter().flat_map(|m| MonthRides::new(7, Month::parse(m).unwrap(), n, 700, false)).map(Result::unwrap).collect()
    }

    fn profile(batches: &[RecordBatch], cleaner: &mut Cleaner) -> (Profile, CleaningCounts) {
        let (mut p, mut counts) = (Profiler::default(), CleaningCounts::default());
        for b in batches {
            let cols = RideColumns::from_batch(b, true).unwrap();
            clean_profiled(cleaner, &cols, &mut counts, &mut Vec::new(), &mut p);
        }
        (p.finish(), counts)
    }

    #[test]
    fn the_merge_of_two_halves_is_one_pass() {
        let all = batches(&["2012-08", "2012-09", "2012-10"], 3000);
        let (whole, counts) = profile(&all, &mut Cleaner::for_training());
        // The halves split inside a month; one cleaning state, as in the pass.
        let mut cleaner = Cleaner::for_training();
        let mid = all.len() / 2;
        let (mut first, _) = profile(&all[..mid], &mut cleaner);
        let (second, _) = profile(&all[mid..], &mut cleaner);
        first.merge(&second);
        assert_eq!(whole.months.len(), 3);
        for (m, a) in &whole.months {
            let b = &first.months[m];
            assert_eq!((a.raw, a.kept, a.drops), (b.raw, b.kept, b.drops));
            for (x, y) in a.fields.iter().zip(&b.fields) {
                assert_eq!((x.count, x.nan, x.zeros, &x.hist), (y.count, y.nan, y.zeros, &y.hist));
                assert!((x.sum - y.sum).abs() <= 1e-9 * x.sum.abs().max(1.0));
            }
        }
        let raw: u64 = whole.months.values().map(|p| p.raw).sum();
        let kept: u64 = whole.months.values().map(|p| p.kept).sum();
        let dropped: u64 = whole.months.values().map(|p| p.drops.iter().sum::<u64>()).sum();
        assert_eq!((raw, kept, dropped), (counts.raw, counts.kept, counts.raw - counts.kept));
        let zero: u64 = whole.months.values().map(|p| p.drops[1]).sum();
        assert_eq!(zero, counts.zero_coordinates);
        let (alone_counts, alone) = profile_stream(all.into_iter().map(Ok)).unwrap();
        assert_eq!((alone_counts, &alone), (counts, &whole));
    }

    /// What the statistics add to the one pass, per row (`cargo test --profile dev-fast
    /// profile_cost -- --ignored --nocapture`): the cleaning with and without them, and the whole
    /// pass, on the same rows. Prints; asserts nothing about time.
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn profile_cost() {
        use crate::kernel::model::{Model, Settings};
        use crate::kernel::pass::{pass_with, PassModels};
        let all = batches(&["2012-08"], 300_000);
        let cols: Vec<_> = all.iter().map(|b| RideColumns::from_batch(b, true).unwrap()).collect();
        let n = all.iter().map(RecordBatch::num_rows).sum::<usize>() as f64;
        // CPU time, not wall time (the machine is shared): this thread's in ns for the cleaning
        // (/proc/thread-self/schedstat), the process's in clock ticks for the multi-threaded
        // pass (/proc/self/stat: utime + stime of every thread); runs alternated, summed.
        let thread_ns = || -> f64 {
            std::fs::read_to_string("/proc/thread-self/schedstat").ok().and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap_or(f64::NAN)
        };
        let process_ticks = || -> f64 {
            let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
            let after = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect::<Vec<_>>();
            after.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(f64::NAN) + after.get(12).and_then(|u| u.parse::<f64>().ok()).unwrap_or(f64::NAN)
        };
        let mut cpu = [0.0f64; 4];
        let h = (n * 0.85) as u64;
        for _ in 0..15 {
            for (k, total) in cpu.iter_mut().enumerate() {
                match k {
                    0 | 1 => {
                        let t = thread_ns();
                        let (mut c, mut counts, mut kept, mut p) = (Cleaner::for_training(), CleaningCounts::default(), Vec::new(), Profiler::default());
                        for x in &cols {
                            kept.clear();
                            if k == 0 {
                                c.clean(x, &mut counts, &mut kept);
                            } else {
                                clean_profiled(&mut c, x, &mut counts, &mut kept, &mut p);
                            }
                        }
                        std::hint::black_box(p.finish());
                        *total += thread_ns() - t;
                    }
                    _ => {
                        let t = process_ticks();
                        let mut m = Model::new(Settings::default()).unwrap();
                        let models = PassModels { challenger: &mut m, production: None, frozen: None, horizons: Vec::new() };
                        std::hint::black_box(pass_with(all.iter().cloned().map(Ok), h, models, k == 3).unwrap());
                        *total += (process_ticks() - t) * 1e7; // 100 ticks a second
                    }
                }
            }
        }
        let ns = |total: f64| total / 15.0 / n;
        println!(
            "rows {n}, CPU per row: cleaning {:.1} ns, with statistics {:.1} ns (+{:.1}); the pass {:.1} ns, with statistics {:.1} ns (+{:.1} %); statistics = {:.1} % of the pass's CPU",
            ns(cpu[0]), ns(cpu[1]), ns(cpu[1] - cpu[0]), ns(cpu[2]), ns(cpu[3]), 100.0 * (cpu[3] / cpu[2] - 1.0), 100.0 * (cpu[1] - cpu[0]) / cpu[2]
        );
    }

    #[test]
    fn each_row_lands_in_its_field_bins() {
        let all = batches(&["2011-03"], 2000);
        let (p, _) = profile(&all, &mut Cleaner::for_training());
        let m = &p.months[&Some(Month::parse("2011-03").unwrap().index())];
        for (f, bins) in m.fields.iter().zip(&FIELDS) {
            assert_eq!(f.hist.iter().sum::<u64>(), f.count, "{}", bins.name);
            assert_eq!(f.count + f.nan, m.raw, "{}", bins.name);
        }
        // Hours are New York's (the clock's, row by row), 0..24; passengers mostly 1.
        let mut clock = NyClock::default();
        let mut want = vec![0u64; 26];
        for b in &all {
            let cols = RideColumns::from_batch(b, true).unwrap();
            for &ts in cols.ts.iter().filter(|&&t| t != NO_TIME) {
                want[FIELDS[6].index((clock.local(ts).second_of_day / 3600) as f64)] += 1;
            }
        }
        assert_eq!(m.fields[6].hist, want);
        let hour = &m.fields[6];
        assert_eq!(hour.hist[0] + hour.hist[25], 0);
        assert!(m.fields[7].hist[2] * 2 > m.raw);
        assert_eq!(FIELDS[0].index(8.1), (58.1f64 / 0.5) as usize + 1);
        assert_eq!(FIELDS[0].index(-51.0), 0);
        assert_eq!(FIELDS[0].index(2000.0), 2101);
    }
}
