//! The ledger: the sufficient statistics of learnt rows per ride month, for one feature version.
//!
//! The statistics of a month are additive, so a model is a weighted sum over the ledger:
//! every month at weight 1 is the exact model, `0.5^((clock − m)/h)` is the forgetting model
//! of half-life `h` months, weight 1 on the last `k` months only is a window. A lifecycle
//! composes its challengers from the ledger (docs/architecture.md, "The ledger"), and removing
//! a month is removing its entry.
//!
//! The byte form (little-endian, versioned, checksummed; the upper triangle of the symmetric
//! `XᵀX` only, ~150 KB a month at 192 features):
//!
//! ```text
//! magic "TXFL" | format u16 | feature_version u16 | p u32 | months u32
//! | per month, oldest first: month i32 (since 2009-01) | syy f64 | xtx upper triangle, row
//!   after row, (p+1)(p+2)/2 f64 | xty (p+1) f64
//!   [format 2 only: has_cells u8 | the correction's statistics (`CellStats::write`)]
//! | fnv1a-64 of everything before u64
//! ```
//!
//! Format 2 is written for the feature versions with a median correction (3); the others are
//! still written in format 1, byte for byte as before, and both formats load.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use arrow::error::ArrowError;

use super::cleaning::CleaningCounts;
use super::feature_set::FeatureSet;
use super::features_v3::CellStats;
use super::model::{Model, Settings};
use super::stats::{SparseRows, Stats};
use super::KernelError;
use crate::calendar::{Month, MonthIndexCache};
use crate::fnv::fnv1a;

const MAGIC: &[u8; 4] = b"TXFL";
/// Version of the ledger's byte format written for a feature version with a median
/// correction (format 2 adds its statistics to every month).
pub const LEDGER_FORMAT_VERSION: u16 = 2;
/// The format written for the versions without a correction, and read as before.
const LEDGER_FORMAT_PLAIN: u16 = 1;

/// Per ride month, the statistics (unweighted: each row at weight 1) of the rows learnt.
#[derive(Clone, Debug, PartialEq)]
pub struct Ledger {
    feature_set: FeatureSet,
    months: BTreeMap<i32, Stats>,
}

/// How a model weighs the months of a ledger.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Weighting {
    /// Every month at weight 1 (the exact model), or at `0.5^((clock − m)/h)` for a finite
    /// half-life `h` (the forgetting model).
    HalfLife(f64),
    /// Weight 1 on months `m ≥ since`, 0 before (a window).
    Since(i32),
}

impl Ledger {
    /// An empty ledger of a feature version.
    #[must_use]
    pub fn new(feature_set: FeatureSet) -> Self {
        Self { feature_set, months: BTreeMap::new() }
    }

    /// Its feature version.
    #[must_use]
    pub fn feature_set(&self) -> FeatureSet {
        self.feature_set
    }

    /// The months it holds, oldest first, with their statistics.
    pub fn months(&self) -> impl Iterator<Item = (i32, &Stats)> {
        self.months.iter().map(|(&m, s)| (m, s))
    }

    /// The newest month, `None` when empty.
    #[must_use]
    pub fn last_month(&self) -> Option<i32> {
        self.months.keys().next_back().copied()
    }

    /// Adds the statistics of rows of ride month `month`.
    pub fn add(&mut self, month: i32, stats: &Stats) -> Result<(), KernelError> {
        self.feature_set.check_stats(stats, "a ledger")?;
        self.months.entry(month).or_insert_with(|| Stats::new(stats.p())).merge(stats);
        Ok(())
    }

    /// Adds another ledger of the same feature version (rows disjoint from this one's).
    pub fn merge(&mut self, other: &Self) -> Result<(), KernelError> {
        if other.feature_set != self.feature_set {
            return Err(KernelError::Incompatible(format!(
                "a ledger of feature version {} cannot be merged into one of feature version {}",
                other.feature_set.version(),
                self.feature_set.version()
            )));
        }
        for (&m, s) in &other.months {
            self.add(m, s)?;
        }
        Ok(())
    }

    /// The per-month statistics of raw rows, cleaned as [`Model::partial_fit`] cleans them
    /// (one cleaning state across the stream): the ledger of the rows a model learnt, rebuilt.
    pub fn of_rows<I>(feature_set: FeatureSet, batches: I) -> Result<(Self, CleaningCounts), KernelError>
    where
        I: IntoIterator<Item = Result<RecordBatch, ArrowError>>,
    {
        let p = feature_set.p();
        let mut feat = feature_set.featurizer();
        let mut f = vec![0.0; p];
        let mut months = MonthIndexCache::default();
        let mut per_month: BTreeMap<i32, SparseRows> = BTreeMap::new();
        let counts = super::pipeline::cleaned(batches, |c| {
            for &i in &c.kept {
                let m = months.of(c.cols.ts[i]);
                feat.write(&c.cols, i, &mut f);
                per_month.entry(m).or_insert_with(|| SparseRows::for_set(feature_set)).add(&f, c.fares.value(i));
            }
            Ok(())
        })?;
        let mut ledger = Self::new(feature_set);
        for (m, mut acc) in per_month {
            let mut s = Stats::new(p);
            s.absorb(&mut acc);
            ledger.months.insert(m, s);
        }
        Ok((ledger, counts))
    }

    /// The weighted sum of the months as of month `clock` (months after it are refused: a
    /// model cannot have learnt them).
    pub fn weighted(&self, weighting: Weighting, clock: i32) -> Result<Stats, KernelError> {
        if let Some(last) = self.last_month().filter(|&l| l > clock) {
            return Err(KernelError::Incompatible(format!(
                "the ledger holds {} but the model's clock is {}",
                Month::from_index(last),
                Month::from_index(clock)
            )));
        }
        let mut out = Stats::new(self.feature_set.p());
        for (&m, s) in &self.months {
            let w = match weighting {
                Weighting::HalfLife(h) if h.is_finite() => 0.5_f64.powf(f64::from(clock - m) / h),
                Weighting::HalfLife(_) => 1.0,
                Weighting::Since(since) if m >= since => 1.0,
                Weighting::Since(_) => 0.0,
            };
            if w == 1.0 {
                out.merge(s);
            } else if w > 0.0 {
                let mut scaled = s.clone();
                scaled.scale(w);
                out.merge(&scaled);
            }
        }
        Ok(out)
    }

    /// The model this weighting of the ledger is, its clock at `clock` (default: the newest
    /// month). A half-life weighting gives a model of that half-life, which the lifecycle
    /// continues as it continues any forgetting model; a window gives an exact model of the
    /// window's months.
    pub fn compose(&self, ridge_alpha: f64, weighting: Weighting, clock: Option<i32>) -> Result<Model, KernelError> {
        let half_life_months = match weighting {
            Weighting::HalfLife(h) => h,
            Weighting::Since(_) => f64::INFINITY,
        };
        let mut model = Model::with_features(Settings { ridge_alpha, half_life_months }, self.feature_set)?;
        let clock = clock.or(self.last_month());
        if let Some(c) = clock {
            model.stats = self.weighted(weighting, c)?;
            model.last_month = Some(c);
        }
        Ok(model)
    }

    /// Where two ledgers differ beyond `tolerance` (relative to each entry's size, at least 1),
    /// in words; `None` when they agree: the months, then each month's row weight, then its
    /// statistics.
    #[must_use]
    pub fn mismatch(&self, other: &Self, tolerance: f64) -> Option<String> {
        if self.feature_set != other.feature_set {
            return Some(format!("feature version {} against {}", self.feature_set.version(), other.feature_set.version()));
        }
        let names = |l: &Self| l.months.keys().map(|&m| Month::from_index(m).to_string()).collect::<Vec<_>>().join(", ");
        if self.months.keys().ne(other.months.keys()) {
            return Some(format!("months [{}] against [{}]", names(self), names(other)));
        }
        let far = |a: f64, b: f64| (a - b).abs() > tolerance * a.abs().max(b.abs()).max(1.0) || a.is_nan() != b.is_nan();
        for ((&m, a), b) in self.months.iter().zip(other.months.values()) {
            let month = Month::from_index(m);
            if far(a.n(), b.n()) {
                return Some(format!("{month}: {} rows against {}", a.n(), b.n()));
            }
            let entries = a.xtx.iter().zip(b.xtx.iter()).chain(a.xty.iter().zip(b.xty.iter())).chain(std::iter::once((&a.syy, &b.syy)));
            if let Some((x, y)) = entries.into_iter().find(|(x, y)| far(**x, **y)) {
                return Some(format!("{month}: a statistic is {x} against {y}"));
            }
            match (&a.cells, &b.cells) {
                (None, None) => {}
                (Some(x), Some(y)) => {
                    let sums = x.sx.iter().zip(y.sx.iter()).chain(x.sy.iter().zip(&y.sy));
                    if let Some((u, v)) = sums.into_iter().find(|(u, v)| far(**u, **v)) {
                        return Some(format!("{month}: a correction sum is {u} against {v}"));
                    }
                    if x.hist.keys().ne(y.hist.keys()) {
                        return Some(format!("{month}: the fare histograms occupy different bins"));
                    }
                    if let Some((u, v)) = x.hist.values().zip(y.hist.values()).find(|(u, v)| far(**u, **v)) {
                        return Some(format!("{month}: a fare-bin weight is {u} against {v}"));
                    }
                }
                _ => return Some(format!("{month}: correction statistics on one side only")),
            }
        }
        None
    }

    /// Serialises the ledger.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let d = self.feature_set.p() + 1;
        let cells = self.feature_set.has_correction();
        let mut out = Vec::with_capacity(20 + self.months.len() * 8 * (2 + d + d * (d + 1) / 2));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(if cells { LEDGER_FORMAT_VERSION } else { LEDGER_FORMAT_PLAIN }).to_le_bytes());
        out.extend_from_slice(&self.feature_set.version().to_le_bytes());
        out.extend_from_slice(&(self.feature_set.p() as u32).to_le_bytes());
        out.extend_from_slice(&(self.months.len() as u32).to_le_bytes());
        for (&m, s) in &self.months {
            out.extend_from_slice(&m.to_le_bytes());
            out.extend_from_slice(&s.syy.to_le_bytes());
            for a in 0..d {
                for b in a..d {
                    out.extend_from_slice(&s.xtx[[a, b]].to_le_bytes());
                }
            }
            for v in &s.xty {
                out.extend_from_slice(&v.to_le_bytes());
            }
            if cells {
                match &s.cells {
                    Some(c) => {
                        out.push(1);
                        c.write(&mut out);
                    }
                    None => out.push(0),
                }
            }
        }
        let sum = fnv1a(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Loads bytes written by [`Ledger::to_bytes`], refusing unknown versions and corrupt bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KernelError> {
        let bad = |why: &str| KernelError::Format(format!("ledger: {why}"));
        if bytes.len() < 16 + 8 || &bytes[..4] != MAGIC {
            return Err(bad("not a taxifare ledger (bad magic)"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        let mut c = Reader(&body[4..]);
        let format = u16::from_le_bytes(c.take()?);
        if format != LEDGER_FORMAT_VERSION && format != LEDGER_FORMAT_PLAIN {
            return Err(bad(&format!("unknown format version {format} (this build reads {LEDGER_FORMAT_PLAIN} and {LEDGER_FORMAT_VERSION})")));
        }
        if sum.try_into().map(u64::from_le_bytes).ok() != Some(fnv1a(body)) {
            return Err(bad("checksum mismatch: the bytes are corrupt"));
        }
        let feature_set = FeatureSet::from_version(u16::from_le_bytes(c.take()?)).map_err(|e| bad(&e.to_string()))?;
        let p = u32::from_le_bytes(c.take()?) as usize;
        if p != feature_set.p() {
            return Err(bad(&format!("{p} features, feature version {} has {}", feature_set.version(), feature_set.p())));
        }
        let count = u32::from_le_bytes(c.take()?) as usize;
        let d = p + 1;
        let cells = format == LEDGER_FORMAT_VERSION;
        if cells != feature_set.has_correction() {
            return Err(bad(&format!("format {format} cannot hold feature version {}", feature_set.version())));
        }
        let plain = count * 8 * (1 + d + d * (d + 1) / 2) + count * 4;
        if (!cells && c.0.len() != plain) || (cells && c.0.len() < plain) {
            return Err(bad(&format!("{count} months do not fit in {} bytes", c.0.len())));
        }
        let mut ledger = Self::new(feature_set);
        for _ in 0..count {
            let m = i32::from_le_bytes(c.take()?);
            let mut s = Stats::new(p);
            s.syy = c.f64()?;
            for a in 0..d {
                for b in a..d {
                    let v = c.f64()?;
                    s.xtx[[a, b]] = v;
                    s.xtx[[b, a]] = v;
                }
            }
            for v in &mut s.xty {
                *v = c.f64()?;
            }
            if cells && c.take::<1>()?[0] != 0 {
                let (block, used) = CellStats::read(c.0, p).map_err(|e| bad(&e))?;
                c.0 = &c.0[used..];
                s.cells = Some(block);
            }
            if ledger.months.insert(m, s).is_some() {
                return Err(bad(&format!("month {} twice", Month::from_index(m))));
            }
        }
        if !c.0.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(ledger)
    }
}

struct Reader<'a>(&'a [u8]);
impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], KernelError> {
        if self.0.len() < N {
            return Err(KernelError::Format("ledger: truncated".into()));
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().map_err(|_| KernelError::Format("ledger: truncated".into()))
    }
    fn f64(&mut self) -> Result<f64, KernelError> {
        Ok(f64::from_le_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::MonthRides;

    const MONTHS: [&str; 5] = ["2012-01", "2012-02", "2012-03", "2012-05", "2012-06"];

    fn rows(m: &str, n: u64) -> Vec<Result<RecordBatch, ArrowError>> {
        MonthRides::new(11, Month::parse(m).unwrap(), n, 700, false).collect()
    }

    fn ledger() -> Ledger {
        let mut l = Ledger::new(FeatureSet::DEFAULT);
        for m in MONTHS {
            l.merge(&Ledger::of_rows(FeatureSet::DEFAULT, rows(m, 1500)).unwrap().0).unwrap();
        }
        l
    }

    fn trained(settings: Settings) -> Model {
        let mut model = Model::new(settings).unwrap();
        for m in MONTHS {
            model.partial_fit(rows(m, 1500)).unwrap();
        }
        model
    }

    fn assert_same(mut a: Model, mut b: Model) {
        assert_eq!(a.last_month, b.last_month);
        assert_eq!(a.settings, b.settings);
        for (x, y) in a.stats.xtx.iter().zip(b.stats.xtx.iter()) {
            assert!((x - y).abs() <= 1e-9 * y.abs().max(1.0), "{x} vs {y}");
        }
        let (ca, cb) = (a.coefficients().unwrap().clone(), b.coefficients().unwrap().clone());
        assert!((ca.intercept - cb.intercept).abs() <= 1e-9 * cb.intercept.abs().max(1.0));
        for (x, y) in ca.beta.iter().zip(&cb.beta) {
            assert!((x - y).abs() <= 1e-9 * y.abs().max(1.0), "{x} vs {y}");
        }
    }

    /// Today's two models are two weightings of one ledger: every month at weight 1 is the
    /// exact model, `0.5^(age/h)` the forgetting model, each equal to the model trained month
    /// after month to 1e-9.
    #[test]
    fn the_exact_and_forgetting_models_are_weightings_of_the_ledger() {
        let l = ledger();
        let alpha = Settings::default().ridge_alpha;
        for h in [f64::INFINITY, 2.0, 6.0] {
            let composed = l.compose(alpha, Weighting::HalfLife(h), None).unwrap();
            assert_same(composed, trained(Settings { ridge_alpha: alpha, half_life_months: h }));
        }
    }

    /// A window is the exact model of its months only.
    #[test]
    fn a_window_is_the_exact_model_of_its_months() {
        let l = ledger();
        let since = Month::parse("2012-03").unwrap().index();
        let window = l.compose(1e-3, Weighting::Since(since), None).unwrap();
        let mut exact = Model::new(Settings::default()).unwrap();
        for m in &MONTHS[2..] {
            exact.partial_fit(rows(m, 1500)).unwrap();
        }
        assert_same(window, exact);
        // A clock before the newest month is refused: the model cannot have learnt it.
        let err = l.compose(1e-3, Weighting::HalfLife(2.0), Some(since)).unwrap_err();
        assert!(err.to_string().contains("2012-06"), "{err}");
    }

    #[test]
    fn bytes_round_trip_and_corruption_is_refused() {
        let l = ledger();
        let bytes = l.to_bytes();
        // Format 1 (no correction statistics) has a fixed size per month; v3's (format 2) adds
        // the cell statistics.
        let plain = Ledger::of_rows(FeatureSet::V2, rows(MONTHS[0], 1500)).unwrap().0;
        let d = FeatureSet::V2.p() + 1;
        assert_eq!(plain.to_bytes().len(), 16 + (4 + 8 * (1 + d + d * (d + 1) / 2)) + 8);
        assert_eq!(Ledger::from_bytes(&plain.to_bytes()).unwrap(), plain);
        let d = FeatureSet::DEFAULT.p() + 1;
        assert!(bytes.len() >= 16 + MONTHS.len() * (4 + 8 * (1 + d + d * (d + 1) / 2)) + 8);
        assert_eq!(Ledger::from_bytes(&bytes).unwrap(), l);
        let mut bad = bytes.clone();
        bad[200] ^= 1;
        assert!(Ledger::from_bytes(&bad).unwrap_err().to_string().contains("corrupt"));
        assert!(Ledger::from_bytes(&bytes[..bytes.len() - 9]).is_err());
        let mut future = bytes.clone();
        future[4] = 9;
        assert!(Ledger::from_bytes(&future).unwrap_err().to_string().contains("unknown format version 9"));
        assert!(Ledger::from_bytes(&crate::kernel::codec::to_bytes(&trained(Settings::default()))).is_err());
        let mut other = l.clone();
        assert_eq!(l.mismatch(&other, 1e-9), None);
        other.months.values_mut().last().unwrap().xty[3] += 1.0;
        assert!(l.mismatch(&other, 1e-9).unwrap().starts_with("2012-06: a statistic"), "{:?}", l.mismatch(&other, 1e-9));
        other.months.remove(&Month::parse("2012-01").unwrap().index());
        assert!(l.mismatch(&other, 1e-9).unwrap().starts_with("months [2012-01, "));
        let empty = Ledger::new(FeatureSet::DEFAULT);
        assert_eq!(Ledger::from_bytes(&empty.to_bytes()).unwrap(), empty);
    }

    #[test]
    fn versions_do_not_mix() {
        let mut l = ledger();
        let other = Ledger::new(FeatureSet::V1);
        if FeatureSet::V1 != FeatureSet::DEFAULT {
            assert!(l.merge(&other).is_err());
            assert!(l.add(0, &Stats::new(FeatureSet::V1.p())).is_err());
        }
    }
}
