//! History scenarios: changes of the fares that no feature knows. They live here, not in
//! [`crate::fare_rules`], because the features read the fare rules: a change written there
//! would be announced to the model. A scenario maps a ride's fare (and its expected fare, the
//! same affine map, so the noise-floor sidecar stays the floor) after the ride is drawn; it
//! draws no random number, so a scenario's history holds the same rides as the plain one,
//! only their fares differ. `docs/scenarios.md` documents the dates.

use super::trips::Ride;
use crate::geo;

/// 2010-01-01 00:00 New York time: the gradual drift of the `unannounced` scenario starts.
pub const DRIFT_START: i64 = 1_262_322_000;
/// 2011-01-01 00:00 New York time: the drift has reached [`DRIFT_FACTOR`] and stays there.
pub const DRIFT_END: i64 = 1_293_858_000;
/// Factor on every fare at the end of the drift (+6 % over 2010).
pub const DRIFT_FACTOR: f64 = 1.06;
/// 2014-01-01 00:00 New York time: the unannounced fare change.
pub const FARE_CHANGE: i64 = 1_388_552_400;
/// Factor of the 2014 fare change.
pub const FARE_CHANGE_FACTOR: f64 = 1.10;
/// Dollars added by the 2014 fare change (after the factor).
pub const FARE_CHANGE_ADD: f64 = 2.00;
/// 2014-09-01 00:00 New York time: the new surcharge on rides starting or ending in Manhattan.
pub const SURCHARGE_START: i64 = 1_409_544_000;
/// Dollars of that surcharge.
pub const SURCHARGE: f64 = 2.50;

/// A history scenario.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scenario {
    /// The history as the fare rules say, nothing else.
    #[default]
    Plain,
    /// A gradual drift over 2010, a fare change at 2014-01-01, a surcharge from 2014-09-01.
    Unannounced,
}

/// One dated change of a scenario, for reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// When it starts, New York local date `YYYY-MM-DD`.
    pub start: &'static str,
    /// When it is complete (the same date for a step change).
    pub end: &'static str,
    /// What changes, in plain words.
    pub what: &'static str,
}

impl Scenario {
    /// Every scenario, the default first.
    pub const ALL: [Scenario; 2] = [Scenario::Plain, Scenario::Unannounced];

    /// The name of the `HISTORY_SCENARIO` setting.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Unannounced => "unannounced",
        }
    }

    /// The scenario called `name`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Its changes, oldest first.
    #[must_use]
    pub fn changes(self) -> Vec<Change> {
        match self {
            Self::Plain => Vec::new(),
            Self::Unannounced => vec![
                Change { start: "2010-01-01", end: "2011-01-01", what: "fares drift up linearly to +6 %" },
                Change { start: "2014-01-01", end: "2014-01-01", what: "fare change: +10 % and +$2.00" },
                Change { start: "2014-09-01", end: "2014-09-01", what: "surcharge: +$2.50 on rides to or from Manhattan" },
            ],
        }
    }

    /// The factor of the drift at `ts`: 1 before it, [`DRIFT_FACTOR`] after, linear between.
    fn drift(ts: i64) -> f64 {
        let t = ((ts - DRIFT_START) as f64 / (DRIFT_END - DRIFT_START) as f64).clamp(0.0, 1.0);
        1.0 + (DRIFT_FACTOR - 1.0) * t
    }

    /// `(factor, dollars)`: the scenario's fare of a ride is `factor × fare + dollars`.
    #[must_use]
    pub fn affine(self, ride: &Ride) -> (f64, f64) {
        match self {
            Self::Plain => (1.0, 0.0),
            Self::Unannounced => {
                let (mut factor, mut add) = (Self::drift(ride.ts), 0.0);
                if ride.ts >= FARE_CHANGE {
                    factor *= FARE_CHANGE_FACTOR;
                    add += FARE_CHANGE_ADD;
                }
                if ride.ts >= SURCHARGE_START && (geo::in_manhattan(ride.pickup) || geo::in_manhattan(ride.dropoff)) {
                    add += SURCHARGE;
                }
                (factor, add)
            }
        }
    }

    /// The ride with the scenario's fare (to the cent) and expected fare.
    #[must_use]
    pub fn apply(self, ride: Ride) -> Ride {
        if self == Self::Plain {
            return ride;
        }
        let (factor, add) = self.affine(&ride);
        Ride { fare: ((ride.fare * factor + add) * 100.0).round() / 100.0, expected_fare: ride.expected_fare * factor + add, ..ride }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::timestamp;

    /// The New York midnight of a date as a UTC instant (checks the constants above).
    fn ny_midnight(y: i32, m: u32, d: u32) -> i64 {
        let mut clock = crate::calendar::NyClock::default();
        let utc = timestamp(y, m, d, 0, 0, 0);
        utc - clock.offset(utc + 5 * 3600)
    }
    use crate::calendar::Month;
    use crate::generator::MonthRides;
    use arrow::array::{Array, Float64Array, StringArray};

    #[test]
    fn dates_are_new_york_midnights() {
        assert_eq!(DRIFT_START, ny_midnight(2010, 1, 1));
        assert_eq!(DRIFT_END, ny_midnight(2011, 1, 1));
        assert_eq!(FARE_CHANGE, ny_midnight(2014, 1, 1));
        assert_eq!(SURCHARGE_START, ny_midnight(2014, 9, 1));
        assert_eq!(SURCHARGE_START, timestamp(2014, 9, 1, 4, 0, 0));
        for s in Scenario::ALL {
            assert_eq!(Scenario::parse(s.name()), Some(s));
        }
        assert_eq!(Scenario::parse("nope"), None);
    }

    fn ride_at(ts: i64, manhattan: bool) -> Ride {
        let p = if manhattan { geo::Point { lat: 40.758, lon: -73.985 } } else { geo::JFK };
        Ride { ts, pickup: p, dropoff: if manhattan { p } else { geo::LGA }, passengers: 1, fare: 20.0, expected_fare: 19.5 }
    }

    #[test]
    fn changes_apply_exactly_and_only_after_their_dates() {
        let s = Scenario::Unannounced;
        let fare = |ts: i64, m: bool| s.apply(ride_at(ts, m)).fare;
        // Before the drift: untouched.
        assert_eq!(fare(DRIFT_START - 1, true), 20.0);
        // Half-way through the drift: +3 %; after it, +6 %.
        let mid = DRIFT_START + (DRIFT_END - DRIFT_START) / 2;
        assert!((fare(mid, false) - 20.6).abs() < 0.006, "{}", fare(mid, false));
        assert_eq!(fare(DRIFT_END, false), 21.2);
        assert_eq!(fare(FARE_CHANGE - 1, true), 21.2);
        // The fare change: ×1.10 and +$2.
        assert_eq!(fare(FARE_CHANGE, true), 25.32);
        assert!((s.apply(ride_at(FARE_CHANGE, true)).expected_fare - (19.5 * 1.06 * 1.1 + 2.0)).abs() < 1e-12);
        // The surcharge: only from its date, only on rides touching Manhattan.
        assert_eq!(fare(SURCHARGE_START - 1, true), 25.32);
        assert_eq!(fare(SURCHARGE_START, true), 27.82);
        assert_eq!(fare(SURCHARGE_START, false), 25.32);
        // The plain history is never touched.
        let r = ride_at(SURCHARGE_START, true);
        assert_eq!(Scenario::Plain.apply(r).fare, r.fare);
    }

    fn column(rides: MonthRides, name: &str) -> Vec<f64> {
        rides
            .flat_map(|b| {
                let b = b.unwrap();
                let a = b.column_by_name(name).unwrap().as_any().downcast_ref::<Float64Array>().unwrap().clone();
                (0..a.len()).map(move |i| if a.is_null(i) { f64::NAN } else { a.value(i) }).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn a_scenario_month_holds_the_same_rides_with_other_fares() {
        let m = Month::parse("2014-09").unwrap();
        let plain = MonthRides::new(7, m, 3000, 700, true);
        let keys = |r: MonthRides| -> Vec<String> {
            r.flat_map(|b| {
                let b = b.unwrap();
                let a = b.column_by_name("key").unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
                (0..a.len()).map(move |i| a.value(i).to_owned()).collect::<Vec<_>>()
            })
            .collect()
        };
        assert_eq!(keys(MonthRides::new(7, m, 3000, 700, true)), keys(MonthRides::new(7, m, 3000, 700, true).with_scenario(Scenario::Unannounced)));
        let (p, u) = (column(plain, "expected_fare"), column(MonthRides::new(7, m, 3000, 700, true).with_scenario(Scenario::Unannounced), "expected_fare"));
        for (a, b) in p.iter().zip(&u) {
            // Every September 2014 ride pays the 2014 change, plus $2.50 when it touches Manhattan.
            let d = b - (a * DRIFT_FACTOR * FARE_CHANGE_FACTOR + FARE_CHANGE_ADD);
            assert!(d.abs() < 1e-9 || (d - SURCHARGE).abs() < 1e-9, "{a} → {b}");
        }
        let plain_pickups = column(MonthRides::new(7, m, 3000, 700, true), "pickup_longitude");
        let scen_pickups = column(MonthRides::new(7, m, 3000, 700, true).with_scenario(Scenario::Unannounced), "pickup_longitude");
        assert_eq!(format!("{plain_pickups:?}"), format!("{scen_pickups:?}"));
    }

    #[test]
    fn the_noise_floor_follows_the_scenario() {
        let m = Month::parse("2014-02").unwrap();
        let mut plain = MonthRides::new(5, m, 4000, 1000, false);
        plain.by_ref().for_each(drop);
        let mut scen = MonthRides::new(5, m, 4000, 1000, false).with_scenario(Scenario::Unannounced);
        scen.by_ref().for_each(drop);
        assert_eq!(plain.summary.clean_rows, scen.summary.clean_rows);
        // fare − expected scales by the factor (up to the cent rounding of the fare).
        let factor = DRIFT_FACTOR * FARE_CHANGE_FACTOR;
        let (a, b) = (plain.summary.noise_floor_mae() * factor, scen.summary.noise_floor_mae());
        assert!((a - b).abs() < 0.01, "{a} vs {b}");
    }
}
