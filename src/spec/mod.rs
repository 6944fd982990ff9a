//! The feature spec: each feature version stated once, as data, for two back ends.
//!
//! A spec is a list of named values (`lets`) and a list of slots: a slot is one column, or a
//! one-hot group of columns of which at most one is non-zero on a row (an index and a value).
//! The SQL back end (`crate::warehouse`) compiles the spec to BigQuery SQL; the Rust kernel's
//! featurizers (`kernel::features`, `kernel::features_v2`) are the spec computed fast, with
//! tables and caches, and a test holds them to the spec's own evaluation bit for bit on every
//! row of months around the calendar's and the fare rules' edges.

pub mod expr;
mod v1;
mod v2;
mod v3;

pub use v3::CORRECTION_CELL;

use std::collections::HashMap;

use crate::calendar::NyClock;
use crate::kernel::feature_set::FeatureSet;
use expr::{Env, Expr, Input, RideInputs};

/// Columns of a feature version.
#[derive(Clone, Debug, PartialEq)]
pub enum Slot {
    /// One column.
    Column {
        /// Its name.
        name: String,
        /// Its value.
        value: Expr,
    },
    /// `names.len()` columns, at most one non-zero: `value` in column `index` (none when the
    /// index is negative).
    OneHot {
        /// Names of the columns.
        names: Vec<String>,
        /// Which column, 0-based within the group; negative for none.
        index: Expr,
        /// The value put there.
        value: Expr,
    },
}

impl Slot {
    /// Number of columns.
    #[must_use]
    pub fn width(&self) -> usize {
        match self {
            Self::Column { .. } => 1,
            Self::OneHot { names, .. } => names.len(),
        }
    }
}

/// A feature version as data.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// The version it states.
    pub set: FeatureSet,
    /// Named values in dependency order (a value refers only to earlier ones).
    pub lets: Vec<(String, Expr)>,
    /// The columns, in order.
    pub slots: Vec<Slot>,
}

impl Spec {
    /// The spec of a feature version.
    #[must_use]
    pub fn of(set: FeatureSet) -> Self {
        match set {
            FeatureSet::V1 => v1::spec(),
            FeatureSet::V2 => v2::spec(),
            // Version 3's columns are version 2's (its penalty and correction are not
            // columns); its lets add the correction's cell.
            FeatureSet::V3 => v3::spec(),
        }
    }

    /// Number of columns.
    #[must_use]
    pub fn p(&self) -> usize {
        self.slots.iter().map(Slot::width).sum()
    }

    /// Column names in order.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.slots
            .iter()
            .flat_map(|s| match s {
                Slot::Column { name, .. } => vec![name.clone()],
                Slot::OneHot { names, .. } => names.clone(),
            })
            .collect()
    }

    /// The first column of each slot.
    #[must_use]
    pub fn offsets(&self) -> Vec<usize> {
        self.slots
            .iter()
            .scan(0, |at, s| {
                let here = *at;
                *at += s.width();
                Some(here)
            })
            .collect()
    }

    /// The value of the named value `name` on one cleaned ride (`None` for a name the spec
    /// does not define).
    pub fn eval_let(&self, ride: &RideInputs, clock: &mut NyClock, name: &str) -> Option<f64> {
        let mut env = RowEnv { ride, clock, named: HashMap::with_capacity(self.lets.len()) };
        for (n, e) in &self.lets {
            let v = e.eval(&mut env);
            env.named.insert(n.clone(), v);
        }
        env.named.get(name).copied()
    }

    /// Evaluates the spec on one cleaned ride into `out` (length [`Spec::p`]): the reference
    /// the kernel's featurizers are tested against.
    pub fn eval(&self, ride: &RideInputs, clock: &mut NyClock, out: &mut [f64]) {
        let mut env = RowEnv { ride, clock, named: HashMap::with_capacity(self.lets.len()) };
        for (name, e) in &self.lets {
            let v = e.eval(&mut env);
            env.named.insert(name.clone(), v);
        }
        out.fill(0.0);
        for (slot, at) in self.slots.iter().zip(self.offsets()) {
            match slot {
                Slot::Column { value, .. } => out[at] = value.eval(&mut env),
                Slot::OneHot { names, index, value } => {
                    let i = index.eval(&mut env);
                    if i >= 0.0 && (i as usize) < names.len() {
                        out[at + i as usize] = value.eval(&mut env);
                    }
                }
            }
        }
    }
}

struct RowEnv<'a> {
    ride: &'a RideInputs,
    clock: &'a mut NyClock,
    named: HashMap<String, f64>,
}

impl Env for RowEnv<'_> {
    fn input(&mut self, i: Input) -> f64 {
        self.ride.get(i, self.clock)
    }
    fn named(&self, name: &str) -> f64 {
        // A spec refers only to names defined before (checked by a test of every spec).
        self.named.get(name).copied().unwrap_or(f64::NAN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Month;
    use crate::generator::MonthRides;
    use crate::kernel::cleaning::{Cleaner, CleaningCounts};
    use crate::kernel::columns::RideColumns;

    #[test]
    fn names_and_widths_are_the_kernels() {
        for set in FeatureSet::ALL {
            let spec = Spec::of(set);
            assert_eq!(spec.names(), set.names(), "{set:?}");
            assert_eq!(spec.p(), set.p());
        }
    }

    #[test]
    fn every_name_is_defined_before_use() {
        for set in FeatureSet::ALL {
            let spec = Spec::of(set);
            let mut defined = std::collections::HashSet::new();
            for (name, e) in &spec.lets {
                let mut refs = Vec::new();
                e.refs(&mut refs);
                assert!(refs.iter().all(|r| defined.contains(r)), "{name} uses {refs:?}");
                assert!(defined.insert(name.clone()), "{name} twice");
            }
            for slot in &spec.slots {
                let mut refs = Vec::new();
                match slot {
                    Slot::Column { value, .. } => value.refs(&mut refs),
                    Slot::OneHot { index, value, .. } => {
                        index.refs(&mut refs);
                        value.refs(&mut refs);
                    }
                }
                assert!(refs.iter().all(|r| defined.contains(r)), "{refs:?}");
            }
        }
    }

    /// The kernel's featurizers are the spec, bit for bit, on every clean row of months
    /// around both DST changes, the MTA tax, the tunnel tolls, the 2012 fare change and a new
    /// year; the rows in time order (the featurizers' caches hit) and then in reverse (they
    /// miss). The spec is the test oracle of the featurizers: there is no other.
    #[test]
    fn the_kernel_computes_the_spec() {
        let mut rows = 0;
        for set in FeatureSet::ALL {
            let spec = Spec::of(set);
            let mut clock = NyClock::default();
            for m in ["2009-03", "2009-11", "2010-12", "2012-09", "2012-11", "2013-12", "2014-01", "2015-03"] {
                for batch in MonthRides::new(9, Month::parse(m).unwrap(), 6000, 3000, true) {
                    let batch = batch.unwrap();
                    let cols = RideColumns::from_batch(&batch, true).unwrap();
                    let mut kept = Vec::new();
                    Cleaner::for_training().clean(&cols, &mut CleaningCounts::default(), &mut kept);
                    let mut feat = set.featurizer();
                    let (mut got, mut want) = (vec![f64::NAN; set.p()], vec![f64::NAN; set.p()]);
                    for &i in kept.iter().chain(kept.iter().rev()) {
                        feat.write(&cols, i, &mut got);
                        let ride = RideInputs {
                            pickup: (cols.plat.value(i), cols.plon.value(i)),
                            dropoff: (cols.dlat.value(i), cols.dlon.value(i)),
                            passengers: cols.passengers.value(i),
                            ts: cols.ts[i],
                        };
                        spec.eval(&ride, &mut clock, &mut want);
                        for j in 0..set.p() {
                            assert_eq!(got[j].to_bits(), want[j].to_bits(), "{set:?} {m} row {i} column {}", set.names()[j]);
                        }
                        if set.has_correction() && i % 7 == 0 {
                            let cell = crate::kernel::features_v3::cell(&got) as f64;
                            assert_eq!(spec.eval_let(&ride, &mut clock, CORRECTION_CELL), Some(cell), "{m} row {i}");
                        }
                        rows += 1;
                    }
                }
            }
        }
        assert!(rows > 100_000, "{rows}");
    }
}
