//! Feature version 3 (p = 192): version 2's basis and statistics, solved with an *absolute*
//! ridge penalty on top of the standardised one, plus a median correction per cell computed
//! from mergeable statistics (docs/quality.md, "Recommended v3"; the numpy reference is
//! `benches/median_cells.py` with `benches/v3_proto.py`).
//!
//! - **Absolute penalty**: at solve time, `λ_j / (n · sd_j²)` is added to the standardised
//!   diagonal of column `j` ([`penalties`]): [`LAMBDA_V1`] on v1's columns, [`LAMBDA_V2`] on
//!   the columns version 2 added (`year_index` included). A constant of the version: the
//!   statistics and their merge are version 2's.
//! - **Median correction**: MAE rewards the conditional median, the ridge predicts the mean.
//!   Each ride falls in one of [`N_CELLS`] cells (`3 · band + zone group`: [`FINE_EDGES_KM`]
//!   distance bands × [`ZoneGroup`]). Per cell the statistics keep the weight `n_c`, `Σy_c`,
//!   the sum of the augmented design rows `Σ[1, x]_c` (so the cell's mean in-sample
//!   prediction `Σ[1, x]_c · [a, b] / n_c` needs no second pass) and a histogram of the fares
//!   in $0.10 bins ([`CellStats`]). With the solved coefficients, `δ_c = median_c − mean
//!   prediction_c`, shrunk with pseudo-count [`SHRINK`] toward the band's `δ` (itself shrunk
//!   toward 0); a prediction is the ridge's plus its cell's `δ`. Every statistic is a sum over
//!   rows: merge adds, forgetting scales, unlearning subtracts, as for `XᵀX`.

use std::collections::BTreeMap;

use ndarray::{Array2, ArrayView1};

use super::features;
use super::features_v2;
use super::stats::Coefficients;

/// The version number recorded with v3 models.
pub const FEATURE_VERSION: u16 = 3;

/// Number of v3 features: version 2's.
pub const N_FEATURES: usize = features_v2::N_FEATURES;

/// Absolute penalty on v1's columns (a pseudo-count on a one-hot column).
pub const LAMBDA_V1: f64 = 100.0;
/// Absolute penalty on the columns version 2 added (`year_index` and the fare-rule groups).
pub const LAMBDA_V2: f64 = 1000.0;

/// Distance band edges (haversine km): band = the number of edges ≤ d, 0..=14.
pub const FINE_EDGES_KM: [f64; 14] = [0.05, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.5, 8.0, 10.0, 15.0, 25.0];
/// Number of distance bands.
pub const N_BANDS: usize = FINE_EDGES_KM.len() + 1;
/// Number of zone groups ([`ZoneGroup`]).
pub const N_ZONE_GROUPS: usize = 3;
/// Number of correction cells, `3 · band + zone group`.
pub const N_CELLS: usize = N_BANDS * N_ZONE_GROUPS;

/// Fare bins per dollar ($0.10 bins: fares are on a $0.10 grid, tolls aside).
pub const BINS_PER_DOLLAR: f64 = 10.0;
/// Centre of the first fare bin, in dollars (the reference's offset, kept so the bins match).
pub const BIN_LOW: f64 = -100.0;
/// Number of fare bins: bin `k` is centred on `BIN_LOW + k / BINS_PER_DOLLAR`, the end bins clipped.
pub const N_BINS: usize = 3001;
/// Pseudo-count of the shrinkage of a cell's `δ` toward its parent's.
pub const SHRINK: f64 = 20.0;
/// `2 · cumulative weight ≥ total · (1 − MEDIAN_TIE)` finds the median: the margin absorbs the
/// rounding of weights scaled by forgetting, and changes nothing for integer counts below 1e9.
const MEDIAN_TIE: f64 = 1e-9;

/// Where a ride's ends are, folded from version 2's zone pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneGroup {
    /// Both ends in Manhattan (the pair `mm`).
    Manhattan = 0,
    /// An airport at either end (`ma`, `aa`, `ao`).
    Airport = 1,
    /// Otherwise (`mo`, `oo`).
    Other = 2,
}

/// The zone group of each of [`features_v2::PAIRS`] (Manhattan–Manhattan has no pair column).
pub const PAIR_GROUPS: [ZoneGroup; 5] = [ZoneGroup::Airport, ZoneGroup::Other, ZoneGroup::Airport, ZoneGroup::Airport, ZoneGroup::Other];

/// Feature names: version 2's.
#[must_use]
pub fn names() -> Vec<String> {
    features_v2::names()
}

/// The absolute penalty `λ_j` of each column.
#[must_use]
pub fn penalties() -> Vec<f64> {
    let mut lambda = vec![LAMBDA_V2; N_FEATURES];
    for (j, l) in lambda.iter_mut().enumerate().take(features::N_FEATURES) {
        if j != features_v2::YEAR {
            *l = LAMBDA_V1;
        }
    }
    lambda
}

/// The distance band of `d` km: the number of [`FINE_EDGES_KM`] ≤ d (`searchsorted(…, side="right")`).
#[must_use]
pub fn band(d: f64) -> usize {
    FINE_EDGES_KM.partition_point(|&e| e <= d)
}

/// The correction cell of a row of v3 (= v2) features.
#[must_use]
pub fn cell(f: &[f64]) -> usize {
    let (d, pair) = features_v2::dist_and_pair(f);
    let group = pair.and_then(|k| PAIR_GROUPS.get(k)).copied().unwrap_or(ZoneGroup::Manhattan);
    N_ZONE_GROUPS * band(d) + group as usize
}

/// The fare bin of `y`: `floor((y − BIN_LOW) · BINS_PER_DOLLAR + 0.5)`, clipped to the bins.
#[must_use]
pub fn fare_bin(y: f64) -> usize {
    let k = ((y - BIN_LOW) * BINS_PER_DOLLAR + 0.5).floor();
    if k >= (N_BINS - 1) as f64 {
        N_BINS - 1
    } else if k > 0.0 {
        k as usize
    } else {
        0
    }
}

/// The centre of fare bin `k`, in dollars.
#[must_use]
pub fn bin_centre(k: usize) -> f64 {
    BIN_LOW + k as f64 * (1.0 / BINS_PER_DOLLAR)
}

/// The correction's statistics: per cell, the weight of its rows in each fare bin, `Σy` and
/// `Σ[1, x]`. Weights are row counts without forgetting (integers held exactly as f64).
#[derive(Clone, Debug, PartialEq)]
pub struct CellStats {
    /// Per cell, the sum of the augmented design rows `[1, x]`: column 0 is the cell's weight
    /// `n_c`. [`N_CELLS`] × `(p + 1)`.
    pub sx: Array2<f64>,
    /// Per cell, `Σy`.
    pub sy: Vec<f64>,
    /// The weight of the rows of each occupied (cell, fare bin), keyed `cell · N_BINS + bin`.
    pub hist: BTreeMap<u32, f64>,
}

/// `cell · N_BINS + bin`.
fn key(cell: usize, bin: usize) -> u32 {
    (cell * N_BINS + bin) as u32
}

impl CellStats {
    /// Empty statistics for `p` features.
    #[must_use]
    pub fn new(p: usize) -> Self {
        Self { sx: Array2::zeros((N_CELLS, p + 1)), sy: vec![0.0; N_CELLS], hist: BTreeMap::new() }
    }

    /// Number of features.
    #[must_use]
    pub fn p(&self) -> usize {
        self.sx.ncols() - 1
    }

    /// Adds the sums of one row of cell `cell` given by its non-zeros (`nz` indices into the
    /// augmented row `[1, x]`, 0 the intercept, and `vals` their values), and returns the key
    /// of its (cell, fare bin), which the caller counts ([`CellStats::count_keys`]): a hot loop
    /// pushes keys, and counts them once per chunk of rows.
    #[inline]
    pub fn add_sums(&mut self, cell: usize, nz: &[usize], vals: &[f64], y: f64) -> u32 {
        let d = self.sx.ncols();
        if let Some(row) = self.sx.as_slice_mut().and_then(|all| all.get_mut(cell * d..(cell + 1) * d)) {
            for (&j, &v) in nz.iter().zip(vals) {
                if let Some(x) = row.get_mut(j) {
                    *x += v;
                }
            }
        }
        if let Some(s) = self.sy.get_mut(cell) {
            *s += y;
        }
        key(cell, fare_bin(y))
    }

    /// Counts a row of weight 1 for each key of `keys` (as returned by
    /// [`CellStats::add_sums`]), and empties it.
    pub fn count_keys(&mut self, keys: &mut Vec<u32>) {
        keys.sort_unstable();
        let mut i = 0;
        while i < keys.len() {
            let k = keys[i];
            let run = keys[i..].iter().take_while(|&&x| x == k).count();
            *self.hist.entry(k).or_insert(0.0) += run as f64;
            i += run;
        }
        keys.clear();
    }

    /// Adds one row of features `f` (length p, without the intercept) with label `y`.
    pub fn add_row(&mut self, f: &[f64], y: f64) {
        let c = cell(f);
        let mut row = self.sx.row_mut(c);
        row[0] += 1.0;
        for (j, &v) in f.iter().enumerate() {
            if v != 0.0 {
                row[j + 1] += v;
            }
        }
        self.sy[c] += y;
        *self.hist.entry(key(c, fare_bin(y))).or_insert(0.0) += 1.0;
    }

    /// Adds the statistics of disjoint rows.
    pub fn merge(&mut self, other: &Self) {
        self.sx += &other.sx;
        for (a, b) in self.sy.iter_mut().zip(&other.sy) {
            *a += b;
        }
        for (&k, &w) in &other.hist {
            *self.hist.entry(k).or_insert(0.0) += w;
        }
    }

    /// Multiplies every weight by `f` (exponential forgetting).
    pub fn scale(&mut self, f: f64) {
        self.sx *= f;
        for v in &mut self.sy {
            *v *= f;
        }
        for w in self.hist.values_mut() {
            *w *= f;
        }
    }

    /// Empties the statistics.
    pub fn clear(&mut self) {
        self.sx.fill(0.0);
        self.sy.fill(0.0);
        self.hist.clear();
    }

    /// `self − removed`, an entry set to 0 when what is left is below `cancelled` of its value
    /// before (cancellation noise), a bin removed when it empties. `Err` names the first cell
    /// whose bin would go below `−negative` of its weight (rows it never held); `self` is then
    /// partly updated: subtract from a copy.
    pub fn subtract(&mut self, removed: &Self, cancelled: f64, negative: f64) -> Result<(), usize> {
        let sub = |a: &mut f64, r: f64| {
            let was = *a;
            *a -= r;
            if a.abs() <= cancelled * was.abs() {
                *a = 0.0;
            }
        };
        for (a, &r) in self.sx.iter_mut().zip(&removed.sx) {
            sub(a, r);
        }
        for (a, &r) in self.sy.iter_mut().zip(&removed.sy) {
            sub(a, r);
        }
        for (&k, &r) in &removed.hist {
            let w = self.hist.entry(k).or_insert(0.0);
            let was = *w;
            sub(w, r);
            if *w < -negative * was.abs().max(1.0) {
                return Err(k as usize / N_BINS);
            }
            if *w <= 0.0 {
                self.hist.remove(&k);
            }
        }
        Ok(())
    }

    /// The correction `δ` of every cell for the ridge's coefficients `c` (the docs' chain:
    /// band level shrunk toward 0, then band × zone group toward its band).
    #[must_use]
    pub fn deltas(&self, c: &Coefficients) -> Vec<f64> {
        let mut coef = Vec::with_capacity(c.beta.len() + 1);
        coef.push(c.intercept);
        coef.extend_from_slice(&c.beta);
        let coef = ArrayView1::from(&coef);
        let n: Vec<f64> = (0..N_CELLS).map(|k| self.sx[[k, 0]]).collect();
        let pred: Vec<f64> = (0..N_CELLS).map(|k| self.sx.row(k).dot(&coef)).collect();
        // Per cell, its occupied bins in order.
        let mut bins: Vec<Vec<(usize, f64)>> = vec![Vec::new(); N_CELLS];
        for (&k, &w) in &self.hist {
            let (cell, bin) = (k as usize / N_BINS, k as usize % N_BINS);
            if let Some(b) = bins.get_mut(cell) {
                b.push((bin, w));
            }
        }
        let raw = |n: f64, pred: f64, bins: &[(usize, f64)]| if n > 0.0 { median(bins).map_or(0.0, |m| m - pred / n) } else { 0.0 };
        let mut out = vec![0.0; N_CELLS];
        for b in 0..N_BANDS {
            let children = N_ZONE_GROUPS * b..N_ZONE_GROUPS * (b + 1);
            let mut merged: BTreeMap<usize, f64> = BTreeMap::new();
            for k in children.clone() {
                for &(bin, w) in &bins[k] {
                    *merged.entry(bin).or_insert(0.0) += w;
                }
            }
            let merged: Vec<(usize, f64)> = merged.into_iter().collect();
            let (nb, pb) = (children.clone().map(|k| n[k]).sum::<f64>(), children.clone().map(|k| pred[k]).sum::<f64>());
            let band_delta = nb * raw(nb, pb, &merged) / (nb + SHRINK);
            for k in children {
                out[k] = (n[k] * raw(n[k], pred[k], &bins[k]) + SHRINK * band_delta) / (n[k] + SHRINK);
            }
        }
        out
    }

    /// Appends the byte form: `sx` row-major, `sy`, the number of occupied bins u32, then
    /// per bin its key u32 and weight f64 (little-endian).
    pub fn write(&self, out: &mut Vec<u8>) {
        for v in self.sx.iter().chain(&self.sy) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(self.hist.len() as u32).to_le_bytes());
        for (&k, &w) in &self.hist {
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&w.to_le_bytes());
        }
    }

    /// Reads [`CellStats::write`]'s bytes for `p` features at the start of `bytes`; returns
    /// the statistics and the number of bytes read, or why they cannot be read.
    pub fn read(bytes: &[u8], p: usize) -> Result<(Self, usize), String> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], String> {
            let s = bytes.get(at..at + n).ok_or_else(|| "truncated correction statistics".to_string())?;
            at += n;
            Ok(s)
        };
        let f64_at = |b: &[u8]| b.try_into().map(f64::from_le_bytes).map_err(|_| "truncated correction statistics".to_string());
        let mut s = Self::new(p);
        for v in s.sx.iter_mut() {
            *v = f64_at(take(8)?)?;
        }
        for v in &mut s.sy {
            *v = f64_at(take(8)?)?;
        }
        let count = take(4)?.try_into().map(u32::from_le_bytes).map_err(|_| "truncated correction statistics".to_string())?;
        for _ in 0..count {
            let k = take(4)?.try_into().map(u32::from_le_bytes).map_err(|_| "truncated correction statistics".to_string())?;
            if k as usize >= N_CELLS * N_BINS {
                return Err(format!("correction bin key {k} is outside {} cells × {N_BINS} bins", N_CELLS));
            }
            let w = f64_at(take(8)?)?;
            if s.hist.insert(k, w).is_some() {
                return Err(format!("correction bin key {k} twice"));
            }
        }
        Ok((s, at))
    }
}

/// The centre of the first bin where the cumulative weight reaches half the total (the lower
/// median of the binned fares), `None` without weight.
fn median(bins: &[(usize, f64)]) -> Option<f64> {
    let total: f64 = bins.iter().map(|b| b.1).sum();
    if total <= 0.0 {
        return None;
    }
    let mut cum = 0.0;
    for &(bin, w) in bins {
        cum += w;
        if 2.0 * cum >= total * (1.0 - MEDIAN_TIE) {
            return Some(bin_centre(bin));
        }
    }
    bins.last().map(|b| bin_centre(b.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Month;
    use crate::generator::MonthRides;
    use crate::kernel::codec;
    use crate::kernel::feature_set::{features_of, FeatureSet};
    use crate::kernel::ledger::{Ledger, Weighting};
    use crate::kernel::model::{Model, Settings};
    use crate::kernel::stats::Stats;
    use arrow::array::RecordBatch;
    use arrow::error::ArrowError;

    fn month(m: &str, rows: u64, seed: u64) -> Vec<Result<RecordBatch, ArrowError>> {
        MonthRides::new(seed, Month::parse(m).unwrap(), rows, 1000, false).collect()
    }

    fn v3(settings: Settings) -> Model {
        Model::with_features(settings, FeatureSet::V3).unwrap()
    }

    use crate::kernel::unlearn::tests::max_gap as gap;

    #[test]
    fn bands_bins_and_groups_are_the_references() {
        assert_eq!(N_CELLS, 45);
        assert_eq!([band(0.0), band(0.049_999), band(0.05), band(0.5), band(24.99), band(25.0), band(400.0)], [0, 0, 1, 2, 13, 14, 14]);
        assert_eq!(band(f64::NAN), 0);
        assert_eq!(fare_bin(5.0), 1050);
        assert_eq!(fare_bin(5.04), 1050);
        assert_eq!(fare_bin(5.05), 1051, "half up");
        assert_eq!(fare_bin(-1e9), 0);
        assert_eq!(fare_bin(1e9), N_BINS - 1);
        assert!((bin_centre(fare_bin(12.5)) - 12.5).abs() < 1e-12);
        // A pair holding an airport is the airport group; the others (with Manhattan or not) "other".
        for (k, name) in features_v2::PAIRS.iter().enumerate() {
            let group = if name.contains('a') { ZoneGroup::Airport } else { ZoneGroup::Other };
            assert_eq!(PAIR_GROUPS[k], group, "{name}");
        }
    }

    #[test]
    fn penalties_are_by_column_origin() {
        let names = names();
        let lambda = penalties();
        let of = |n: &str| lambda[names.iter().position(|x| x == n).unwrap()];
        assert_eq!(of("haversine_km"), LAMBDA_V1);
        assert_eq!(of("pickup_jfk"), LAMBDA_V1);
        assert_eq!(of("year_index"), LAMBDA_V2, "v2's replacement of v1's year is a v2 column");
        assert_eq!(of("dm_x_wd_h00"), LAMBDA_V2);
        assert_eq!(of("zero_dist"), LAMBDA_V2);
        assert_eq!(lambda.iter().filter(|&&l| l == LAMBDA_V1).count(), 79);
        assert_eq!(lambda.iter().filter(|&&l| l == LAMBDA_V2).count(), 113);
    }

    #[test]
    fn the_absolute_penalty_on_a_one_hot_column_is_a_pseudo_count() {
        // Σ(x − x̄)² = s for a one-hot column: the slope is s·gap / (s + λ).
        let (n, n1, lambda) = (2000usize, 12usize, 30.0);
        let mut rng = crate::generator::rng::Rng::new(5, 0);
        let x = ndarray::Array2::from_shape_fn((n, 2), |(i, j)| if j == 0 { 1.0 } else { f64::from(u8::from(i < n1)) });
        let y = ndarray::Array1::from_shape_fn(n, |i| 10.0 + rng.normal() + 5.0 * x[[i, 1]]);
        let mut s = Stats::new(1);
        s.add(x.view(), y.view());
        let c = s.solve_penalised(0.0, Some(&[lambda])).unwrap();
        let s1 = (n1 * (n - n1)) as f64 / n as f64;
        let mean = |lo: usize, hi: usize| y.slice(ndarray::s![lo..hi]).mean().unwrap();
        let gap = mean(0, n1) - mean(n1, n);
        assert!((c.beta[0] - s1 * gap / (s1 + lambda)).abs() < 1e-10 * gap.abs(), "{} vs {}", c.beta[0], s1 * gap / (s1 + lambda));
    }

    /// The correction from the merged statistics equals one computed directly from the rows:
    /// per cell the lower median of the binned fares minus the mean in-sample prediction,
    /// shrunk toward the band's (itself toward 0).
    #[test]
    fn the_correction_is_the_shrunk_median_minus_mean_prediction() {
        let mut m = v3(Settings::default());
        let rows: Vec<_> = month("2013-03", 4000, 1).into_iter().chain(month("2013-04", 4000, 2)).collect();
        m.partial_fit(rows.iter().map(|b| Ok(b.as_ref().unwrap().clone()))).unwrap();
        let c = m.coefficients().unwrap().clone();
        assert_eq!(c.correction.len(), N_CELLS);
        assert!(c.correction.iter().any(|d| d.abs() > 0.01), "{:?}", c.correction);
        let mut fs = Vec::new();
        let mut ys = Vec::new();
        for b in &rows {
            let (x, y, _) = features_of(b.as_ref().unwrap(), FeatureSet::V3).unwrap();
            for (r, &label) in x.rows().into_iter().zip(&y) {
                fs.push(r.to_vec());
                ys.push(label);
            }
        }
        let ridge = |f: &[f64]| c.intercept + c.beta.iter().zip(f).map(|(b, v)| b * v).sum::<f64>();
        let lower_median = |mut bins: Vec<usize>| {
            bins.sort_unstable();
            bins[(bins.len() - 1) / 2]
        };
        let raw = |members: &[usize]| -> (f64, f64) {
            if members.is_empty() {
                return (0.0, 0.0);
            }
            let n = members.len() as f64;
            let med = bin_centre(lower_median(members.iter().map(|&i| fare_bin(ys[i])).collect()));
            (n, med - members.iter().map(|&i| ridge(&fs[i])).sum::<f64>() / n)
        };
        let cells: Vec<usize> = fs.iter().map(|f| cell(f)).collect();
        for b in 0..N_BANDS {
            let in_band: Vec<usize> = (0..fs.len()).filter(|&i| cells[i] / N_ZONE_GROUPS == b).collect();
            let (nb, rb) = raw(&in_band);
            let db = nb * rb / (nb + SHRINK);
            for g in 0..N_ZONE_GROUPS {
                let k = N_ZONE_GROUPS * b + g;
                let members: Vec<usize> = in_band.iter().copied().filter(|&i| cells[i] == k).collect();
                let (n, r) = raw(&members);
                let want = (n * r + SHRINK * db) / (n + SHRINK);
                assert!((c.correction[k] - want).abs() < 1e-9, "cell {k}: {} vs {want}", c.correction[k]);
            }
        }
        // The prediction is the ridge's plus the cell's shift.
        let batch = month("2013-05", 300, 3).remove(0).unwrap();
        let (x, _, _) = features_of(&batch, FeatureSet::V3).unwrap();
        let direct = m.predict_features(x.view()).unwrap();
        for (r, p) in x.rows().into_iter().zip(direct) {
            let f = r.to_vec();
            assert!((p - (ridge(&f) + c.correction[cell(&f)])).abs() < 1e-9);
        }
    }

    /// Month after month, merged, or in one fit: the same model; with forgetting too; the
    /// bytes round-trip; the dense path (precomputed features) gives the same model.
    #[test]
    fn v3_is_exact_incrementally_and_round_trips() {
        for h in [f64::INFINITY, 2.0] {
            let settings = Settings { ridge_alpha: 1e-3, half_life_months: h };
            let (a, b) = (month("2012-08", 3000, 4), month("2012-10", 3000, 5));
            let probe = month("2012-11", 1500, 6);
            let mut inc = v3(settings);
            inc.partial_fit(a.iter().map(|x| Ok(x.as_ref().unwrap().clone()))).unwrap();
            inc.partial_fit(b.iter().map(|x| Ok(x.as_ref().unwrap().clone()))).unwrap();
            let mut one = v3(settings);
            one.partial_fit(a.iter().chain(&b).map(|x| Ok(x.as_ref().unwrap().clone()))).unwrap();
            assert!(gap(&mut inc, &mut one, &probe) < 1e-9);
            let mut merged = v3(settings);
            merged.partial_fit(a.iter().map(|x| Ok(x.as_ref().unwrap().clone()))).unwrap();
            let mut other = v3(settings);
            other.partial_fit(b.iter().map(|x| Ok(x.as_ref().unwrap().clone()))).unwrap();
            merged.merge(&other).unwrap();
            assert!(gap(&mut merged, &mut one, &probe) < 1e-9);
            let mut dense = v3(settings);
            for (part, m) in [(&a, "2012-08"), (&b, "2012-10")] {
                for batch in part {
                    let (x, y, _) = features_of(batch.as_ref().unwrap(), FeatureSet::V3).unwrap();
                    dense.partial_fit_features(x.view(), y.view(), Some(Month::parse(m).unwrap().index())).unwrap();
                }
            }
            assert!(gap(&mut dense, &mut one, &probe) < 1e-9);
            let unsolved = codec::to_bytes(&inc);
            assert_eq!(codec::from_bytes(&unsolved).unwrap(), inc);
            inc.coefficients().unwrap();
            let mut loaded = codec::from_bytes(&codec::to_bytes(&inc)).unwrap();
            assert_eq!(loaded, inc);
            assert_eq!(loaded.feature_set, FeatureSet::V3);
            assert_eq!(gap(&mut loaded, &mut inc, &probe), 0.0);
        }
        // An empty v3 model round-trips, and one fitted predicts like its ridge in an empty cell.
        let empty = v3(Settings::default());
        assert_eq!(codec::from_bytes(&codec::to_bytes(&empty)).unwrap(), empty);
    }

    #[test]
    fn v3_differs_from_v2_only_by_penalty_and_correction() {
        let rows = month("2011-06", 5000, 7);
        let mut m2 = Model::with_features(Settings::default(), FeatureSet::V2).unwrap();
        m2.partial_fit(rows.iter().map(|x| Ok(x.as_ref().unwrap().clone()))).unwrap();
        let mut m3 = v3(Settings::default());
        m3.partial_fit(rows.iter().map(|x| Ok(x.as_ref().unwrap().clone()))).unwrap();
        assert_eq!(m2.stats().xtx, m3.stats().xtx, "the same statistics");
        assert!(m3.stats().cells.is_some() && m2.stats().cells.is_none());
        let (c2, c3) = (m2.coefficients().unwrap().clone(), m3.coefficients().unwrap().clone());
        assert!(c2.correction.is_empty());
        assert_ne!(c2.beta, c3.beta);
        // Versions never mix statistics.
        assert!(m2.merge(&m3).is_err());
        assert!(m2.add_stats(29, m3.stats()).is_err());
        assert!(m3.add_stats(29, m2.stats()).is_err());
    }

    /// The ledger of v3 rows composes the trained models (the cell statistics per month) and
    /// its bytes (format 2) round-trip.
    #[test]
    fn the_ledger_carries_the_correction() {
        let months = ["2012-01", "2012-02", "2012-04"];
        let mut ledger = Ledger::new(FeatureSet::V3);
        for (k, m) in months.iter().enumerate() {
            ledger.merge(&Ledger::of_rows(FeatureSet::V3, month(m, 1500, 10 + k as u64)).unwrap().0).unwrap();
        }
        let probe = month("2012-05", 1000, 20);
        for h in [f64::INFINITY, 2.0] {
            let settings = Settings { ridge_alpha: 1e-3, half_life_months: h };
            let mut trained = v3(settings);
            for (k, m) in months.iter().enumerate() {
                trained.partial_fit(month(m, 1500, 10 + k as u64)).unwrap();
            }
            let mut composed = ledger.compose(1e-3, Weighting::HalfLife(h), None).unwrap();
            assert!(gap(&mut composed, &mut trained, &probe) < 1e-9);
        }
        let bytes = ledger.to_bytes();
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 2);
        let back = Ledger::from_bytes(&bytes).unwrap();
        assert_eq!(back, ledger);
        assert_eq!(back.mismatch(&ledger, 0.0), None);
        let mut other = back.clone();
        let (m, s) = other.months().next().map(|(m, s)| (m, s.clone())).unwrap();
        let mut s2 = s.clone();
        if let Some(c) = &mut s2.cells {
            c.hist.clear();
        }
        let mut odd = Ledger::new(FeatureSet::V3);
        odd.add(m, &s2).unwrap();
        let mut only = Ledger::new(FeatureSet::V3);
        only.add(m, &s).unwrap();
        assert!(odd.mismatch(&only, 1e-9).unwrap().contains("bins"));
        other.merge(&only).unwrap();
        assert!(Ledger::from_bytes(&bytes[..bytes.len() - 9]).is_err());
        // A v2 ledger is still written in format 1.
        assert_eq!(u16::from_le_bytes(Ledger::new(FeatureSet::V2).to_bytes()[4..6].try_into().unwrap()), 1);
    }

    /// Unlearning subtracts the cell statistics too: `fit(A); fit(B); unlearn(B)` predicts as
    /// `fit(A)`, exactly and under forgetting.
    #[test]
    fn unlearning_v3_equals_the_model_of_the_other_months() {
        for h in [f64::INFINITY, 2.0] {
            let settings = Settings { ridge_alpha: 1e-3, half_life_months: h };
            let a = month("2013-10", 3000, 30);
            let b = month("2013-12", 3000, 31);
            let probe = month("2014-01", 1500, 32);
            let mut oracle = v3(settings);
            oracle.partial_fit(a.iter().map(|x| Ok(x.as_ref().unwrap().clone()))).unwrap();
            let mut m = oracle.clone();
            m.partial_fit(b.iter().map(|x| Ok(x.as_ref().unwrap().clone()))).unwrap();
            assert!(gap(&mut m, &mut oracle, &probe) > 0.01);
            m.unlearn(b.iter().map(|x| Ok(x.as_ref().unwrap().clone()))).unwrap();
            // Unlike v2's, v3's solution is not invariant to scaling every weight (λ and the
            // pseudo-count are in rows): under forgetting the oracle is A decayed to the clock
            // the unlearnt model keeps.
            if let Some(clock) = m.last_month {
                oracle.advance_to(clock);
            }
            let g = gap(&mut m, &mut oracle, &probe);
            assert!(g < 1e-9, "{g}");
            if h.is_infinite() {
                assert_eq!(m.stats().cells.as_ref().unwrap().hist, oracle.stats().cells.as_ref().unwrap().hist, "counts are exact");
            }
        }
        // Rows the model never learnt are refused.
        let mut m = v3(Settings::default());
        m.partial_fit(month("2013-10", 500, 33)).unwrap();
        let before = m.clone();
        assert!(m.unlearn(month("2013-10", 800, 34)).is_err());
        assert_eq!(m, before);
    }
}
