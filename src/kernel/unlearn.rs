//! Exact unlearning: removing rows' contribution from a model's sufficient statistics.
//!
//! The statistics are sums over rows, so removing rows is a subtraction, with each row at the
//! weight it has now: under forgetting a row of ride month `m` weighs `0.5^((clock − m) / h)`
//! for a model whose clock (its newest month) is `clock` — the weight the lifecycle, which
//! learns months in ride-time order, gave it. Unlearning rows `B` after `fit(A); fit(B)` leaves
//! the statistics of `fit(A)` (decayed to the clock, which does not move back): the ridge
//! solution divides by `n`, so the predictions are those of `fit(A)`. Feature version 3's
//! absolute penalty and the correction's pseudo-count are in (weighted) rows, so there the
//! predictions are those of `fit(A)` decayed to that clock (equal without forgetting).
//!
//! What cannot be undone is refused with [`KernelError::NotLearnt`], the model unchanged: rows
//! newer than anything the model learnt, or rows whose removal would leave a negative weight
//! (more rows than it has, or one-hot cells it never saw).

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use arrow::error::ArrowError;

use super::cleaning::CleaningCounts;
use super::model::Model;
use super::stats::{SparseRows, Stats};
use super::KernelError;
use crate::calendar::{Month, MonthIndexCache};

/// An entry whose remainder after a subtraction is below this fraction of its value before is
/// cancellation noise: it is set to 0, so a one-hot cell only the removed rows had is empty
/// again (as it is in the model that never learnt them), not ±1e-13 of a row.
const CANCELLED: f64 = 1e-10;

/// A subtraction may leave a weight below 0 by this fraction of the model's weight (rounding).
const NEGATIVE_TOLERANCE: f64 = 1e-9;

impl Model {
    /// The weight a row of ride month `month` has now, or `NotLearnt` for a month newer than
    /// the model's clock (the model cannot have learnt it).
    fn weight_now(&self, month: i32) -> Result<f64, KernelError> {
        match self.last_month {
            Some(clock) if month <= clock => {
                Ok(if self.forgetting() { 0.5_f64.powf(f64::from(clock - month) / self.settings.half_life_months) } else { 1.0 })
            }
            Some(clock) => Err(KernelError::NotLearnt(format!(
                "rows of {} are newer than anything the model learnt (its newest month is {})",
                Month::from_index(month),
                Month::from_index(clock)
            ))),
            None => Err(KernelError::NotLearnt("the model has learnt no row".into())),
        }
    }

    /// Removes the rows of a stream of raw batches, cleaned as [`Model::partial_fit`] cleaned
    /// them (one cleaning state across the stream: give the rows as they were learnt, in one
    /// call, so that the same duplicates are dropped). Returns the cleaning counts.
    pub fn unlearn<I>(&mut self, batches: I) -> Result<CleaningCounts, KernelError>
    where
        I: IntoIterator<Item = Result<RecordBatch, ArrowError>>,
    {
        Ok(self.unlearn_after(batches, 0)?.0)
    }

    /// [`Model::unlearn`] of the stream's rows from position `skip` on: the rows before it are
    /// cleaned (they seed the de-duplication, as they did when the stream was learnt in one
    /// pass) but not removed. Returns the cleaning counts of the whole stream and the clean
    /// rows removed.
    pub fn unlearn_after<I>(&mut self, batches: I, skip: u64) -> Result<(CleaningCounts, u64), KernelError>
    where
        I: IntoIterator<Item = Result<RecordBatch, ArrowError>>,
    {
        let set = self.feature_set;
        let p = set.p();
        let mut feat = set.featurizer();
        let mut f = vec![0.0; p];
        let mut months = MonthIndexCache::default();
        let mut per_month: BTreeMap<i32, SparseRows> = BTreeMap::new();
        let mut removed_rows = 0u64;
        let counts = super::pipeline::cleaned(batches, |c| {
            for &i in &c.kept {
                if c.first + (i as u64) < skip {
                    continue;
                }
                removed_rows += 1;
                let m = months.of(c.cols.ts[i]);
                feat.write(&c.cols, i, &mut f);
                per_month.entry(m).or_insert_with(|| SparseRows::for_set(set)).add(&f, c.fares.value(i));
            }
            Ok(())
        })?;
        let mut removed = Stats::new(p);
        for (month, mut acc) in per_month {
            let w = self.weight_now(month)?;
            let mut s = Stats::new(p);
            s.absorb(&mut acc);
            s.scale(w);
            removed.merge(&s);
        }
        self.subtract(&removed)?;
        Ok((counts, removed_rows))
    }

    /// Removes statistics summed elsewhere (a warehouse, a ledger) of rows of ride month
    /// `month`, the counterpart of [`Model::add_stats`].
    pub fn unlearn_stats(&mut self, month: i32, stats: &Stats) -> Result<(), KernelError> {
        self.feature_set.check_stats(stats, "unlearning from a model")?;
        let mut removed = stats.clone();
        removed.scale(self.weight_now(month)?);
        self.subtract(&removed)
    }

    /// Removes what `other` learnt: a model of the same feature version and settings trained
    /// on rows this one learnt (the counterpart of [`Model::merge`]).
    pub fn unlearn_model(&mut self, other: &Self) -> Result<(), KernelError> {
        if other.feature_set != self.feature_set || other.settings != self.settings {
            return Err(KernelError::Incompatible(format!(
                "cannot unlearn a model of feature version {} (ridge_alpha {}, half_life_months {}) from one of feature \
                 version {} (ridge_alpha {}, half_life_months {})",
                other.feature_version(),
                other.settings.ridge_alpha,
                other.settings.half_life_months,
                self.feature_version(),
                self.settings.ridge_alpha,
                self.settings.half_life_months
            )));
        }
        let Some(theirs) = other.last_month else { return Ok(()) };
        // Its statistics are weighted as of its own clock; bring them to this one's.
        let mut removed = other.stats.clone();
        removed.scale(self.weight_now(theirs)?);
        self.subtract(&removed)
    }

    /// `self.stats − removed`, refused (nothing changed) where a weight would go negative.
    fn subtract(&mut self, removed: &Stats) -> Result<(), KernelError> {
        let before = &self.stats;
        let n = before.n();
        let tolerance = NEGATIVE_TOLERANCE * n.max(1.0);
        let left = n - removed.n();
        if left < -tolerance {
            return Err(KernelError::NotLearnt(format!(
                "removing rows of weight {:.6} from a model of weight {n:.6}: it never learnt them all",
                removed.n()
            )));
        }
        let mut after = before.clone();
        for (a, r) in after.xtx.iter_mut().zip(&removed.xtx) {
            let was = *a;
            *a -= r;
            if a.abs() <= CANCELLED * was.abs() {
                *a = 0.0;
            }
        }
        for (a, r) in after.xty.iter_mut().zip(&removed.xty) {
            let was = *a;
            *a -= r;
            if a.abs() <= CANCELLED * was.abs() {
                *a = 0.0;
            }
        }
        let was = after.syy;
        after.syy -= removed.syy;
        if after.syy.abs() <= CANCELLED * was.abs() {
            after.syy = 0.0;
        }
        // Diagonals are sums of squares: below zero, the model never learnt some of the rows.
        let d = after.xty.len();
        if let Some(j) = (1..d).find(|&j| after.xtx[[j, j]] < -NEGATIVE_TOLERANCE * before.xtx[[j, j]].abs().max(1.0)) {
            return Err(KernelError::NotLearnt(format!(
                "feature {:?} would weigh {:.6} after the removal: the model never learnt these rows",
                self.feature_set.names().get(j - 1).map_or("?", String::as_str),
                after.xtx[[j, j]]
            )));
        }
        // The median correction's statistics are sums too: its fare histograms are counts,
        // one of which going negative means rows the model never learnt.
        if let Some(gone) = &removed.cells {
            let never = |cell: usize| {
                KernelError::NotLearnt(format!(
                    "correction cell {cell} would hold fares the model never learnt: it never learnt these rows"
                ))
            };
            match &mut after.cells {
                Some(cells) => cells.subtract(gone, CANCELLED, NEGATIVE_TOLERANCE).map_err(never)?,
                None => {
                    if let Some((&k, _)) = gone.hist.iter().find(|(_, &w)| w > 0.0) {
                        return Err(never(k as usize / super::features_v3::N_BINS));
                    }
                }
            }
        }
        if left.abs() <= tolerance {
            // Everything was removed: the model is empty again, as if new.
            after = Stats::new(d - 1);
            self.last_month = None;
        }
        self.stats = after;
        self.coef = None;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::generator::MonthRides;
    use crate::kernel::feature_set::FeatureSet;
    use crate::kernel::model::Settings;

    /// Version 2 (version 3's unlearning: `features_v3`'s tests).
    const V2: FeatureSet = FeatureSet::V2;

    fn rows(months: &[&str], n: u64, seed: u64) -> Vec<Result<RecordBatch, ArrowError>> {
        months.iter().flat_map(|m| MonthRides::new(seed, Month::parse(m).unwrap(), n, 700, false)).collect()
    }

    fn fitted(settings: Settings, parts: &[&[Result<RecordBatch, ArrowError>]]) -> Model {
        fitted_with(settings, V2, parts)
    }

    fn fitted_with(settings: Settings, set: FeatureSet, parts: &[&[Result<RecordBatch, ArrowError>]]) -> Model {
        let mut m = Model::with_features(settings, set).unwrap();
        for part in parts {
            m.partial_fit(clone(part)).unwrap();
        }
        m
    }

    fn clone(part: &[Result<RecordBatch, ArrowError>]) -> Vec<Result<RecordBatch, ArrowError>> {
        part.iter().map(|b| Ok(b.as_ref().unwrap().clone())).collect()
    }

    /// Largest prediction difference on rows of `probe`.
    pub(crate) fn max_gap(a: &mut Model, b: &mut Model, probe: &[Result<RecordBatch, ArrowError>]) -> f64 {
        let mut gap: f64 = 0.0;
        for batch in probe {
            let batch = batch.as_ref().unwrap();
            for (x, y) in a.predict(batch).unwrap().into_iter().zip(b.predict(batch).unwrap()) {
                if !x.is_nan() || !y.is_nan() {
                    gap = gap.max((x - y).abs());
                }
            }
        }
        gap
    }

    /// `fit(A); fit(B); unlearn(B)` against `fit(A)`, on rides of the month after B (the
    /// predictions the lifecycle makes): the largest difference in dollars.
    fn unlearn_gap(settings: Settings, set: FeatureSet) -> f64 {
        let a = rows(&["2013-10", "2013-11"], 3000, 1);
        let b = rows(&["2013-12", "2014-01"], 3000, 2);
        let probe = rows(&["2014-02"], 2000, 3);
        let mut oracle = fitted_with(settings, set, &[&a]);
        let mut m = fitted_with(settings, set, &[&a, &b]);
        assert!(max_gap(&mut m, &mut oracle, &probe) > 0.01, "B must change the model for the test to mean anything");
        let counts = m.unlearn(clone(&b)).unwrap();
        assert_eq!(counts.raw, 6000);
        max_gap(&mut m, &mut oracle, &probe)
    }

    #[test]
    fn fit_a_fit_b_unlearn_b_predicts_as_fit_a() {
        let gap = unlearn_gap(Settings::default(), V2);
        assert!(gap < 1e-9, "unlearnt model predicts {gap} away from the model that never learnt B");
    }

    #[test]
    fn unlearning_is_exact_under_forgetting() {
        let gap = unlearn_gap(Settings { ridge_alpha: 1e-3, half_life_months: 2.0 }, V2);
        assert!(gap < 1e-9, "{gap}");
    }

    #[test]
    fn feature_version_1_unlearns_to_its_conditioning() {
        // Version 1's normal equations are far worse conditioned: the one rounding of the sum
        // A + B, which no subtraction can undo, moves its predictions by ~1e-8 dollars (reordering
        // A's rows moves them by ~1e-10). Measured: 2.9e-8 exact, 3.1e-8 with forgetting.
        for h in [f64::INFINITY, 2.0] {
            let gap = unlearn_gap(Settings { ridge_alpha: 1e-3, half_life_months: h }, FeatureSet::V1);
            assert!(gap < 2e-7, "{gap}");
        }
    }

    #[test]
    fn unlearning_a_middle_month_at_its_age_matches_the_oracle() {
        // fit(A); fit(B); fit(C); unlearn(B) against fit(A); fit(C): B is removed at the weight
        // it has when C is the newest month, two half-lives later.
        let settings = Settings { ridge_alpha: 1e-3, half_life_months: 1.5 };
        let a = rows(&["2012-01", "2012-02"], 2500, 4);
        let b = rows(&["2012-03"], 2500, 5);
        let c = rows(&["2012-05", "2012-06"], 2500, 6);
        let probe = rows(&["2012-07"], 2000, 7);
        let mut oracle = fitted(settings, &[&a, &c]);
        let mut m = fitted(settings, &[&a, &b, &c]);
        m.unlearn(clone(&b)).unwrap();
        assert!((m.n_rows() - oracle.n_rows()).abs() < 1e-9 * oracle.n_rows());
        let gap = max_gap(&mut m, &mut oracle, &probe);
        assert!(gap < 1e-9, "{gap}");
        assert_eq!(m.stats().xtx.shape(), oracle.stats().xtx.shape());
        for (x, y) in m.stats().xtx.iter().zip(oracle.stats().xtx.iter()) {
            assert!((x - y).abs() <= 1e-9 * y.abs().max(1.0), "{x} vs {y}");
        }
    }

    #[test]
    fn unlearning_after_a_prefix_removes_only_the_rows_after_it() {
        // One pass learnt A then B (one cleaning state); B is removed by cleaning A + B again
        // and skipping A's rows: a key of B that repeats one of A was dropped when learnt, and
        // is skipped again here.
        let settings = Settings { ridge_alpha: 1e-3, half_life_months: 2.5 };
        let a = rows(&["2012-01"], 2000, 16);
        let mut b = rows(&["2012-02"], 2000, 17);
        // B starts with 50 rows of A again: their keys were dropped as duplicates in the one
        // pass, so removing them would remove what the model never learnt.
        let first_a = a[0].as_ref().unwrap().clone();
        b.insert(0, Ok(first_a.slice(0, 50)));
        let both: Vec<_> = clone(&a).into_iter().chain(clone(&b)).collect();
        let mut oracle = fitted(settings, &[&a]);
        let mut m = fitted(settings, &[&both]);
        let skip: u64 = a.iter().map(|x| x.as_ref().unwrap().num_rows() as u64).sum();
        let (counts, removed) = m.unlearn_after(both, skip).unwrap();
        assert!(counts.duplicate_key >= 40, "{counts:?}");
        // A alone, at its own clock, weighs its clean rows; B's clean rows are what was removed.
        assert_eq!(removed, counts.kept - oracle.n_rows() as u64);
        // A is one month older than the clock now: it weighs 0.5^(1 / 2.5) of its rows.
        assert!((m.n_rows() - oracle.n_rows() * 0.5_f64.powf(1.0 / 2.5)).abs() < 1e-9 * oracle.n_rows());
        let gap = max_gap(&mut m, &mut oracle, &rows(&["2012-03"], 1000, 18));
        assert!(gap < 1e-9, "{gap}");
    }

    #[test]
    fn unlearning_another_models_rows_equals_unlearning_them() {
        let settings = Settings { ridge_alpha: 1e-3, half_life_months: 3.0 };
        let a = rows(&["2011-04"], 3000, 8);
        let b = rows(&["2011-05"], 3000, 9);
        let c = rows(&["2011-06"], 3000, 10);
        let mut oracle = fitted(settings, &[&a, &c]);
        let mut m = fitted(settings, &[&a, &b, &c]);
        m.unlearn_model(&fitted(settings, &[&b])).unwrap();
        assert!(max_gap(&mut m, &mut oracle, &rows(&["2011-07"], 1000, 11)) < 1e-9);
    }

    #[test]
    fn unlearning_everything_empties_the_model() {
        let a = rows(&["2010-03"], 1500, 12);
        let mut m = fitted(Settings::default(), &[&a]);
        m.unlearn(clone(&a)).unwrap();
        assert_eq!(m.n_rows(), 0.0);
        assert!(matches!(m.coefficients(), Err(KernelError::NotFitted)));
        assert_eq!(m.last_month, None);
    }

    #[test]
    fn what_was_never_learnt_is_refused_and_the_model_kept() {
        let a = rows(&["2013-03"], 2000, 13);
        let mut m = fitted(Settings::default(), &[&a]);
        let before = m.clone();
        // More rows than it has.
        let more = rows(&["2013-03"], 4000, 14);
        assert!(matches!(m.unlearn(more), Err(KernelError::NotLearnt(_))));
        // Rows newer than anything it learnt.
        let err = m.unlearn(rows(&["2013-04"], 100, 15)).unwrap_err();
        assert!(matches!(&err, KernelError::NotLearnt(msg) if msg.contains("2013-04") && msg.contains("2013-03")), "{err}");
        // Statistics or a model of another feature version.
        let other = crate::kernel::feature_set::FeatureSet::ALL.into_iter().find(|f| *f != m.feature_set).unwrap();
        let err = m.unlearn_stats(Month::parse("2013-03").unwrap().index(), &Stats::new(other.p())).unwrap_err();
        assert!(matches!(err, KernelError::Incompatible(_)), "{err}");
        let foreign = Model::with_features(Settings::default(), other).unwrap();
        assert!(matches!(m.unlearn_model(&foreign), Err(KernelError::Incompatible(_))));
        // An empty model learnt nothing.
        let mut empty = Model::new(Settings::default()).unwrap();
        assert!(matches!(empty.unlearn(clone(&a)), Err(KernelError::NotLearnt(_))));
        assert_eq!(m, before);
    }
}

