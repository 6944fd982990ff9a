//! The feature versions a model can be trained with, and the one place that dispatches on
//! them: every kernel path asks the model's [`FeatureSet`] for its width, names and a
//! row featurizer, so a model keeps predicting with the columns it learnt whatever the
//! newest version is.

use super::columns::RideColumns;
use super::features;
use super::KernelError;

/// A feature version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FeatureSet {
    /// The original 80 columns (`features.rs`).
    V1,
}

impl FeatureSet {
    /// Every version this build can train, predict with and load, oldest first.
    pub const ALL: [Self; 1] = [Self::V1];

    /// The version new models get unless asked for another. Stays 1 until the lifecycle
    /// switches lineages over (a v2 lineage cannot continue v1 statistics).
    pub const DEFAULT: Self = Self::V1;

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
        }
    }

    /// Number of features (the intercept is not one of them).
    #[must_use]
    pub const fn p(self) -> usize {
        match self {
            Self::V1 => features::N_FEATURES,
        }
    }

    /// Feature names, in column order.
    #[must_use]
    pub fn names(self) -> Vec<String> {
        match self {
            Self::V1 => features::names(),
        }
    }

    /// A featurizer for this version (one per thread: it caches time-zone rules).
    #[must_use]
    pub fn featurizer(self) -> RowFeaturizer {
        match self {
            Self::V1 => RowFeaturizer::V1(features::Featurizer::new()),
        }
    }
}

/// Writes one row's features of a given version into caller-owned buffers.
pub enum RowFeaturizer {
    /// Version 1.
    V1(features::Featurizer),
}

impl RowFeaturizer {
    /// Writes the features of row `i` of `c` into `out` (length `p()` of its set). The row
    /// must have passed cleaning.
    #[inline]
    pub fn write(&mut self, c: &RideColumns, i: usize, out: &mut [f64]) {
        match self {
            Self::V1(f) => f.write(c, i, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_round_trip_and_unknown_ones_fail() {
        for s in FeatureSet::ALL {
            assert_eq!(FeatureSet::from_version(s.version()).unwrap(), s);
            assert_eq!(s.names().len(), s.p());
        }
        assert_eq!(FeatureSet::DEFAULT.version(), 1);
        assert!(FeatureSet::from_version(0).is_err());
        assert!(FeatureSet::from_version(99).unwrap_err().to_string().contains("99"));
    }
}
