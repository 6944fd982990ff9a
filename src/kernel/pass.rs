//! One pass over a lifecycle's new rows `[w, t)`: every row is decoded, cleaned and featurised
//! once, and that one featurisation feeds everything the lifecycle needs —
//! - the production and frozen models scored on `[w, t)` (prequential error),
//! - the challenger's statistics on `[w, h)`,
//! - the holdout `[h, t)`: production's errors, its statistics (kept apart), and its cleaned
//!   feature rows, kept sparse, to score the challenger once `[w, h)` is in,
//! - the lineage hash of the raw rows, on its own thread.
//!
//! The rows are summed per ride month, once: those sums are the new rows' [`Ledger`] (what the
//! training run keeps), and every challenger — the lineage's own and the other horizons the
//! lifecycle composed from the ledger — is given them. Each is given `[w, h)`'s sums, scored on
//! the kept holdout rows, then given `[h, t)`'s, so it ends trained on exactly `[w, t)` — the
//! same model as one `partial_fit` of `[w, t)` (up to summation order), with one cleaning state
//! across the range.

use std::collections::BTreeMap;
use std::sync::mpsc;

use arrow::array::{Float64Array, RecordBatch};
use arrow::error::ArrowError;

use super::cleaning::CleaningCounts;
use super::columns::RideColumns;
use super::feature_set::FeatureSet;
use super::features_v3;
use super::ledger::Ledger;
use super::metrics::Metrics;
use super::model::Model;
use super::parallel::on_cores;
use super::pipeline;
use super::profile::{Profile, Profiler};
use super::stats::{Coefficients, SparseRows, Stats};
use super::KernelError;
use crate::calendar::month_index_of;
use crate::lineage;

/// The models of one lifecycle.
pub struct PassModels<'a> {
    /// Continues the lineage: trained on `[w, h)`, scored on `[h, t)`, then given `[h, t)`.
    pub challenger: &'a mut Model,
    /// Scored on `[w, t)` and on `[h, t)` row by row (the paired comparison).
    pub production: Option<&'a mut Model>,
    /// Scored on `[w, t)` (the never-retrained baseline).
    pub frozen: Option<&'a mut Model>,
    /// Other challengers of the challenger's feature version (other horizons), treated as the
    /// challenger is: given `[w, h)`, scored on the holdout, then given `[h, t)`.
    pub horizons: Vec<&'a mut Model>,
}

/// What one pass found.
#[derive(Debug, Default)]
pub struct PassResult {
    /// Rows of `[w, t)` read.
    pub rows: u64,
    /// Cleaning of `[w, t)` (one state: a key seen in `[w, h)` is a duplicate in `[h, t)`).
    pub counts: CleaningCounts,
    /// Clean rows of `[w, h)`.
    pub train_kept: u64,
    /// Clean rows of `[h, t)`.
    pub holdout_kept: u64,
    /// Production on `[w, t)`.
    pub production: Option<Metrics>,
    /// The frozen model on `[w, t)`.
    pub frozen: Option<Metrics>,
    /// The challenger's absolute errors on the clean holdout rows, in row order; `None` when
    /// `[w, h)` left it without rows (nothing to score).
    pub holdout_challenger: Option<Vec<f64>>,
    /// Production's absolute errors on the same rows.
    pub holdout_production: Option<Vec<f64>>,
    /// Each horizon's absolute errors on the same rows (`None` for one without rows before
    /// the holdout), in the order given.
    pub holdout_horizons: Vec<Option<Vec<f64>>>,
    /// The statistics of the clean rows of `[w, t)` per ride month: what the run learnt.
    pub ledger: Option<Ledger>,
    /// The lineage hash of the raw rows (as [`lineage::hash_rows`]).
    pub lineage_hash: String,
    /// The data-validation statistics of `[w, t)` per ride month, from the same cleaning.
    pub profile: Profile,
}

/// Clean holdout rows, kept sparse: most features are one-hot zeros; with each row its
/// median-correction cell (feature version 3; 0 for the others, whose coefficients have no
/// correction).
#[derive(Default)]
struct KeptRows {
    y: Vec<f64>,
    ends: Vec<u32>,
    idx: Vec<u16>,
    val: Vec<f64>,
    cell: Vec<u8>,
}

impl KeptRows {
    fn push(&mut self, f: &[f64], y: f64, cell: usize) {
        for (j, &v) in f.iter().enumerate() {
            if v != 0.0 {
                self.idx.push(j as u16);
                self.val.push(v);
            }
        }
        self.ends.push(self.idx.len() as u32);
        self.y.push(y);
        self.cell.push(u8::try_from(cell).unwrap_or(u8::MAX));
    }

    fn append(&mut self, other: Self) {
        let base = self.idx.len() as u32;
        self.ends.extend(other.ends.iter().map(|e| e + base));
        self.y.extend(other.y);
        self.idx.extend(other.idx);
        self.val.extend(other.val);
        self.cell.extend(other.cell);
    }

    fn abs_errors(&self, c: &Coefficients) -> Vec<f64> {
        let mut start = 0usize;
        self.ends
            .iter()
            .zip(&self.y)
            .zip(&self.cell)
            .map(|((&end, &y), &cell)| {
                let end = end as usize;
                let p = c.intercept
                    + self.idx[start..end].iter().zip(&self.val[start..end]).map(|(&j, v)| c.beta[j as usize] * v).sum::<f64>()
                    + c.correction_at(usize::from(cell));
                start = end;
                (p - y).abs()
            })
            .collect()
    }
}

/// What one core computed over a chunk of clean rows.
struct Part {
    acc: SparseRows,
    production: Metrics,
    frozen: Metrics,
    kept: KeptRows,
    production_errors: Vec<f64>,
}

/// Scores the reference models on one chunk and accumulates it (`holdout`: also keep the rows
/// and production's errors).
fn work(cols: &RideColumns, fares: &Float64Array, rows: &[usize], refs: &Refs, holdout: bool) -> Part {
    // One buffer per distinct version: each row is featurised once per version, whichever
    // models share it.
    let mut feats: Vec<_> = refs.sets.iter().map(|s| (s.featurizer(), vec![0.0; s.p()])).collect();
    let mut part = Part {
        acc: SparseRows::for_set(refs.sets[0]),
        production: Metrics::default(),
        frozen: Metrics::default(),
        kept: KeptRows::default(),
        production_errors: Vec::new(),
    };
    for &i in rows {
        for (feat, f) in &mut feats {
            feat.write(cols, i, f);
        }
        let f = &feats[0].1;
        let y = fares.value(i);
        part.acc.add(f, y);
        // A model of the accumulated version is scored from the row's non-zeros, which the
        // accumulator just found (a dense product over every feature was a tenth of the pass).
        let score = |r: &Ref, acc: &SparseRows| if r.set == 0 { acc.predict_last(&r.coef, f) } else { Model::dot(&r.coef, &feats[r.set].1) };
        if let Some(r) = &refs.production {
            let p = score(r, &part.acc);
            part.production.add(y, p);
            if holdout {
                part.production_errors.push((p - y).abs());
            }
        }
        if let Some(r) = &refs.frozen {
            part.frozen.add(y, score(r, &part.acc));
        }
        if holdout {
            part.kept.push(f, y, if refs.sets[0].has_correction() { features_v3::cell(f) } else { 0 });
        }
    }
    part
}

/// A model that is only scored: its coefficients and the index of its version in `Refs::sets`.
struct Ref {
    coef: Coefficients,
    set: usize,
}

/// The models that are only scored, and the distinct feature versions of the pass: the
/// challenger's first (it is the one accumulated and kept), then the others'.
struct Refs {
    production: Option<Ref>,
    frozen: Option<Ref>,
    sets: Vec<FeatureSet>,
}

impl Refs {
    fn new(challenger: FeatureSet, production: Option<&mut Model>, frozen: Option<&mut Model>) -> Result<Self, KernelError> {
        let mut sets = vec![challenger];
        let mut scored = |m: Option<&mut Model>| -> Result<Option<Ref>, KernelError> {
            let Some(m) = m else { return Ok(None) };
            let set = sets.iter().position(|&s| s == m.feature_set).unwrap_or_else(|| {
                sets.push(m.feature_set);
                sets.len() - 1
            });
            Ok(Some(Ref { coef: m.coefficients()?.clone(), set }))
        };
        let production = scored(production)?;
        let frozen = scored(frozen)?;
        Ok(Self { production, frozen, sets })
    }
}

/// Totals over the whole pass.
#[derive(Default)]
struct Totals {
    production: Metrics,
    frozen: Metrics,
    kept: KeptRows,
    production_errors: Vec<f64>,
}

/// Sums the clean rows `rows` of a batch into the statistics of their ride month, on every
/// core (a batch holds few months: each run of rows of one month is shared by the cores).
fn feed(sums: &mut BTreeMap<i32, Stats>, cols: &RideColumns, fares: &Float64Array, rows: &[usize], refs: &Refs, holdout: bool, totals: &mut Totals) {
    let p = refs.sets[0].p();
    let mut start = 0;
    while start < rows.len() {
        let month = month_index_of(cols.ts[rows[start]]);
        let end = rows[start..].iter().position(|&i| month_index_of(cols.ts[i]) != month).map_or(rows.len(), |q| start + q);
        let stats = sums.entry(month).or_insert_with(|| Stats::new(p));
        for mut part in on_cores(&rows[start..end], |chunk| work(cols, fares, chunk, refs, holdout)) {
            stats.absorb(&mut part.acc);
            totals.production.merge(&part.production);
            totals.frozen.merge(&part.frozen);
            totals.kept.append(part.kept);
            totals.production_errors.extend(part.production_errors);
        }
        start = end;
    }
}

/// Gives a model the month sums, oldest month first (its clock moves to each month before,
/// as if the rows had been added in ride-time order).
fn give(model: &mut Model, sums: &BTreeMap<i32, Stats>) -> Result<(), KernelError> {
    for (&month, stats) in sums {
        model.add_stats(month, stats)?;
    }
    Ok(())
}

/// Runs the pass over a raw stream of `[w, t)` whose holdout starts `holdout_offset` rows in.
pub fn lifecycle_pass<I>(batches: I, holdout_offset: u64, models: PassModels<'_>) -> Result<PassResult, KernelError>
where
    I: IntoIterator<Item = Result<RecordBatch, ArrowError>>,
{
    pass_with(batches, holdout_offset, models, true)
}

/// [`lifecycle_pass`], with or without the data-validation statistics (to measure what they cost).
pub(crate) fn pass_with<I>(batches: I, holdout_offset: u64, models: PassModels<'_>, profile: bool) -> Result<PassResult, KernelError>
where
    I: IntoIterator<Item = Result<RecordBatch, ArrowError>>,
{
    let PassModels { challenger, production, frozen, mut horizons } = models;
    if let Some(h) = horizons.iter().find(|h| h.feature_set != challenger.feature_set) {
        return Err(KernelError::Incompatible(format!(
            "a horizon of feature version {} beside a challenger of feature version {}",
            h.feature_version(),
            challenger.feature_version()
        )));
    }
    let refs = Refs::new(challenger.feature_set, production, frozen)?;
    let (mut train_sums, mut hold_sums) = (BTreeMap::new(), BTreeMap::new());
    let mut totals = Totals::default();
    let mut result = PassResult::default();
    let (tx, rx) = mpsc::sync_channel::<RecordBatch>(4);
    let hash = std::thread::scope(|s| -> Result<String, KernelError> {
        let hasher = s.spawn(move || lineage::hash_rows(rx.into_iter().map(Ok)));
        let (train_kept, holdout_kept) = (&mut result.train_kept, &mut result.holdout_kept);
        // Decoding and cleaning run on other threads (`pipeline`); the hasher thread reads
        // the raw rows while this one featurises them.
        let fed = pipeline::cleaned_profiled(batches, |c| {
            tx.send(c.batch).map_err(|_| KernelError::Input("the lineage hasher stopped".into()))?;
            let split = c.kept.partition_point(|&i| c.first + (i as u64) < holdout_offset);
            let (train, hold) = c.kept.split_at(split);
            *train_kept += train.len() as u64;
            *holdout_kept += hold.len() as u64;
            feed(&mut train_sums, &c.cols, &c.fares, train, &refs, false, &mut totals);
            feed(&mut hold_sums, &c.cols, &c.fares, hold, &refs, true, &mut totals);
            Ok(())
        }, profile.then(Profiler::default));
        drop(tx);
        let hash = hasher.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        let (counts, profile) = fed?;
        result.counts = counts;
        result.profile = profile.unwrap_or_default();
        result.rows = result.counts.raw;
        hash.map_err(KernelError::from)
    })?;
    result.lineage_hash = hash;
    if refs.production.is_some() {
        result.production = Some(totals.production);
        result.holdout_production = Some(totals.production_errors);
    }
    if refs.frozen.is_some() {
        result.frozen = Some(totals.frozen);
    }
    let scored = |model: &mut Model| -> Result<Option<Vec<f64>>, KernelError> {
        give(model, &train_sums)?;
        let errors = if model.n_rows() > 0.0 { Some(totals.kept.abs_errors(model.coefficients()?)) } else { None };
        give(model, &hold_sums)?;
        Ok(errors)
    };
    result.holdout_challenger = scored(challenger)?;
    for h in &mut horizons {
        let errors = scored(h)?;
        result.holdout_horizons.push(errors);
    }
    let mut ledger = Ledger::new(challenger.feature_set);
    for (month, stats) in train_sums.iter().chain(&hold_sums) {
        ledger.add(*month, stats)?;
    }
    result.ledger = Some(ledger);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Month;
    use crate::generator::MonthRides;
    use crate::kernel::model::Settings;

    fn rows(months: &[&str], n: u64) -> Vec<Result<RecordBatch, ArrowError>> {
        months.iter().flat_map(|m| MonthRides::new(5, Month::parse(m).unwrap(), n, 1000, false)).collect()
    }

    fn ok(batches: &[RecordBatch]) -> Vec<Result<RecordBatch, ArrowError>> {
        batches.iter().cloned().map(Ok).collect()
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * a.abs().max(b.abs()).max(1.0)
    }

    /// The pass gives what the separate calls of the old lifecycle gave: the same challenger as
    /// one fit of `[w, t)`, the same scores as `evaluate`, the same hash as `hash_rows`.
    fn same_as_separate_calls(settings: Settings) {
        let mut production = Model::new(settings).unwrap();
        production.partial_fit(rows(&["2012-01", "2012-02"], 3000)).unwrap();
        let mut frozen = Model::new(settings).unwrap();
        frozen.partial_fit(rows(&["2012-01"], 3000)).unwrap();
        let new: Vec<RecordBatch> = rows(&["2012-03", "2012-04"], 6000).into_iter().map(Result::unwrap).collect();
        let n: u64 = new.iter().map(|b| b.num_rows() as u64).sum();
        let h = n - n * 15 / 100;

        let mut challenger = production.clone();
        let mut p = production.clone();
        let mut fz = frozen.clone();
        let r = lifecycle_pass(
            ok(&new),
            h,
            PassModels { challenger: &mut challenger, production: Some(&mut p), frozen: Some(&mut fz), horizons: Vec::new() },
        )
        .unwrap();

        assert_eq!(r.rows, n);
        let mut one = production.clone();
        let counts = one.partial_fit(ok(&new)).unwrap();
        assert_eq!(r.counts, counts);
        assert_eq!(r.train_kept + r.holdout_kept, counts.kept);
        assert_eq!(r.profile.months.len(), 2);
        assert_eq!(r.profile.months.values().map(|p| p.raw).sum::<u64>(), n);
        assert_eq!(r.profile.months.values().map(|p| p.kept).sum::<u64>(), counts.kept);
        let (a, b) = (challenger.coefficients().unwrap().clone(), one.coefficients().unwrap().clone());
        for (x, y) in a.beta.iter().zip(&b.beta) {
            assert!(close(*x, *y, 1e-7), "{x} vs {y}");
        }
        assert!(close(challenger.n_rows(), one.n_rows(), 1e-12));
        let ev = production.clone().evaluate(ok(&new), false).unwrap();
        assert!(close(r.production.unwrap().mae(), ev.metrics.mae(), 1e-12));
        assert_eq!(r.production.unwrap().n, ev.metrics.n);
        let fev = frozen.clone().evaluate(ok(&new), false).unwrap();
        assert!(close(r.frozen.unwrap().rmse(), fev.metrics.rmse(), 1e-12));
        assert_eq!(r.lineage_hash, lineage::hash_rows(ok(&new)).unwrap());

        // The holdout: the challenger trained on [w, h) only, scored row by row.
        let mut head = production.clone();
        let skip_rows = |from: u64, to: u64| -> Vec<Result<RecordBatch, ArrowError>> {
            let mut out = Vec::new();
            let mut at = 0u64;
            for b in &new {
                let (lo, hi) = (at, at + b.num_rows() as u64);
                let (s, e) = (from.max(lo), to.min(hi));
                if s < e {
                    out.push(Ok(b.slice((s - lo) as usize, (e - s) as usize)));
                }
                at = hi;
            }
            out
        };
        head.partial_fit(skip_rows(0, h)).unwrap();
        let hold_errors = r.holdout_challenger.unwrap();
        assert_eq!(hold_errors.len() as u64, r.holdout_kept);
        let reference = head.evaluate(skip_rows(h, n), true).unwrap();
        // The generated rows have no duplicate keys across the split, so the rows are the same.
        let errs = reference.abs_errors.unwrap();
        assert_eq!(errs.len(), hold_errors.len());
        for (x, y) in errs.iter().zip(&hold_errors) {
            assert!(close(*x, *y, 1e-7), "{x} vs {y}");
        }
        let prod_errs = production.clone().evaluate(skip_rows(h, n), true).unwrap().abs_errors.unwrap();
        for (x, y) in prod_errs.iter().zip(r.holdout_production.as_ref().unwrap()) {
            assert!(close(*x, *y, 1e-12), "{x} vs {y}");
        }
    }

    #[test]
    fn one_pass_equals_the_separate_calls() {
        same_as_separate_calls(Settings::default());
    }

    #[test]
    fn one_pass_equals_the_separate_calls_with_forgetting() {
        same_as_separate_calls(Settings { ridge_alpha: 1e-3, half_life_months: 2.0 });
    }

    #[test]
    fn a_first_lifecycle_has_no_reference_and_an_empty_head() {
        let mut challenger = Model::new(Settings::default()).unwrap();
        let new = rows(&["2010-01"], 2000);
        let r = lifecycle_pass(new, 1700, PassModels { challenger: &mut challenger, production: None, frozen: None, horizons: Vec::new() }).unwrap();
        assert!(r.production.is_none() && r.holdout_production.is_none() && r.frozen.is_none());
        assert!(r.holdout_challenger.as_ref().is_some_and(|e| e.len() as u64 == r.holdout_kept && !e.is_empty()));
        assert!(close(challenger.n_rows(), r.counts.kept as f64, 0.0));
        // Nothing before the holdout: the challenger cannot be scored.
        let mut empty = Model::new(Settings::default()).unwrap();
        let r = lifecycle_pass(rows(&["2010-01"], 100), 0, PassModels { challenger: &mut empty, production: None, frozen: None, horizons: Vec::new() }).unwrap();
        assert!(r.holdout_challenger.is_none());
        assert_eq!(r.train_kept, 0);
    }

    #[test]
    fn a_failing_stream_is_an_error_and_the_hasher_stops() {
        let mut challenger = Model::new(Settings::default()).unwrap();
        let mut new = rows(&["2010-01"], 500);
        new.push(Err(ArrowError::ComputeError("disk gone".into())));
        let err = lifecycle_pass(new, 400, PassModels { challenger: &mut challenger, production: None, frozen: None, horizons: Vec::new() }).unwrap_err();
        assert!(err.to_string().contains("disk gone"), "{err}");
    }

    /// A horizon is treated as the challenger is: a copy of the challenger given as a horizon
    /// ends equal to it with the same holdout errors, an empty one learns `[w, t)` only; the
    /// pass's ledger is the ledger of the rows, rebuilt from them.
    #[test]
    fn horizons_are_scored_like_the_challenger_and_the_ledger_is_the_rows() {
        use crate::kernel::ledger::Weighting;
        let new: Vec<RecordBatch> = rows(&["2012-03", "2012-04"], 4000).into_iter().map(Result::unwrap).collect();
        let mut base = Model::new(Settings::default()).unwrap();
        base.partial_fit(rows(&["2012-01"], 3000)).unwrap();
        let (mut challenger, mut same) = (base.clone(), base.clone());
        let mut fresh = Model::new(Settings::default()).unwrap();
        let horizons = vec![&mut same, &mut fresh];
        let r = lifecycle_pass(ok(&new), 6000, PassModels { challenger: &mut challenger, production: None, frozen: None, horizons }).unwrap();
        assert_eq!(r.holdout_horizons.len(), 2);
        assert_eq!(r.holdout_horizons[0], r.holdout_challenger);
        assert_eq!(same.stats(), challenger.stats());
        let (rebuilt, counts) = Ledger::of_rows(FeatureSet::DEFAULT, ok(&new)).unwrap();
        assert_eq!(counts, r.counts);
        let ledger = r.ledger.unwrap();
        assert_eq!(ledger.months().count(), 2);
        assert_eq!(ledger.mismatch(&rebuilt, 1e-9), None);
        let only_new = rebuilt.compose(Settings::default().ridge_alpha, Weighting::HalfLife(f64::INFINITY), None).unwrap();
        let (a, b) = (fresh.coefficients().unwrap().clone(), only_new.clone().coefficients().unwrap().clone());
        for (x, y) in a.beta.iter().zip(&b.beta) {
            assert!(close(*x, *y, 1e-9), "{x} vs {y}");
        }
        let errors = r.holdout_horizons[1].as_ref().unwrap();
        assert_eq!(errors.len() as u64, r.holdout_kept);
        assert_ne!(Some(errors), r.holdout_challenger.as_ref());
        // A horizon of another feature version is refused.
        let mut v1 = Model::with_features(Settings::default(), FeatureSet::V1).unwrap();
        let mut c = base.clone();
        let err = lifecycle_pass(ok(&new), 6000, PassModels { challenger: &mut c, production: None, frozen: None, horizons: vec![&mut v1] });
        assert!(err.unwrap_err().to_string().contains("feature version 1"));
    }
}
