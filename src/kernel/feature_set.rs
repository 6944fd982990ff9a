//! The feature versions a model can be trained with, and the one place that dispatches on
//! them: every kernel path asks the model's [`FeatureSet`] for its width, names and a
//! row featurizer, so a model keeps predicting with the columns it learnt whatever the
//! newest version is.

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use ndarray::{Array1, Array2};

use super::cleaning::{Cleaner, CleaningCounts};
use super::columns::RideColumns;
use super::stats::Stats;
use super::{features, features_v2, features_v3};
use super::KernelError;

/// A feature version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FeatureSet {
    /// The original 80 columns (`features.rs`).
    V1,
    /// 192 columns: v1 with a whole-year index, plus the fare-rule terms (`features_v2.rs`).
    V2,
    /// Version 2's columns, solved with an absolute ridge penalty, plus a median correction
    /// per distance band × zone group cell (`features_v3.rs`).
    V3,
}

impl FeatureSet {
    /// Every version this build can train, predict with and load, oldest first.
    pub const ALL: [Self; 3] = [Self::V1, Self::V2, Self::V3];

    /// The version new models get unless asked for another, and the one a new lineage starts
    /// with (the `FEATURE_VERSION` setting's default): the one place that says so. Python
    /// reads it as `_core.DEFAULT_FEATURE_VERSION`. An existing lineage keeps its version
    /// until a backfill moves it (a v2 lineage cannot continue v1 statistics).
    pub const DEFAULT: Self = Self::V3;

    /// The set of a recorded version number.
    pub fn from_version(version: u16) -> Result<Self, KernelError> {
        Self::ALL.into_iter().find(|s| s.version() == version).ok_or_else(|| {
            let known: Vec<u16> = Self::ALL.iter().map(|s| s.version()).collect();
            KernelError::Invalid(format!("feature version {version} is unknown to this build (it has {known:?})"))
        })
    }

    /// The version number recorded with a model.
    #[must_use]
    pub const fn version(self) -> u16 {
        match self {
            Self::V1 => features::FEATURE_VERSION,
            Self::V2 => features_v2::FEATURE_VERSION,
            Self::V3 => features_v3::FEATURE_VERSION,
        }
    }

    /// Number of features (the intercept is not one of them).
    #[must_use]
    pub const fn p(self) -> usize {
        match self {
            Self::V1 => features::N_FEATURES,
            Self::V2 => features_v2::N_FEATURES,
            Self::V3 => features_v3::N_FEATURES,
        }
    }

    /// Feature names, in column order.
    #[must_use]
    pub fn names(self) -> Vec<String> {
        match self {
            Self::V1 => features::names(),
            Self::V2 => features_v2::names(),
            Self::V3 => features_v3::names(),
        }
    }

    /// A featurizer for this version (one per thread: it caches time-zone rules).
    #[must_use]
    pub fn featurizer(self) -> RowFeaturizer {
        match self {
            Self::V1 => RowFeaturizer::V1(features::Featurizer::new()),
            // Version 3's rows are version 2's: its cell is read back from them.
            Self::V2 | Self::V3 => RowFeaturizer::V2(features_v2::FeaturizerV2::new()),
        }
    }

    /// Whether the version adds a median correction per cell to the ridge (its statistics
    /// then carry [`features_v3::CellStats`]).
    #[must_use]
    pub const fn has_correction(self) -> bool {
        matches!(self, Self::V3)
    }

    /// The absolute ridge penalty `λ_j` of each column, for a version that has one.
    #[must_use]
    pub fn penalties(self) -> Option<Vec<f64>> {
        match self {
            Self::V1 | Self::V2 => None,
            Self::V3 => Some(features_v3::penalties()),
        }
    }

    /// Checks that statistics are of this version's shape: its number of features, and the
    /// median correction's statistics exactly when the version has them (statistics of no
    /// row may lack them).
    pub fn check_stats(self, stats: &Stats, what: &str) -> Result<(), KernelError> {
        let shape = |cells: bool| format!("{} features{}", stats.p(), if cells { " with correction statistics" } else { "" });
        let ok = stats.p() == self.p()
            && match (&stats.cells, self.has_correction()) {
                (Some(cells), true) => cells.p() == self.p(),
                (Some(_), false) => false,
                (None, has) => !has || stats.n() == 0.0,
            };
        if ok {
            return Ok(());
        }
        Err(KernelError::Incompatible(format!(
            "statistics of {} for {what} of feature version {} ({} features{})",
            shape(stats.cells.is_some()),
            self.version(),
            self.p(),
            if self.has_correction() { " with correction statistics" } else { "" }
        )))
    }
}

/// Writes one row's features of a given version into caller-owned buffers.
pub enum RowFeaturizer {
    /// Version 1.
    V1(features::Featurizer),
    /// Version 2.
    V2(features_v2::FeaturizerV2),
}

impl RowFeaturizer {
    /// Writes the features of row `i` of `c` into `out` (length `p()` of its set). The row
    /// must have passed cleaning.
    #[inline]
    pub fn write(&mut self, c: &RideColumns, i: usize, out: &mut [f64]) {
        match self {
            Self::V1(f) => f.write(c, i, out),
            Self::V2(f) => f.write(c, i, out),
        }
    }
}

/// Features of version `set` of the rows of a batch that pass training cleaning, with their
/// labels.
pub fn features_of(batch: &RecordBatch, set: FeatureSet) -> Result<(Array2<f64>, Array1<f64>, CleaningCounts), KernelError> {
    let cols = RideColumns::from_batch(batch, true)?;
    let mut counts = CleaningCounts::default();
    let mut kept = Vec::new();
    Cleaner::for_training().clean(&cols, &mut counts, &mut kept);
    let mut x = Array2::zeros((kept.len(), set.p()));
    let mut feat = set.featurizer();
    let fares = cols.fare.as_ref().ok_or_else(|| KernelError::Schema { column: "fare_amount".into(), reason: "missing".into() })?;
    let mut y = Array1::zeros(kept.len());
    for (r, &i) in kept.iter().enumerate() {
        let mut row = x.row_mut(r);
        if let Some(row) = row.as_slice_mut() {
            feat.write(&cols, i, row);
        }
        y[r] = if fares.is_null(i) { f64::NAN } else { fares.value(i) };
    }
    Ok((x, y, counts))
}

/// [`features_of`] the rows of several batches of one schema, as one batch.
pub fn features_of_batches(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    set: FeatureSet,
) -> Result<(Array2<f64>, Array1<f64>, CleaningCounts), KernelError> {
    features_of(&arrow::compute::concat_batches(schema, batches)?, set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Month;
    use crate::generator::MonthRides;
    use crate::kernel::codec;
    use crate::kernel::model::{Model, Settings};
    use crate::kernel::pass::{lifecycle_pass, PassModels};
    use arrow::array::RecordBatch;
    use arrow::error::ArrowError;

    fn month(m: &str, rows: u64) -> Vec<Result<RecordBatch, ArrowError>> {
        MonthRides::new(3, Month::parse(m).unwrap(), rows, 1000, false).collect()
    }

    fn v2() -> Model {
        Model::with_features(Settings::default(), FeatureSet::V2).unwrap()
    }

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol * x.abs().max(y.abs()).max(1.0), "{x} vs {y}");
        }
    }

    #[test]
    fn v2_incremental_fit_equals_one_fit_and_its_bytes_round_trip() {
        let mut inc = v2();
        inc.partial_fit(month("2012-08", 3000)).unwrap();
        inc.partial_fit(month("2012-09", 3000)).unwrap();
        let mut one = v2();
        one.partial_fit(month("2012-08", 3000).into_iter().chain(month("2012-09", 3000))).unwrap();
        close(&inc.coefficients().unwrap().beta, &one.coefficients().unwrap().beta, 1e-9);
        assert_eq!(inc.coefficients().unwrap().beta.len(), 192);
        // The dense path on the features of the same rows gives the same model.
        let mut dense = v2();
        for m in ["2012-08", "2012-09"] {
            for b in month(m, 3000) {
                let (x, y, _) = features_of(&b.unwrap(), FeatureSet::V2).unwrap();
                dense.partial_fit_features(x.view(), y.view(), None).unwrap();
            }
        }
        close(&dense.coefficients().unwrap().beta, &one.coefficients().unwrap().beta, 1e-9);
        let loaded = codec::from_bytes(&codec::to_bytes(&inc)).unwrap();
        assert_eq!(loaded.feature_set, FeatureSet::V2);
        assert_eq!(loaded, inc);
        let batch = month("2012-10", 500).remove(0).unwrap();
        let bits = |v: Vec<f64>| v.into_iter().map(f64::to_bits).collect::<Vec<_>>();
        assert_eq!(bits(loaded.clone().predict(&batch).unwrap()), bits(inc.predict(&batch).unwrap()));
    }

    #[test]
    fn versions_do_not_mix() {
        let mut a = Model::with_features(Settings::default(), FeatureSet::V1).unwrap();
        a.partial_fit(month("2011-01", 500)).unwrap();
        let mut b = v2();
        b.partial_fit(month("2011-02", 500)).unwrap();
        assert!(matches!(a.merge(&b), Err(KernelError::Incompatible(_))));
        assert!(matches!(b.merge(&a), Err(KernelError::Incompatible(_))));
        let (x1, y1, _) = features_of(&month("2011-03", 50).remove(0).unwrap(), FeatureSet::V1).unwrap();
        assert!(matches!(b.partial_fit_features(x1.view(), y1.view(), None), Err(KernelError::Incompatible(_))));
        assert!(matches!(b.predict_features(x1.view()), Err(KernelError::Incompatible(_))));
    }

    /// A v2 challenger with v1 production and frozen models: each model is scored on its own
    /// version's features, and the challenger ends as one v2 fit of the rows.
    #[test]
    fn the_pass_scores_each_model_with_its_version() {
        let mut production = Model::with_features(Settings::default(), FeatureSet::V1).unwrap();
        production.partial_fit(month("2012-07", 3000)).unwrap();
        let mut head = v2();
        head.partial_fit(month("2012-07", 3000)).unwrap();
        let new: Vec<RecordBatch> = month("2012-08", 4000).into_iter().map(Result::unwrap).collect();
        let mut challenger = head.clone();
        let (mut p, mut f) = (production.clone(), production.clone());
        let r = lifecycle_pass(
            new.iter().cloned().map(Ok),
            3400,
            PassModels { challenger: &mut challenger, production: Some(&mut p), frozen: Some(&mut f), horizons: Vec::new() },
        )
        .unwrap();
        let ev = production.evaluate(new.iter().cloned().map(Ok), false).unwrap();
        assert!((r.production.unwrap().mae() - ev.metrics.mae()).abs() < 1e-12);
        assert!((r.frozen.unwrap().mae() - ev.metrics.mae()).abs() < 1e-12);
        assert_eq!(challenger.feature_set, FeatureSet::V2);
        let mut one = head.clone();
        one.partial_fit(new.iter().cloned().map(Ok)).unwrap();
        close(&challenger.coefficients().unwrap().beta, &one.coefficients().unwrap().beta, 1e-7);
        assert_eq!(r.holdout_challenger.unwrap().len() as u64, r.holdout_kept);
    }

    #[test]
    fn versions_round_trip_and_unknown_ones_fail() {
        for s in FeatureSet::ALL {
            assert_eq!(FeatureSet::from_version(s.version()).unwrap(), s);
            assert_eq!(s.names().len(), s.p());
        }
        assert_eq!(FeatureSet::DEFAULT, FeatureSet::V3);
        assert_eq!(FeatureSet::V2.p(), 192);
        assert!(FeatureSet::from_version(0).is_err());
        assert!(FeatureSet::from_version(99).unwrap_err().to_string().contains("99"));
    }
}
