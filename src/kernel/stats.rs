//! Sufficient statistics of a ridge regression with an unpenalised intercept: everything a
//! fit needs, in O(p²) memory whatever the number of rows, additive over disjoint rows.

use ndarray::{linalg::general_mat_mul, linalg::general_mat_vec_mul, Array1, Array2, ArrayView1, ArrayView2};

use super::feature_set::FeatureSet;
use super::features_v3::{self, CellStats};

/// `n`, `XᵀX` and `Xᵀy` of the design augmented with a leading column of ones (so its first
/// row holds the feature sums), `Σy` and `Σy²`, and for a version with a median correction
/// (3) the correction's per-cell statistics. Weights are fractional under forgetting.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    /// Augmented `XᵀX`, `(p+1)²`, row-major.
    pub xtx: Array2<f64>,
    /// Augmented `Xᵀy`, `p+1`.
    pub xty: Array1<f64>,
    /// Σy².
    pub syy: f64,
    /// The median correction's statistics (feature version 3); `None` for the other versions,
    /// and for v3 statistics of no row (an empty block is all zeros).
    pub cells: Option<CellStats>,
}

/// Fitted coefficients in the original feature units.
#[derive(Clone, Debug, PartialEq)]
pub struct Coefficients {
    /// Intercept.
    pub intercept: f64,
    /// One per feature (0 for features that never varied).
    pub beta: Vec<f64>,
    /// The median correction `δ` of each cell (feature version 3, [`features_v3::N_CELLS`]),
    /// added to the linear prediction of a row of that cell; empty for the other versions.
    pub correction: Vec<f64>,
}

impl Coefficients {
    /// The prediction for a row of features `f` (of the version these coefficients belong to):
    /// `intercept + β·f`, plus the correction of the row's cell where there is one.
    #[inline]
    #[must_use]
    pub fn predict(&self, f: &[f64]) -> f64 {
        let linear = self.intercept + self.beta.iter().zip(f).map(|(b, v)| b * v).sum::<f64>();
        if self.correction.is_empty() { linear } else { linear + self.correction_at(features_v3::cell(f)) }
    }

    /// The correction of cell `cell` (0 without a correction).
    #[inline]
    #[must_use]
    pub fn correction_at(&self, cell: usize) -> f64 {
        self.correction.get(cell).copied().unwrap_or(0.0)
    }
}

impl Stats {
    /// Empty statistics for `p` features.
    #[must_use]
    pub fn new(p: usize) -> Self {
        Self { xtx: Array2::zeros((p + 1, p + 1)), xty: Array1::zeros(p + 1), syy: 0.0, cells: None }
    }

    /// Number of features.
    #[must_use]
    pub fn p(&self) -> usize {
        self.xty.len() - 1
    }

    /// Total weight of the rows (their count without forgetting).
    #[must_use]
    pub fn n(&self) -> f64 {
        self.xtx[[0, 0]]
    }

    /// Adds rows whose augmented design (first column all ones) is `x`.
    pub fn add(&mut self, x: ArrayView2<f64>, y: ArrayView1<f64>) {
        general_mat_mul(1.0, &x.t(), &x, 1.0, &mut self.xtx);
        general_mat_vec_mul(1.0, &x.t(), &y, 1.0, &mut self.xty);
        self.syy += y.dot(&y);
    }

    /// Adds what a [`SparseRows`] accumulated, and empties it.
    pub fn absorb(&mut self, acc: &mut SparseRows) {
        let d = self.xty.len();
        for a in 0..d {
            let row = &acc.upper[SparseRows::row_start(d, a)..];
            for b in a..d {
                let v = row[b - a];
                if v != 0.0 {
                    self.xtx[[a, b]] += v;
                    if a != b {
                        self.xtx[[b, a]] += v;
                    }
                }
            }
            self.xty[a] += acc.xty[a];
        }
        self.syy += acc.syy;
        if let Some(cells) = acc.counted_cells() {
            self.merge_cells(cells);
        }
        acc.clear();
    }

    fn merge_cells(&mut self, cells: &CellStats) {
        match &mut self.cells {
            Some(mine) => mine.merge(cells),
            None => self.cells = Some(cells.clone()),
        }
    }

    /// Multiplies every weight by `f` (exponential forgetting).
    pub fn scale(&mut self, f: f64) {
        self.xtx *= f;
        self.xty *= f;
        self.syy *= f;
        if let Some(cells) = &mut self.cells {
            cells.scale(f);
        }
    }

    /// Adds the statistics of disjoint rows.
    pub fn merge(&mut self, other: &Self) {
        self.xtx += &other.xtx;
        self.xty += &other.xty;
        self.syy += other.syy;
        if let Some(cells) = &other.cells {
            self.merge_cells(cells);
        }
    }

    /// The coefficients of feature version `set` from these statistics: the ridge with the
    /// version's absolute penalties, and its median correction where it has one. `None` when
    /// no row was added.
    #[must_use]
    pub fn solve_for(&self, set: FeatureSet, alpha: f64) -> Option<Coefficients> {
        let lambda = set.penalties();
        let mut c = self.solve_penalised(alpha, lambda.as_deref())?;
        if set.has_correction() {
            c.correction = self.cells.as_ref().map_or_else(|| vec![0.0; features_v3::N_CELLS], |cells| cells.deltas(&c));
        }
        Some(c)
    }

    /// Ridge solution with penalty `alpha` on standardised coefficients (the intercept is not
    /// penalised): minimises `Σ(y − a − xβ)²/n + alpha·Σ(β_j·sd_j)²`. Features with no variance
    /// get 0. Cholesky first; a singular system is retried with a growing diagonal jitter.
    /// `None` when no row was added.
    #[must_use]
    pub fn solve(&self, alpha: f64) -> Option<Coefficients> {
        self.solve_penalised(alpha, None)
    }

    /// [`Stats::solve`] with, when given, an absolute penalty `λ_j` per feature on top:
    /// minimises `Σ(y − a − xβ)²/n + alpha·Σ(β_j·sd_j)² + Σλ_j·β_j²/n`, i.e. in the
    /// standardised system `alpha + λ_j / (n·sd_j²)` on the diagonal. It does not shrink with a
    /// column's variance (a one-hot column's level is shrunk like a pseudo-count of `λ_j`
    /// rows) and its weight relative to the data fades as `n` grows.
    #[must_use]
    pub fn solve_penalised(&self, alpha: f64, lambda: Option<&[f64]>) -> Option<Coefficients> {
        let p = self.p();
        let n = self.n();
        if n <= 0.0 {
            return None;
        }
        let mean: Vec<f64> = (1..=p).map(|j| self.xtx[[0, j]] / n).collect();
        let ybar = self.xty[0] / n;
        let sd: Vec<f64> = (0..p)
            .map(|j| {
                let var = self.xtx[[j + 1, j + 1]] / n - mean[j] * mean[j];
                if var > 1e-12 * (1.0 + mean[j] * mean[j]) { var.sqrt() } else { 0.0 }
            })
            .collect();
        let active: Vec<usize> = (0..p).filter(|&j| sd[j] > 0.0).collect();
        let k = active.len();
        let mut a = Array2::<f64>::zeros((k, k));
        let mut b = Array1::<f64>::zeros(k);
        for (r, &i) in active.iter().enumerate() {
            for (c, &j) in active.iter().enumerate() {
                a[[r, c]] = (self.xtx[[i + 1, j + 1]] / n - mean[i] * mean[j]) / (sd[i] * sd[j]);
            }
            a[[r, r]] += alpha + lambda.and_then(|l| l.get(i)).map_or(0.0, |l| l / (n * sd[i] * sd[i]));
            b[r] = (self.xty[i + 1] / n - mean[i] * ybar) / sd[i];
        }
        let std_beta = solve_spd(a, &b);
        let mut beta = vec![0.0; p];
        for (r, &j) in active.iter().enumerate() {
            beta[j] = std_beta[r] / sd[j];
        }
        let intercept = ybar - beta.iter().zip(&mean).map(|(b, m)| b * m).sum::<f64>();
        Some(Coefficients { intercept, beta, correction: Vec::new() })
    }
}

/// Accumulates rows whose features are mostly zeros (one-hot cells, indicators): each row
/// costs (non-zeros)² / 2 multiply-adds into the upper triangle instead of a dense
/// (p+1)² update. Rows are given without the intercept, which is added here.
#[derive(Clone, Debug)]
pub struct SparseRows {
    d: usize,
    /// The upper triangle, packed row after row (row `a` holds columns `a..d`): 26 KB for 80
    /// features, which stays in L1 where the square (52 KB) did not.
    upper: Vec<f64>,
    xty: Vec<f64>,
    syy: f64,
    nz: Vec<usize>,
    vals: Vec<f64>,
    /// The median correction's statistics, for a version that has one.
    cells: Option<CellStats>,
    /// The (cell, fare bin) keys of the rows added since the histogram was last counted.
    keys: Vec<u32>,
}

impl SparseRows {
    /// An accumulator for `p` features.
    #[must_use]
    pub fn new(p: usize) -> Self {
        let d = p + 1;
        Self {
            d,
            upper: vec![0.0; d * (d + 1) / 2],
            xty: vec![0.0; d],
            syy: 0.0,
            nz: Vec::with_capacity(d),
            vals: Vec::with_capacity(d),
            cells: None,
            keys: Vec::new(),
        }
    }

    /// An accumulator for the rows of feature version `set` (with the median correction's
    /// statistics where the version has one).
    #[must_use]
    pub fn for_set(set: FeatureSet) -> Self {
        let mut acc = Self::new(set.p());
        if set.has_correction() {
            acc.cells = Some(CellStats::new(set.p()));
        }
        acc
    }

    /// Adds one row of features `f` (length p) with label `y`.
    pub fn add(&mut self, f: &[f64], y: f64) {
        self.nz.clear();
        self.vals.clear();
        self.nz.push(0);
        self.vals.push(1.0);
        // Non-zeros found eight at a time as a bit mask (vector compares), then visited bit by
        // bit: no branch per value, whose outcome varies from row to row.
        for (c, chunk) in f.chunks(8).enumerate() {
            let mut mask = chunk.iter().enumerate().fold(0u32, |m, (k, &v)| m | (u32::from(v != 0.0) << k));
            while mask != 0 {
                let k = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                self.nz.push(c * 8 + k + 1);
                self.vals.push(chunk[k]);
            }
        }
        let d = self.d;
        for (i, &a) in self.nz.iter().enumerate() {
            let va = self.vals[i];
            // Row `a` from its diagonal on, so column `b` is at `b - a`.
            let row = &mut self.upper[Self::row_start(d, a)..];
            for (&b, &vb) in self.nz[i..].iter().zip(&self.vals[i..]) {
                row[b - a] += va * vb;
            }
            self.xty[a] += va * y;
        }
        self.syy += y * y;
        if let Some(cells) = &mut self.cells {
            self.keys.push(cells.add_sums(features_v3::cell(f), &self.nz, &self.vals, y));
        }
    }

    /// The prediction of `c` (of this accumulator's feature version) for the row last given
    /// to [`Self::add`], whose features are `f`: [`Coefficients::predict`]'s sum over the
    /// row's non-zeros alone, in the same order, so the same value for finite coefficients
    /// (a zero term changes no sum but a zero's sign), at the cost of the few non-zeros.
    #[inline]
    #[must_use]
    pub fn predict_last(&self, c: &Coefficients, f: &[f64]) -> f64 {
        debug_assert_eq!(c.beta.len() + 1, self.d);
        let linear = c.intercept + self.nz[1..].iter().zip(&self.vals[1..]).map(|(&j, v)| c.beta[j - 1] * v).sum::<f64>();
        if c.correction.is_empty() { linear } else { linear + c.correction_at(features_v3::cell(f)) }
    }

    /// The median correction's statistics summed so far (their histogram counted).
    fn counted_cells(&mut self) -> Option<&CellStats> {
        let cells = self.cells.as_mut()?;
        cells.count_keys(&mut self.keys);
        Some(cells)
    }

    /// Where row `a` of the packed triangle starts.
    fn row_start(d: usize, a: usize) -> usize {
        a * d - a * a.saturating_sub(1) / 2
    }

    fn clear(&mut self) {
        self.upper.fill(0.0);
        self.xty.fill(0.0);
        self.syy = 0.0;
        if let Some(cells) = &mut self.cells {
            cells.clear();
        }
        self.keys.clear();
    }
}

/// Solves `a x = b` for symmetric positive (semi-)definite `a` by Cholesky, adding a diagonal
/// jitter (1e-12 of the mean diagonal, then ×100) until the factorisation succeeds.
fn solve_spd(a: Array2<f64>, b: &Array1<f64>) -> Vec<f64> {
    let k = b.len();
    let scale = (0..k).map(|i| a[[i, i]]).sum::<f64>() / k.max(1) as f64;
    let mut jitter = 0.0;
    for attempt in 0..12 {
        let mut m = a.clone();
        for i in 0..k {
            m[[i, i]] += jitter;
        }
        if let Some(l) = cholesky(m) {
            if attempt > 0 {
                log::warn!("singular normal equations: solved with diagonal jitter {jitter:.3e}");
            }
            return cholesky_solve(&l, b);
        }
        jitter = if jitter == 0.0 { 1e-12 * scale.max(1e-300) } else { jitter * 100.0 };
    }
    log::warn!("normal equations could not be factorised: coefficients set to 0");
    vec![0.0; k]
}

fn cholesky(mut m: Array2<f64>) -> Option<Array2<f64>> {
    let k = m.nrows();
    for j in 0..k {
        let mut d = m[[j, j]];
        for t in 0..j {
            d -= m[[j, t]] * m[[j, t]];
        }
        if d.is_nan() || d <= 0.0 {
            return None;
        }
        let d = d.sqrt();
        m[[j, j]] = d;
        for i in j + 1..k {
            let mut s = m[[i, j]];
            for t in 0..j {
                s -= m[[i, t]] * m[[j, t]];
            }
            m[[i, j]] = s / d;
        }
    }
    Some(m)
}

fn cholesky_solve(l: &Array2<f64>, b: &Array1<f64>) -> Vec<f64> {
    let k = b.len();
    let mut z = vec![0.0; k];
    for i in 0..k {
        let s: f64 = (0..i).map(|t| l[[i, t]] * z[t]).sum();
        z[i] = (b[i] - s) / l[[i, i]];
    }
    let mut x = vec![0.0; k];
    for i in (0..k).rev() {
        let s: f64 = (i + 1..k).map(|t| l[[t, i]] * x[t]).sum();
        x[i] = (z[i] - s) / l[[i, i]];
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::rng::Rng;
    use linfa::prelude::*;
    use linfa_linear::LinearRegression;
    use ndarray::{s, Array2};

    fn data(n: usize, p: usize, seed: u64) -> (Array2<f64>, Array1<f64>) {
        let mut rng = Rng::new(seed, 0);
        let x = Array2::from_shape_fn((n, p), |_| rng.normal() * 2.0 + 1.0);
        let y = Array1::from_shape_fn(n, |i| 3.0 + (0..p).map(|j| (j as f64 - 1.5) * x[[i, j]]).sum::<f64>() + rng.normal());
        (x, y)
    }

    fn augment(x: ArrayView2<f64>) -> Array2<f64> {
        let mut a = Array2::ones((x.nrows(), x.ncols() + 1));
        a.slice_mut(s![.., 1..]).assign(&x);
        a
    }

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs().max(1.0)
    }

    #[test]
    fn incremental_equals_full_fit_equals_linfa() {
        let (x, y) = data(5000, 6, 1);
        let mut whole = Stats::new(6);
        whole.add(augment(x.view()).view(), y.view());
        let mut parts = Stats::new(6);
        for (lo, hi) in [(0, 1), (1, 1700), (1700, 1700), (1700, 5000)] {
            parts.add(augment(x.slice(s![lo..hi, ..])).view(), y.slice(s![lo..hi]));
        }
        let (cw, cp) = (whole.solve(0.0).unwrap(), parts.solve(0.0).unwrap());
        let fit = LinearRegression::default().fit(&Dataset::new(x.clone(), y.clone())).unwrap();
        assert!(rel(cw.intercept, fit.intercept()) < 1e-9, "{} vs {}", cw.intercept, fit.intercept());
        assert!(rel(cp.intercept, cw.intercept) < 1e-9);
        for j in 0..6 {
            assert!(rel(cw.beta[j], fit.params()[j]) < 1e-9, "beta {j}: {} vs {}", cw.beta[j], fit.params()[j]);
            assert!(rel(cp.beta[j], cw.beta[j]) < 1e-9);
        }
    }

    #[test]
    fn merge_equals_fit_on_the_union() {
        let (x, y) = data(3000, 4, 2);
        let (mut a, mut b, mut all) = (Stats::new(4), Stats::new(4), Stats::new(4));
        a.add(augment(x.slice(s![..1000, ..])).view(), y.slice(s![..1000]));
        b.add(augment(x.slice(s![1000.., ..])).view(), y.slice(s![1000..]));
        all.add(augment(x.view()).view(), y.view());
        a.merge(&b);
        let (ca, call) = (a.solve(0.5).unwrap(), all.solve(0.5).unwrap());
        for j in 0..4 {
            assert!(rel(ca.beta[j], call.beta[j]) < 1e-12);
        }
    }

    #[test]
    fn ridge_shrinks_and_constant_or_collinear_columns_are_handled() {
        let (mut x, _) = data(2000, 4, 3);
        x.column_mut(2).fill(7.0); // never varies
        let col0 = x.column(0).to_owned();
        x.column_mut(3).assign(&(&col0 * 2.0)); // exactly collinear
        let mut rng = Rng::new(5, 0);
        let y = Array1::from_shape_fn(2000, |i| 1.0 + x[[i, 0]] - 2.0 * x[[i, 1]] + rng.normal());
        let mut s = Stats::new(4);
        s.add(augment(x.view()).view(), y.view());
        let c = s.solve(0.0).unwrap();
        assert_eq!(c.beta[2], 0.0);
        assert!(c.beta.iter().all(|b| b.is_finite()) && c.intercept.is_finite());
        // The collinear pair still predicts like the single column did.
        let pred = |c: &Coefficients, i: usize| c.intercept + (0..4).map(|j| c.beta[j] * x[[i, j]]).sum::<f64>();
        let mse: f64 = (0..2000).map(|i| (pred(&c, i) - y[i]).powi(2)).sum::<f64>() / 2000.0;
        assert!(mse < 1.5, "{mse}");
        let shrunk = s.solve(100.0).unwrap();
        assert!(shrunk.beta[1].abs() < c.beta[1].abs());
        assert!(Stats::new(3).solve(0.0).is_none());
    }

    #[test]
    fn sparse_rows_equal_dense_add() {
        let (mut x, y) = data(500, 5, 6);
        for i in 0..500 {
            x[[i, i % 5]] = 0.0; // some exact zeros
        }
        let mut dense = Stats::new(5);
        dense.add(augment(x.view()).view(), y.view());
        let mut sparse = Stats::new(5);
        let mut acc = SparseRows::new(5);
        for i in 0..500 {
            acc.add(x.row(i).as_slice().unwrap(), y[i]);
        }
        sparse.absorb(&mut acc);
        for (a, b) in sparse.xtx.iter().zip(dense.xtx.iter()) {
            assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0));
        }
        assert!((sparse.syy - dense.syy).abs() < 1e-9 * dense.syy);
        assert_eq!(sparse.n(), 500.0);
    }

    #[test]
    fn scaling_halves_the_weight() {
        let (x, y) = data(100, 2, 4);
        let mut s = Stats::new(2);
        s.add(augment(x.view()).view(), y.view());
        let before = s.solve(0.0).unwrap();
        s.scale(0.5);
        assert_eq!(s.n(), 50.0);
        let after = s.solve(0.0).unwrap();
        assert!(rel(before.beta[0], after.beta[0]) < 1e-12, "scaling alone does not move OLS");
    }
}
