//! The one cleaning function, applied identically in training, evaluation and prediction
//! (prediction skips only the fare rule and de-duplication, which need a label and a slice).

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use arrow::array::Array;

use super::columns::{RideColumns, NO_TIME};
use crate::fnv::fnv1a;
use crate::geo::{self, Point};

/// Fares at or above this are dropped (training and evaluation).
pub const MAX_FARE: f64 = 400.0;
/// Passenger counts kept.
pub const PASSENGERS: std::ops::RangeInclusive<i64> = 1..=7;

/// Why a row was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A null in a needed column, or a pickup time that does not parse.
    Missing,
    /// All four coordinates are zero.
    ZeroCoordinates,
    /// Fare ≤ 0 or ≥ 400.
    FareOutOfRange,
    /// Passenger count outside 1..=7.
    PassengerCount,
    /// Pickup or dropoff outside the NYC box.
    OutsideNyc,
    /// A key already seen in this slice.
    DuplicateKey,
}

impl Reason {
    /// Why row `i` of `c` was dropped, in words a client can act on (`passenger_count 0`,
    /// `pickup outside New York`): the prediction API's 422 and the pyfunc's reason column.
    #[must_use]
    pub fn explain(self, c: &RideColumns, i: usize) -> String {
        match self {
            Self::Missing => {
                let floats = [("pickup_longitude", &c.plon), ("pickup_latitude", &c.plat), ("dropoff_longitude", &c.dlon), ("dropoff_latitude", &c.dlat)];
                if c.ts[i] == NO_TIME {
                    "pickup_datetime missing or not YYYY-MM-DD HH:MM:SS".into()
                } else if c.passengers.is_null(i) {
                    "passenger_count missing".into()
                } else if let Some((name, _)) = floats.iter().find(|(_, a)| a.is_null(i) || !a.value(i).is_finite()) {
                    format!("{name} missing or not a number")
                } else {
                    "fare_amount missing".into()
                }
            }
            Self::ZeroCoordinates => "all four coordinates are zero".into(),
            Self::FareOutOfRange => format!("fare_amount outside (0, {MAX_FARE})"),
            Self::PassengerCount => format!("passenger_count {} (1 to 7 accepted)", c.passengers.value(i)),
            Self::OutsideNyc => {
                let pickup = Point { lat: c.plat.value(i), lon: c.plon.value(i) };
                if geo::in_nyc(pickup) { "dropoff outside New York".into() } else { "pickup outside New York".into() }
            }
            Self::DuplicateKey => "key already seen".into(),
        }
    }
}

/// Rows consumed and dropped, per reason (first failing rule wins).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleaningCounts {
    /// Raw rows seen.
    pub raw: u64,
    /// Rows kept.
    pub kept: u64,
    /// Dropped: missing or unparseable values.
    pub missing: u64,
    /// Dropped: all-zero coordinates.
    pub zero_coordinates: u64,
    /// Dropped: fare out of range.
    pub fare_out_of_range: u64,
    /// Dropped: passenger count.
    pub passenger_count: u64,
    /// Dropped: outside NYC.
    pub outside_nyc: u64,
    /// Dropped: duplicate key.
    pub duplicate_key: u64,
}

impl CleaningCounts {
    /// Counts a row dropped for `r`.
    pub(crate) fn count(&mut self, r: Reason) {
        match r {
            Reason::Missing => self.missing += 1,
            Reason::ZeroCoordinates => self.zero_coordinates += 1,
            Reason::FareOutOfRange => self.fare_out_of_range += 1,
            Reason::PassengerCount => self.passenger_count += 1,
            Reason::OutsideNyc => self.outside_nyc += 1,
            Reason::DuplicateKey => self.duplicate_key += 1,
        }
    }

    /// The counts as `(name, value)` pairs, for logging.
    #[must_use]
    pub fn pairs(&self) -> [(&'static str, u64); 8] {
        [
            ("raw", self.raw),
            ("kept", self.kept),
            ("missing", self.missing),
            ("zero_coordinates", self.zero_coordinates),
            ("fare_out_of_range", self.fare_out_of_range),
            ("passenger_count", self.passenger_count),
            ("outside_nyc", self.outside_nyc),
            ("duplicate_key", self.duplicate_key),
        ]
    }
}

/// A multiplicative hash for keys already hashed to 64 bits.
#[derive(Default)]
struct Identity(u64);
impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {}
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

fn hash_key(b: &[u8]) -> u64 {
    // FNV-1a then a final mix: collisions among 10^7 keys are ~10^-5 likely.
    let h = fnv1a(b);
    h ^ (h >> 29)
}

/// Cleaning state over one slice (the keys seen so far).
pub struct Cleaner {
    check_fare: bool,
    seen: Option<HashSet<u64, BuildHasherDefault<Identity>>>,
}

impl Cleaner {
    /// For training and evaluation: every rule.
    #[must_use]
    pub fn for_training() -> Self {
        Self { check_fare: true, seen: Some(HashSet::default()) }
    }

    /// For prediction: no fare rule, no de-duplication.
    #[must_use]
    pub fn for_prediction() -> Self {
        Self { check_fare: false, seen: None }
    }

    /// Whether row `i` is kept, and if not why.
    pub fn check(&mut self, c: &RideColumns, i: usize) -> Result<(), Reason> {
        let nulls = c.plon.is_null(i) || c.plat.is_null(i) || c.dlon.is_null(i) || c.dlat.is_null(i) || c.passengers.is_null(i);
        let fare = c.fare.as_ref().map(|f| if f.is_null(i) { f64::NAN } else { f.value(i) });
        if nulls || c.ts[i] == NO_TIME || (self.check_fare && fare.is_none_or(f64::is_nan)) {
            return Err(Reason::Missing);
        }
        let p = Point { lat: c.plat.value(i), lon: c.plon.value(i) };
        let d = Point { lat: c.dlat.value(i), lon: c.dlon.value(i) };
        if [p.lat, p.lon, d.lat, d.lon].iter().any(|v| !v.is_finite()) {
            return Err(Reason::Missing);
        }
        if p.lat == 0.0 && p.lon == 0.0 && d.lat == 0.0 && d.lon == 0.0 {
            return Err(Reason::ZeroCoordinates);
        }
        if self.check_fare {
            let f = fare.unwrap_or(f64::NAN);
            if !(f > 0.0 && f < MAX_FARE) {
                return Err(Reason::FareOutOfRange);
            }
        }
        if !PASSENGERS.contains(&c.passengers.value(i)) {
            return Err(Reason::PassengerCount);
        }
        if !geo::in_nyc(p) || !geo::in_nyc(d) {
            return Err(Reason::OutsideNyc);
        }
        if let (Some(seen), Some(keys)) = (self.seen.as_mut(), c.key.as_ref()) {
            if !keys.is_null(i) && !seen.insert(hash_key(keys.value(i).as_bytes())) {
                return Err(Reason::DuplicateKey);
            }
        }
        Ok(())
    }

    /// Appends the kept row indices of a batch to `kept` and counts every row.
    pub fn clean(&mut self, c: &RideColumns, counts: &mut CleaningCounts, kept: &mut Vec<usize>) {
        for i in 0..c.len {
            counts.raw += 1;
            match self.check(c, i) {
                Ok(()) => {
                    counts.kept += 1;
                    kept.push(i);
                }
                Err(r) => counts.count(r),
            }
        }
    }
}
