//! The taxi-fare model: sufficient statistics over features of cleaned rides, optional
//! exponential forgetting in months of ride time, lazily solved coefficients.

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use ndarray::{s, Array2, ArrayView1, ArrayView2};

use super::cleaning::{Cleaner, CleaningCounts};
use super::columns::RideColumns;
use super::feature_set::FeatureSet;
use super::metrics::Metrics;
use super::parallel::on_cores;
use super::features_v3::CellStats;
use super::stats::{Coefficients, SparseRows, Stats};
use super::KernelError;
use crate::calendar::month_index_of;

/// Kernel settings, recorded with every model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// Ridge penalty on standardised coefficients (0 = ordinary least squares).
    pub ridge_alpha: f64,
    /// Half-life of a row's weight in months of ride time; infinite = no forgetting (exact).
    pub half_life_months: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self { ridge_alpha: 1e-3, half_life_months: f64::INFINITY }
    }
}

impl Settings {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), KernelError> {
        if !(self.ridge_alpha >= 0.0 && self.ridge_alpha.is_finite()) {
            return Err(KernelError::Invalid(format!("ridge_alpha must be a finite number ≥ 0, got {}", self.ridge_alpha)));
        }
        if !(self.half_life_months > 0.0) {
            return Err(KernelError::Invalid(format!("half_life_months must be > 0 (inf for none), got {}", self.half_life_months)));
        }
        Ok(())
    }
}

/// Scores of a model on labelled rows.
#[derive(Clone, Debug, Default)]
pub struct Evaluation {
    /// Cleaning of the rows scored.
    pub counts: CleaningCounts,
    /// MAE, RMSE, R².
    pub metrics: Metrics,
    /// Per-row absolute errors, in row order, when asked for.
    pub abs_errors: Option<Vec<f64>>,
}

/// The model.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// Its settings.
    pub settings: Settings,
    /// The feature version it is trained with (recorded in its bytes).
    pub feature_set: FeatureSet,
    pub(crate) stats: Stats,
    /// Newest month (since 2009-01) of the rows added.
    pub last_month: Option<i32>,
    pub(crate) coef: Option<Coefficients>,
}

/// Featurises and accumulates the kept rows of one batch on every core.
fn accumulate_parallel(set: FeatureSet, cols: &RideColumns, fares: &arrow::array::Float64Array, kept: &[usize]) -> Vec<SparseRows> {
    on_cores(kept, |rows| {
        let mut feat = set.featurizer();
        let mut acc = SparseRows::for_set(set);
        let mut f = vec![0.0; set.p()];
        for &i in rows {
            feat.write(cols, i, &mut f);
            acc.add(&f, fares.value(i));
        }
        acc
    })
}

/// Predictions for the kept rows of one batch, computed on every core, in row order.
fn predict_parallel(set: FeatureSet, c: &Coefficients, cols: &RideColumns, kept: &[usize]) -> Vec<f64> {
    on_cores(kept, |rows| {
        let mut feat = set.featurizer();
        let mut f = vec![0.0; set.p()];
        rows.iter()
            .map(|&i| {
                feat.write(cols, i, &mut f);
                Model::dot(c, &f)
            })
            .collect::<Vec<f64>>()
    })
    .concat()
}

/// Runs `each` on every batch of a raw stream with the rows that pass cleaning (one cleaning
/// state across the stream), counting every row; decoding and cleaning run on other threads
/// than `each` (`pipeline`).
fn for_each_cleaned<I>(
    batches: I,
    counts: &mut CleaningCounts,
    mut each: impl FnMut(&RideColumns, &arrow::array::Float64Array, &[usize]) -> Result<(), KernelError> + Send,
) -> Result<(), KernelError>
where
    I: IntoIterator<Item = Result<RecordBatch, ArrowError>>,
{
    *counts = super::pipeline::cleaned(batches, |c| each(&c.cols, &c.fares, &c.kept))?;
    Ok(())
}

impl Model {
    /// An empty model of the default feature version ([`FeatureSet::DEFAULT`]).
    pub fn new(settings: Settings) -> Result<Self, KernelError> {
        Self::with_features(settings, FeatureSet::DEFAULT)
    }

    /// An empty model of feature version `features`.
    pub fn with_features(settings: Settings, features: FeatureSet) -> Result<Self, KernelError> {
        settings.validate()?;
        Ok(Self { settings, feature_set: features, stats: Stats::new(features.p()), last_month: None, coef: None })
    }

    /// The feature version number recorded with the model.
    #[must_use]
    pub fn feature_version(&self) -> u16 {
        self.feature_set.version()
    }

    /// Total weight of the rows learnt (their number without forgetting).
    #[must_use]
    pub fn n_rows(&self) -> f64 {
        self.stats.n()
    }

    pub(crate) fn forgetting(&self) -> bool {
        self.settings.half_life_months.is_finite()
    }

    /// Moves the model's clock to month `m`, decaying older weights.
    pub(crate) fn advance_to(&mut self, m: i32) {
        match self.last_month {
            Some(last) if m > last => {
                if self.forgetting() {
                    self.stats.scale(0.5_f64.powf(f64::from(m - last) / self.settings.half_life_months));
                    self.coef = None;
                }
                self.last_month = Some(m);
            }
            None => self.last_month = Some(m),
            _ => {}
        }
    }

    /// Adds statistics summed elsewhere (in a warehouse) of rows of ride month `month`, as
    /// if they had been added row by row: the clock moves to `month` first.
    pub fn add_stats(&mut self, month: i32, stats: &Stats) -> Result<(), KernelError> {
        self.feature_set.check_stats(stats, "a model")?;
        self.advance_to(month);
        self.stats.merge(stats);
        self.coef = None;
        Ok(())
    }

    /// The sufficient statistics learnt so far.
    #[must_use]
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Adds what an accumulator summed (and empties it).
    pub(crate) fn absorb(&mut self, acc: &mut SparseRows) {
        self.stats.absorb(acc);
        self.coef = None;
    }

    /// Runs `add` on the clean rows `rows` of a batch in runs within which no weight decays,
    /// the model's clock moved to each run's month first: the one statement of the
    /// forgetting rule (rows of an older month are added before the weights decay for a newer
    /// one; a run's rows can be summed in any order, so the cores share them). Without
    /// forgetting the batch is one run.
    pub(crate) fn in_runs(&mut self, cols: &RideColumns, rows: &[usize], mut add: impl FnMut(&mut Self, &[usize])) {
        let mut start = 0;
        while start < rows.len() {
            let end = if self.forgetting() {
                self.advance_to(month_index_of(cols.ts[rows[start]]));
                let last = self.last_month;
                rows[start..].iter().position(|&i| Some(month_index_of(cols.ts[i])) > last).map_or(rows.len(), |p| start + p)
            } else {
                if let Some(m) = rows.iter().map(|&i| month_index_of(cols.ts[i])).max() {
                    self.advance_to(m);
                }
                rows.len()
            };
            add(self, &rows[start..end]);
            start = end;
        }
    }

    /// Adds the rows of a stream of raw batches (one cleaning state across the stream, so
    /// duplicates are found across batches). Returns the cleaning counts.
    pub fn partial_fit<I>(&mut self, batches: I) -> Result<CleaningCounts, KernelError>
    where
        I: IntoIterator<Item = Result<RecordBatch, ArrowError>>,
    {
        let set = self.feature_set;
        let mut counts = CleaningCounts::default();
        for_each_cleaned(batches, &mut counts, |cols, fares, kept| {
            self.in_runs(cols, kept, |model, run| {
                for mut part in accumulate_parallel(set, cols, fares, run) {
                    model.absorb(&mut part);
                }
            });
            Ok(())
        })?;
        Ok(counts)
    }

    /// Adds rows of precomputed features (`x`: n × p of the model's feature version) and
    /// labels, as of ride month `month` when given (for forgetting).
    pub fn partial_fit_features(&mut self, x: ArrayView2<f64>, y: ArrayView1<f64>, month: Option<i32>) -> Result<(), KernelError> {
        let p = self.feature_set.p();
        if x.ncols() != p || x.nrows() != y.len() {
            return Err(KernelError::Incompatible(format!(
                "features of version {} must be n × {p} with n labels, got {} × {} and {} labels",
                self.feature_version(),
                x.nrows(),
                x.ncols(),
                y.len()
            )));
        }
        if let Some(m) = month {
            self.advance_to(m);
        }
        let mut a = Array2::ones((x.nrows(), p + 1));
        a.slice_mut(s![.., 1..]).assign(&x);
        self.stats.add(a.view(), y);
        if self.feature_set.has_correction() {
            let cells = self.stats.cells.get_or_insert_with(|| CellStats::new(p));
            let mut f = vec![0.0; p];
            for (row, &label) in x.rows().into_iter().zip(y) {
                for (to, from) in f.iter_mut().zip(row) {
                    *to = *from;
                }
                cells.add_row(&f, label);
            }
        }
        self.coef = None;
        Ok(())
    }

    /// Adds the statistics of another model trained on disjoint rows.
    pub fn merge(&mut self, other: &Self) -> Result<(), KernelError> {
        if other.feature_set != self.feature_set || other.settings != self.settings {
            return Err(KernelError::Incompatible("models differ in feature version or settings".into()));
        }
        let mut other = other.clone();
        match (self.last_month, other.last_month) {
            (Some(a), Some(b)) if a < b => self.advance_to(b),
            (Some(a), Some(b)) if b < a => other.advance_to(a),
            (None, Some(b)) => self.last_month = Some(b),
            _ => {}
        }
        self.stats.merge(&other.stats);
        self.coef = None;
        Ok(())
    }

    /// The coefficients, solving the normal equations if rows were added since.
    pub fn coefficients(&mut self) -> Result<&Coefficients, KernelError> {
        if self.coef.is_none() {
            self.coef = Some(self.stats.solve_for(self.feature_set, self.settings.ridge_alpha).ok_or(KernelError::NotFitted)?);
        }
        self.coef.as_ref().ok_or(KernelError::NotFitted)
    }

    /// The prediction of coefficients `c` for a row of features `f` ([`Coefficients::predict`]).
    #[inline]
    pub(crate) fn dot(c: &Coefficients, f: &[f64]) -> f64 {
        c.predict(f)
    }

    /// Predicted fares for the raw rows of a batch; NaN for rows cleaning rejects.
    pub fn predict(&mut self, batch: &RecordBatch) -> Result<Vec<f64>, KernelError> {
        Ok(self.predict_explained(batch)?.0)
    }

    /// Predicted fares and, per row, why cleaning rejected it (`None` where it was kept, and
    /// then the fare is finite; NaN where rejected).
    pub fn predict_explained(&mut self, batch: &RecordBatch) -> Result<(Vec<f64>, Vec<Option<String>>), KernelError> {
        let c = self.coefficients()?.clone();
        let cols = RideColumns::from_batch(batch, false)?;
        let mut cleaner = Cleaner::for_prediction();
        let mut feat = self.feature_set.featurizer();
        let mut f = vec![0.0; self.feature_set.p()];
        Ok((0..cols.len)
            .map(|i| match cleaner.check(&cols, i) {
                Err(reason) => (f64::NAN, Some(reason.explain(&cols, i))),
                Ok(()) => {
                    feat.write(&cols, i, &mut f);
                    (Self::dot(&c, &f), None)
                }
            })
            .unzip())
    }

    /// Predicted fares for the raw rows of a stream of batches, in order; NaN for rows
    /// cleaning rejects.
    pub fn predict_stream<I>(&mut self, batches: I) -> Result<Vec<f64>, KernelError>
    where
        I: IntoIterator<Item = Result<RecordBatch, ArrowError>>,
    {
        let mut out = Vec::new();
        for batch in batches {
            out.extend(self.predict(&batch?)?);
        }
        Ok(out)
    }

    /// Predictions on precomputed features.
    pub fn predict_features(&mut self, x: ArrayView2<f64>) -> Result<Vec<f64>, KernelError> {
        let p = self.feature_set.p();
        if x.ncols() != p {
            return Err(KernelError::Incompatible(format!("features of version {} must have {p} columns, got {}", self.feature_version(), x.ncols())));
        }
        let c = self.coefficients()?.clone();
        let mut f = vec![0.0; p];
        Ok(x.rows()
            .into_iter()
            .map(|r| {
                for (to, from) in f.iter_mut().zip(r) {
                    *to = *from;
                }
                c.predict(&f)
            })
            .collect())
    }

    /// Scores the model on labelled raw rows, cleaned as for training.
    pub fn evaluate<I>(&mut self, batches: I, keep_errors: bool) -> Result<Evaluation, KernelError>
    where
        I: IntoIterator<Item = Result<RecordBatch, ArrowError>>,
    {
        let c = self.coefficients()?.clone();
        let set = self.feature_set;
        let mut ev = Evaluation { abs_errors: keep_errors.then(Vec::new), ..Default::default() };
        let mut counts = CleaningCounts::default();
        for_each_cleaned(batches, &mut counts, |cols, fares, kept| {
            for (&i, p) in kept.iter().zip(predict_parallel(set, &c, cols, kept)) {
                let y = fares.value(i);
                ev.metrics.add(y, p);
                if let Some(e) = ev.abs_errors.as_mut() {
                    e.push((p - y).abs());
                }
            }
            Ok(())
        })?;
        ev.counts = counts;
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Month;
    use crate::generator::MonthRides;

    fn month(m: &str, rows: u64) -> Vec<Result<RecordBatch, ArrowError>> {
        MonthRides::new(9, Month::parse(m).unwrap(), rows, 1000, false).collect()
    }

    fn mae(model: &mut Model, m: &str) -> f64 {
        model.evaluate(month(m, 4000), false).unwrap().metrics.mae()
    }

    #[test]
    fn learns_fares_and_counts_cleaning() {
        let mut model = Model::new(Settings::default()).unwrap();
        let counts = model.partial_fit(month("2011-03", 20_000)).unwrap();
        assert_eq!(counts.raw, 20_000);
        assert!(counts.kept > 19_000 && counts.kept < 20_000, "{counts:?}");
        assert!(counts.zero_coordinates > 200 && counts.zero_coordinates < 600, "{counts:?}");
        assert_eq!(counts.raw, counts.pairs()[1..].iter().map(|(_, v)| v).sum::<u64>());
        let e = mae(&mut model, "2011-04");
        assert!(e < 2.5, "MAE {e}");
    }

    #[test]
    fn incremental_fit_equals_one_fit() {
        let mut inc = Model::new(Settings::default()).unwrap();
        inc.partial_fit(month("2010-01", 3000)).unwrap();
        inc.partial_fit(month("2010-02", 3000)).unwrap();
        let mut one = Model::new(Settings::default()).unwrap();
        one.partial_fit(month("2010-01", 3000).into_iter().chain(month("2010-02", 3000))).unwrap();
        let (ci, co) = (inc.coefficients().unwrap().clone(), one.coefficients().unwrap().clone());
        for (x, y) in ci.beta.iter().zip(&co.beta) {
            assert!((x - y).abs() <= 1e-9 * y.abs().max(1.0), "{x} vs {y}");
        }
    }

    #[test]
    fn forgetting_decays_old_months() {
        let settings = Settings { ridge_alpha: 1e-6, half_life_months: 2.0 };
        let mut m = Model::new(settings).unwrap();
        m.partial_fit(month("2012-01", 1000)).unwrap();
        let n1 = m.n_rows();
        m.partial_fit(month("2012-03", 1000)).unwrap();
        // Two months later the first month weighs half.
        assert!((m.n_rows() - (n1 * 0.5 + n1)).abs() < 30.0, "{} vs {}", m.n_rows(), n1 * 1.5);
        assert_eq!(m.last_month, Some(Month::parse("2012-03").unwrap().index()));
    }

    #[test]
    fn errors_are_typed() {
        let mut m = Model::new(Settings::default()).unwrap();
        assert!(matches!(m.coefficients(), Err(KernelError::NotFitted)));
        assert!(Model::new(Settings { ridge_alpha: -1.0, half_life_months: 1.0 }).is_err());
        let batch = month("2010-01", 10).remove(0).unwrap();
        let no_lat = batch.project(&[0, 1, 2, 3, 5, 6, 7]).unwrap();
        let err = m.partial_fit(vec![Ok(no_lat)]).unwrap_err();
        assert!(err.to_string().contains("pickup_latitude"), "{err}");
    }

    #[test]
    fn prediction_tells_why_a_ride_is_rejected() {
        use arrow::array::{Float64Array, Int64Array, StringArray};
        use std::sync::Arc;

        let mut model = Model::new(Settings::default()).unwrap();
        model.partial_fit(month("2011-03", 5_000)).unwrap();
        let f = |v: [f64; 5]| Arc::new(Float64Array::from(v.to_vec())) as arrow::array::ArrayRef;
        let batch = RecordBatch::try_from_iter([
            ("pickup_datetime", Arc::new(StringArray::from(vec!["2013-07-06 21:18:00 UTC", "2013-07-06 21:18:00", "2013-07-06 21:18:00", "2013-07-06 21:18:00", "tomorrow"])) as _),
            ("pickup_longitude", f([-73.95, -73.95, 2.35, -73.95, -73.95])),
            ("pickup_latitude", f([40.78, 40.78, 48.85, 40.78, 40.78])),
            ("dropoff_longitude", f([-73.98, -73.98, -73.98, 2.35, -73.98])),
            ("dropoff_latitude", f([40.77, 40.77, 40.77, 48.85, 40.77])),
            ("passenger_count", Arc::new(Int64Array::from(vec![1, 0, 1, 1, 1])) as _),
        ])
        .unwrap();
        let (fares, reasons) = model.predict_explained(&batch).unwrap();
        assert!(fares[0].is_finite() && fares[0] > 2.0, "{fares:?}");
        assert!(fares[1..].iter().all(|f| f.is_nan()), "{fares:?}");
        let reasons: Vec<_> = reasons.iter().map(|r| r.as_deref()).collect();
        assert_eq!(reasons, [
            None,
            Some("passenger_count 0 (1 to 7 accepted)"),
            Some("pickup outside New York"),
            Some("dropoff outside New York"),
            Some("pickup_datetime missing or not YYYY-MM-DD HH:MM:SS"),
        ]);
    }
}
