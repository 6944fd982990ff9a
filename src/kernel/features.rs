//! Feature set version 1: when, where and how far a ride goes, plus the terms a linear model
//! needs to express the TLC fare rules.
//!
//! Why each group is there (measured by `benches/quality.py`):
//! - distances (haversine, true Manhattan) carry the metered part;
//! - `dist×peak`, `dist×night` let the per-mile cost follow traffic (time units in slow traffic);
//! - `post_2012_09` and `dist×post_2012_09` are the known fare regime: intercept and per-mile
//!   slope move at 2012-09-04 without waiting for months of new data to outweigh old ones;
//! - `jfk_manhattan` (and its `×dist`, `×post`) let the flat fare cancel the metered slope;
//! - airport proximity, `ewr×post`, night/peak and `mta_era` are the surcharges;
//! - hour sin/cos, weekday and month one-hots, all in New York time (the surcharges follow the
//!   local clock, daylight saving included), a year trend and the busiest geohash cells carry
//!   demand and traffic.

use super::columns::RideColumns;
use std::sync::OnceLock;

use crate::calendar::{LocalTime, MonthIndexCache, NyClock, DAY};
use crate::fare_rules::{is_night, is_peak, MTA_TAX_START, RATE_CHANGE};
use crate::geo::{self, Point};

/// Version of the feature set; a model records the version it was trained with.
pub const FEATURE_VERSION: u16 = 1;

/// `passengers` is the passenger count over this (a scale, not a limit: cleaning keeps up to 7).
pub const PASSENGER_SCALE: f64 = 6.0;
/// `year` is the month index (since 2009-01) over this: six years of months.
pub const YEAR_SCALE_MONTHS: f64 = 72.0;

/// The 20 busiest Manhattan/Brooklyn geohash-5 cells of the original package.
pub const GEOHASHES: [&str; 20] = [
    "dr5ru", "dr5rs", "dr5rv", "dr72h", "dr72j", "dr5re", "dr5rk", "dr5rz", "dr5ry", "dr5rt", "dr5rg", "dr5x1", "dr5x0",
    "dr72m", "dr5rm", "dr5rx", "dr5x2", "dr5rw", "dr5rh", "dr5x8",
];

const WEEKDAYS: [&str; 6] = ["tue", "wed", "thu", "fri", "sat", "sun"];
const MONTHS: [&str; 11] = ["feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const AIRPORT_NAMES: [&str; 3] = ["jfk", "lga", "ewr"];

/// Number of features (the intercept is not one of them).
pub const N_FEATURES: usize = 1 + 2 + 6 + 11 + 1 + 2 + 2 * GEOHASHES.len() + 6 + 11;

/// Feature names, in column order.
#[must_use]
pub fn names() -> Vec<String> {
    let mut v: Vec<String> = vec!["passengers".into(), "hour_sin".into(), "hour_cos".into()];
    v.extend(WEEKDAYS.iter().map(|d| format!("weekday_{d}")));
    v.extend(MONTHS.iter().map(|m| format!("month_{m}")));
    v.extend(["year".into(), "haversine_km".into(), "manhattan_km".into()]);
    for end in ["pickup", "dropoff"] {
        v.extend(GEOHASHES.iter().map(|g| format!("{end}_{g}")));
    }
    for end in ["pickup", "dropoff"] {
        v.extend(AIRPORT_NAMES.iter().map(|a| format!("{end}_{a}")));
    }
    v.extend(
        [
            "night", "peak", "post_2012_09", "dist_x_post_2012_09", "mta_era", "jfk_manhattan", "jfk_manhattan_x_post",
            "jfk_manhattan_x_dist", "ewr_x_post", "dist_x_peak", "dist_x_night",
        ]
        .map(String::from),
    );
    v
}

/// Computes features row by row into caller-owned buffers (no allocation per row).
pub struct Featurizer {
    clock: NyClock,
    months: MonthIndexCache,
    cells: [u32; 20],
    hours: &'static [(f64, f64)],
}

/// `(sin, cos)` of the hour angle of every second of the day, computed once per process
/// (1.4 MB): the same values as computing them per row, without two transcendental calls.
fn hour_angles() -> &'static [(f64, f64)] {
    static TABLE: OnceLock<Box<[(f64, f64)]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..DAY)
            .map(|s| {
                let angle = s as f64 / 3600.0 / 24.0 * std::f64::consts::TAU;
                (angle.sin(), angle.cos())
            })
            .collect()
    })
}

impl Default for Featurizer {
    fn default() -> Self {
        Self::new()
    }
}

fn one_hot(out: &mut [f64], i: Option<usize>) {
    out.fill(0.0);
    if let Some(i) = i {
        out[i] = 1.0;
    }
}

impl Featurizer {
    /// A featurizer with its own time-zone cache.
    #[must_use]
    pub fn new() -> Self {
        Self {
            clock: NyClock::default(),
            months: MonthIndexCache::default(),
            cells: GEOHASHES.map(|g| geo::geohash5_code(g).unwrap_or(u32::MAX)),
            hours: hour_angles(),
        }
    }

    /// Writes the features of row `i` of `c` into `out` (length [`N_FEATURES`]). The row must
    /// have passed cleaning.
    pub fn write(&mut self, c: &RideColumns, i: usize, out: &mut [f64]) {
        let ts = c.ts[i];
        let p = Point { lat: c.plat.value(i), lon: c.plon.value(i) };
        let d = Point { lat: c.dlat.value(i), lon: c.dlon.value(i) };
        let local: LocalTime = self.clock.local(ts);
        let dist = geo::haversine_km(p, d);
        let post = f64::from(u8::from(ts >= RATE_CHANGE));
        let night = f64::from(u8::from(is_night(&local)));
        let peak = f64::from(u8::from(is_peak(&local)));
        // second_of_day is in 0..DAY by construction (rem_euclid).
        let (hour_sin, hour_cos) = self.hours[local.second_of_day as usize];
        let near = |q: Point| geo::AIRPORTS.map(|a| geo::near(q, a));
        let (np, nd) = (near(p), near(d));
        let jfk_manhattan = f64::from(u8::from((np[0] && geo::in_manhattan(d)) || (nd[0] && geo::in_manhattan(p))));
        let ewr = f64::from(u8::from(np[2] || nd[2]));

        out[0] = c.passengers.value(i) as f64 / PASSENGER_SCALE;
        out[1] = hour_sin;
        out[2] = hour_cos;
        one_hot(&mut out[3..9], (local.weekday > 0).then(|| local.weekday as usize - 1));
        one_hot(&mut out[9..20], (local.month > 1).then(|| local.month as usize - 2));
        out[20] = f64::from(self.months.of(ts)) / YEAR_SCALE_MONTHS;
        out[21] = dist;
        out[22] = geo::manhattan_km(p, d);
        let cell = |q: Point| {
            let code = geo::geohash5(q);
            self.cells.iter().position(|&c| c == code)
        };
        let (cp, cd) = (cell(p), cell(d));
        one_hot(&mut out[23..43], cp);
        one_hot(&mut out[43..63], cd);
        for (j, v) in np.iter().chain(nd.iter()).enumerate() {
            out[63 + j] = f64::from(u8::from(*v));
        }
        let tail = [
            night,
            peak,
            post,
            dist * post,
            f64::from(u8::from(ts >= MTA_TAX_START)),
            jfk_manhattan,
            jfk_manhattan * post,
            jfk_manhattan * dist,
            ewr * post,
            dist * peak,
            dist * night,
        ];
        out[69..80].copy_from_slice(&tail);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::calendar::timestamp;
    use crate::schema;
    use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;

    /// One ride at `dt` from `p` to `d` (lat, lon), fare 10, 3 passengers: the feature tests
    /// of every version build their rows with it.
    pub(crate) fn ride(dt: &str, p: (f64, f64), d: (f64, f64)) -> RecordBatch {
        RecordBatch::try_new(
            schema::ride_schema(),
            vec![
                Arc::new(StringArray::from(vec!["k"])),
                Arc::new(Float64Array::from(vec![10.0])),
                Arc::new(StringArray::from(vec![dt])),
                Arc::new(Float64Array::from(vec![p.1])),
                Arc::new(Float64Array::from(vec![p.0])),
                Arc::new(Float64Array::from(vec![d.1])),
                Arc::new(Float64Array::from(vec![d.0])),
                Arc::new(Int64Array::from(vec![3])),
            ],
        )
        .unwrap()
    }

    fn one(dt: &str, p: (f64, f64), d: (f64, f64)) -> Vec<f64> {
        let batch = ride(dt, p, d);
        let cols = RideColumns::from_batch(&batch, true).unwrap();
        let mut out = vec![f64::NAN; N_FEATURES];
        Featurizer::new().write(&cols, 0, &mut out);
        out
    }

    fn get(f: &[f64], name: &str) -> f64 {
        f[names().iter().position(|n| n == name).unwrap()]
    }

    const TIMES_SQ: (f64, f64) = (40.758, -73.9855);
    const JFK: (f64, f64) = (40.6413, -73.7781);
    const LGA: (f64, f64) = (40.7769, -73.8740);

    #[test]
    fn names_match_width() {
        assert_eq!(names().len(), N_FEATURES);
        assert_eq!(N_FEATURES, 80);
    }

    #[test]
    fn jfk_ride_after_the_change() {
        // Monday 2012-10-15 17:30 local (21:30 UTC): peak, post-change, JFK flat fare.
        let f = one("2012-10-15 21:30:00 UTC", TIMES_SQ, JFK);
        assert!(f.iter().all(|v| v.is_finite()));
        assert_eq!(get(&f, "passengers"), 0.5);
        assert_eq!(get(&f, "peak"), 1.0);
        assert_eq!(get(&f, "night"), 0.0);
        assert_eq!(get(&f, "post_2012_09"), 1.0);
        assert_eq!(get(&f, "jfk_manhattan"), 1.0);
        assert_eq!(get(&f, "dropoff_jfk"), 1.0);
        assert_eq!(get(&f, "pickup_dr5ru"), 1.0, "Times Square is dr5ru");
        assert_eq!(get(&f, "month_oct"), 1.0);
        assert_eq!(get(&f, "weekday_tue"), 0.0, "Monday is the reference");
        let h = 17.5 / 24.0 * std::f64::consts::TAU;
        assert!((get(&f, "hour_sin") - h.sin()).abs() < 1e-12);
        assert!((get(&f, "haversine_km") - 21.6).abs() < 0.3, "{}", get(&f, "haversine_km"));
        assert!((get(&f, "jfk_manhattan_x_dist") - get(&f, "haversine_km")).abs() < 1e-12);
        assert_eq!(get(&f, "year"), 45.0 / 72.0);
    }

    #[test]
    fn lga_night_ride_before_the_change() {
        // Saturday 2011-01-01 01:00 local (06:00 UTC, winter time).
        let f = one("2011-01-01 06:00:00 UTC", LGA, TIMES_SQ);
        assert_eq!(get(&f, "pickup_lga"), 1.0);
        assert_eq!(get(&f, "night"), 1.0);
        assert_eq!(get(&f, "peak"), 0.0);
        assert_eq!(get(&f, "post_2012_09"), 0.0);
        assert_eq!(get(&f, "jfk_manhattan"), 0.0);
        assert_eq!(get(&f, "weekday_sat"), 1.0);
        assert!((get(&f, "hour_cos") - (1.0 / 24.0 * std::f64::consts::TAU).cos()).abs() < 1e-12);
    }

    #[test]
    fn dst_change_day_uses_local_time() {
        // 2013-03-10: clocks jump 02:00 → 03:00. 06:30 UTC is 01:30 EST, 07:30 UTC is 03:30 EDT.
        let before = one("2013-03-10 06:30:00 UTC", TIMES_SQ, TIMES_SQ);
        let after = one("2013-03-10 07:30:00 UTC", TIMES_SQ, TIMES_SQ);
        let angle = |h: f64| (h / 24.0 * std::f64::consts::TAU).sin();
        assert!((get(&before, "hour_sin") - angle(1.5)).abs() < 1e-12);
        assert!((get(&after, "hour_sin") - angle(3.5)).abs() < 1e-12);
        assert_eq!(get(&after, "weekday_sun"), 1.0);
        // One hour of UTC apart, two hours of local time: a fixed UTC-5 offset would say 02:30.
        assert_eq!(timestamp(2013, 3, 10, 7, 30, 0) - timestamp(2013, 3, 10, 6, 30, 0), 3600);
        assert!((get(&after, "hour_sin") - angle(2.5)).abs() > 0.1);
    }
}
