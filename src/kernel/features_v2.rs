//! Feature set version 2 (p = 192), ported from `benches/features_v2_proto.py`; the evidence
//! and the column-by-column spec are in `docs/features_v2_evidence.md`.
//!
//! v2 = v1's 80 columns with `year` (column 20, collinear with the month one-hots within 2009)
//! replaced by a whole-year `year_index`, then 112 columns that let the fare rules carry over
//! the 2012-09-04 change: per hour×weekend slopes on the *metered* distance (scaled by the
//! meter rate of the date, zero on the JFK flat fare), the same for airport rides, river
//! crossings and their toll, the JFK peak surcharge, zone pairs, the tariff amounts of the
//! date and zero-distance rides. Most of them are zero on a given row: accumulation stays
//! sparse (about 1.3× v1's work a row).

use super::columns::RideColumns;
use super::features::{self, Featurizer};
use crate::calendar::{month_index_of, NyClock};
use crate::fare_rules::{new_meter_share, tunnel_toll, JFK_FLAT_FARE, JFK_PEAK_SURCHARGE, METER_RATE_RISE, NEWARK_SURCHARGE, RATE_CHANGE, SATURDAY};
use crate::geo::{self, Point};

/// The version number recorded with v2 models.
pub const FEATURE_VERSION: u16 = 2;

/// Number of v2 features (the intercept is not one of them).
pub const N_FEATURES: usize = features::N_FEATURES + 2 * CELLS + 3 + 2 * PAIRS.len() + 3;

/// v1 columns that v2 reads back (checked against v1's names by a test).
pub(crate) const YEAR: usize = 20;
const DIST: usize = 21;
const PEAK: usize = 70;
const JFK_MANHATTAN: usize = 74;

/// Hour of day × (weekday, weekend).
const CELLS: usize = 48;
/// Unordered zone pairs but Manhattan–Manhattan (the reference), in column order.
pub const PAIRS: [&str; 5] = ["ma", "mo", "aa", "ao", "oo"];

/// First column of each group after v1's.
const DM_CELL: usize = features::N_FEATURES;
const AIRPORT_DM_CELL: usize = DM_CELL + CELLS;
const RIVER: usize = AIRPORT_DM_CELL + CELLS;
const PAIR: usize = RIVER + 3;
const DM_PAIR: usize = PAIR + PAIRS.len();
const JFK_FLAT: usize = DM_PAIR + PAIRS.len();

/// Rides shorter than this are pickups and dropoffs typed at the same point.
pub const ZERO_DIST_KM: f64 = 0.05;

/// Feature names, in column order.
#[must_use]
pub fn names() -> Vec<String> {
    let mut v = features::names();
    v[YEAR] = "year_index".into();
    for prefix in ["dm_x", "airport_dm_x"] {
        for day in ["wd", "we"] {
            v.extend((0..24).map(|h| format!("{prefix}_{day}_h{h:02}")));
        }
    }
    v.extend(["river_cross", "river_cross_x_toll", "jfk_manhattan_x_peak_x_post"].map(String::from));
    v.extend(PAIRS.iter().map(|z| format!("pair_{z}")));
    v.extend(PAIRS.iter().map(|z| format!("dm_x_pair_{z}")));
    v.extend(["jfk_flat_fare", "ewr_surcharge", "zero_dist"].map(String::from));
    v
}

/// The distance (haversine km) and the zone pair (index into [`PAIRS`], `None` for
/// Manhattan–Manhattan) of a row of v2 features, read back from its columns.
#[must_use]
pub fn dist_and_pair(f: &[f64]) -> (f64, Option<usize>) {
    let d = f.get(DIST).copied().unwrap_or(0.0);
    let pair = f.get(PAIR..PAIR + PAIRS.len()).and_then(|cols| cols.iter().position(|&v| v != 0.0));
    (d, pair)
}

/// Zone of a ride end: 0 Manhattan (the spine band), 1 within 2 km of an airport, 2 elsewhere.
fn zone(airport: bool, manhattan: bool) -> usize {
    if airport {
        1
    } else if manhattan {
        0
    } else {
        2
    }
}

/// Index into [`PAIRS`] of an unordered zone pair; `None` for Manhattan–Manhattan.
fn pair(a: usize, b: usize) -> Option<usize> {
    match (a.min(b), a.max(b)) {
        (0, 1) => Some(0),
        (0, 2) => Some(1),
        (1, 1) => Some(2),
        (1, 2) => Some(3),
        (2, 2) => Some(4),
        _ => None,
    }
}

fn indicator(b: bool) -> f64 {
    f64::from(u8::from(b))
}

/// Computes v2 features row by row into caller-owned buffers (no allocation per row).
pub struct FeaturizerV2 {
    v1: Featurizer,
    clock: NyClock,
}

impl Default for FeaturizerV2 {
    fn default() -> Self {
        Self::new()
    }
}

impl FeaturizerV2 {
    /// A featurizer with its own time-zone cache.
    #[must_use]
    pub fn new() -> Self {
        Self { v1: Featurizer::new(), clock: NyClock::default() }
    }

    /// Writes the v2 features of row `i` of `c` into `out` (length [`N_FEATURES`]). The row
    /// must have passed cleaning.
    pub fn write(&mut self, c: &RideColumns, i: usize, out: &mut [f64]) {
        let (v1, rest) = out.split_at_mut(features::N_FEATURES);
        self.v1.write(c, i, v1);
        let ts = c.ts[i];
        v1[YEAR] = f64::from(month_index_of(ts).div_euclid(12));
        let (d, peak, jfk) = (v1[DIST], v1[PEAK], v1[JFK_MANHATTAN]);

        let p = Point { lat: c.plat.value(i), lon: c.plon.value(i) };
        let q = Point { lat: c.dlat.value(i), lon: c.dlon.value(i) };
        let local = self.clock.local(ts);
        // Clamped only so that a corrupt clock cannot index out of the cells.
        let hour = usize::try_from(local.second_of_day / 3600).unwrap_or(0).min(23);
        let cell = 24 * usize::from(local.weekday >= SATURDAY) + hour;
        let post = ts >= RATE_CHANGE;
        // The distance the meter charges, in 2009 meter units: the rate rose 25 % over the
        // month after 2012-09-04, and the JFK flat fare has no per-km part.
        let dm = d * (1.0 + METER_RATE_RISE * new_meter_share(ts)) * (1.0 - jfk);
        let (np, nq) = (geo::AIRPORTS.map(|a| geo::near(p, a)), geo::AIRPORTS.map(|a| geo::near(q, a)));
        let (ap, aq) = (np.contains(&true), nq.contains(&true));
        let airport = (ap || aq) && jfk == 0.0;
        let ewr = np[2] || nq[2];
        let (mp, mq) = (geo::in_manhattan(p), geo::in_manhattan(q));
        let cross = indicator(mp != mq);

        // The buffer holds the previous row: zero the tail, then set its few non-zeros.
        rest.fill(0.0);
        let mut put = |col: usize, v: f64| rest[col - features::N_FEATURES] = v;
        put(DM_CELL + cell, dm);
        if airport {
            put(AIRPORT_DM_CELL + cell, dm);
        }
        put(RIVER, cross);
        put(RIVER + 1, cross * tunnel_toll(ts));
        put(RIVER + 2, jfk * peak * indicator(post));
        if let Some(k) = pair(zone(ap, mp), zone(aq, mq)) {
            put(PAIR + k, 1.0);
            put(DM_PAIR + k, dm);
        }
        put(JFK_FLAT, jfk * if post { JFK_FLAT_FARE.1 + JFK_PEAK_SURCHARGE * peak } else { JFK_FLAT_FARE.0 });
        put(JFK_FLAT + 1, indicator(ewr) * if post { NEWARK_SURCHARGE.1 } else { NEWARK_SURCHARGE.0 });
        put(JFK_FLAT + 2, indicator(d < ZERO_DIST_KM));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::features::tests::ride;

    fn one(dt: &str, p: (f64, f64), d: (f64, f64)) -> Vec<f64> {
        let batch = ride(dt, p, d);
        let cols = RideColumns::from_batch(&batch, true).unwrap();
        // A dirty buffer: every column must be written.
        let mut out = vec![f64::NAN; N_FEATURES];
        FeaturizerV2::new().write(&cols, 0, &mut out);
        assert!(out.iter().all(|v| v.is_finite()));
        out
    }

    fn get(f: &[f64], name: &str) -> f64 {
        f[names().iter().position(|n| n == name).unwrap_or_else(|| panic!("no column {name}"))]
    }

    /// The names of the non-zero columns after v1's, sorted.
    fn nonzero_tail(f: &[f64]) -> Vec<String> {
        let names = names();
        let mut v: Vec<String> = (features::N_FEATURES..N_FEATURES).filter(|&j| f[j] != 0.0).map(|j| names[j].clone()).collect();
        v.sort();
        v
    }

    const TIMES_SQ: (f64, f64) = (40.758, -73.9855);
    const JFK: (f64, f64) = (40.6413, -73.7781);
    const LGA: (f64, f64) = (40.7769, -73.8740);
    const EWR: (f64, f64) = (40.6895, -74.1745);
    /// Williamsburg, Brooklyn: across the East River, outside the Manhattan band.
    const WILLIAMSBURG: (f64, f64) = (40.7081, -73.9571);

    #[test]
    fn names_match_width_and_v1_columns_read_back() {
        let n = names();
        assert_eq!(n.len(), N_FEATURES);
        assert_eq!(N_FEATURES, 192);
        let v1 = features::names();
        assert_eq!(v1[YEAR], "year");
        assert_eq!(v1[DIST], "haversine_km");
        assert_eq!(v1[PEAK], "peak");
        assert_eq!(v1[JFK_MANHATTAN], "jfk_manhattan");
        assert_eq!(v1[71], "post_2012_09");
        assert_eq!(n[20], "year_index");
        assert_eq!(n[80], "dm_x_wd_h00");
        assert_eq!(n[127], "dm_x_we_h23");
        assert_eq!(n[128], "airport_dm_x_wd_h00");
        assert_eq!(n[176], "river_cross");
        assert_eq!(n[178], "jfk_manhattan_x_peak_x_post");
        assert_eq!(n[179], "pair_ma");
        assert_eq!(n[188], "dm_x_pair_oo");
        assert_eq!(n[189..], ["jfk_flat_fare", "ewr_surcharge", "zero_dist"]);
        let unique: std::collections::HashSet<_> = n.iter().collect();
        assert_eq!(unique.len(), N_FEATURES);
    }

    #[test]
    fn jfk_flat_fare_before_and_after_the_change() {
        // Monday 2012-08-13 17:30 local (21:30 UTC, summer time): peak, before 2012-09-04.
        let before = one("2012-08-13 21:30:00 UTC", TIMES_SQ, JFK);
        assert_eq!(get(&before, "jfk_manhattan"), 1.0);
        assert_eq!(get(&before, "year_index"), 3.0);
        assert_eq!(get(&before, "jfk_flat_fare"), 45.0);
        assert_eq!(get(&before, "jfk_manhattan_x_peak_x_post"), 0.0);
        // The flat fare is not metered: no distance slope, no airport slope.
        assert_eq!(nonzero_tail(&before), ["jfk_flat_fare", "pair_ma", "river_cross", "river_cross_x_toll"]);
        assert_eq!(get(&before, "river_cross_x_toll"), 5.33);
        // Monday 2012-10-15 17:30 local: $52 + the $4.50 peak surcharge.
        let after = one("2012-10-15 21:30:00 UTC", TIMES_SQ, JFK);
        assert_eq!(get(&after, "jfk_flat_fare"), 56.5);
        assert_eq!(get(&after, "jfk_manhattan_x_peak_x_post"), 1.0);
        // Saturday 2012-10-13 17:30: no peak on weekends.
        let weekend = one("2012-10-13 21:30:00 UTC", JFK, TIMES_SQ);
        assert_eq!(get(&weekend, "jfk_flat_fare"), 52.0);
        assert_eq!(get(&weekend, "jfk_manhattan_x_peak_x_post"), 0.0);
    }

    #[test]
    fn airport_ride_has_its_own_slope_and_surcharge() {
        // LGA → Times Square, Tuesday 2010-03-02 10:15 local (15:15 UTC, winter time).
        let f = one("2010-03-02 15:15:00 UTC", LGA, TIMES_SQ);
        let d = get(&f, "haversine_km");
        assert_eq!(get(&f, "year_index"), 1.0);
        assert_eq!(get(&f, "dm_x_wd_h10"), d, "no meter share before 2012-09-04");
        assert_eq!(get(&f, "airport_dm_x_wd_h10"), d);
        assert_eq!(get(&f, "pair_ma"), 1.0);
        assert_eq!(get(&f, "dm_x_pair_ma"), d);
        assert_eq!(get(&f, "river_cross"), 1.0, "LGA is outside the Manhattan band");
        assert_eq!(get(&f, "river_cross_x_toll"), 5.0, "tolls before 2010-12-30");
        assert_eq!(
            nonzero_tail(&f),
            ["airport_dm_x_wd_h10", "dm_x_pair_ma", "dm_x_wd_h10", "pair_ma", "river_cross", "river_cross_x_toll"]
        );
        // Newark → Times Square on a Sunday 2013-06-02 at 23:40 local (03:40 UTC Monday).
        let ewr = one("2013-06-03 03:40:00 UTC", EWR, TIMES_SQ);
        let d = get(&ewr, "haversine_km");
        assert_eq!(get(&ewr, "ewr_surcharge"), 17.5);
        assert_eq!(get(&ewr, "dm_x_we_h23"), d * 1.25, "the full 2012 rate");
        assert_eq!(get(&ewr, "airport_dm_x_we_h23"), d * 1.25);
        let before = one("2011-06-03 03:40:00 UTC", EWR, TIMES_SQ);
        assert_eq!(get(&before, "ewr_surcharge"), 15.0);
    }

    #[test]
    fn river_crossing_during_the_meter_ramp() {
        // Times Square → Williamsburg, Wednesday 2012-09-19 08:00 local (12:00 UTC): half way
        // through the re-calibration month.
        let f = one("2012-09-19 12:00:00 UTC", TIMES_SQ, WILLIAMSBURG);
        let d = get(&f, "haversine_km");
        let share = new_meter_share(crate::calendar::timestamp(2012, 9, 19, 12, 0, 0));
        assert!((share - 0.5).abs() < 0.02, "{share}");
        assert_eq!(get(&f, "dm_x_wd_h08"), d * (1.0 + 0.25 * share));
        assert_eq!(get(&f, "river_cross"), 1.0);
        assert_eq!(get(&f, "river_cross_x_toll"), 5.33);
        assert_eq!(get(&f, "pair_mo"), 1.0);
        assert_eq!(get(&f, "dm_x_pair_mo"), get(&f, "dm_x_wd_h08"));
        assert_eq!(get(&f, "jfk_flat_fare") + get(&f, "ewr_surcharge") + get(&f, "zero_dist"), 0.0);
        assert_eq!(nonzero_tail(&f), ["dm_x_pair_mo", "dm_x_wd_h08", "pair_mo", "river_cross", "river_cross_x_toll"]);
    }

    #[test]
    fn zero_distance_ride_in_manhattan() {
        // Friday 2009-05-01 00:30 local (04:30 UTC): Manhattan–Manhattan is the reference pair.
        let f = one("2009-05-01 04:30:00 UTC", TIMES_SQ, TIMES_SQ);
        assert_eq!(get(&f, "year_index"), 0.0);
        assert_eq!(get(&f, "haversine_km"), 0.0);
        assert_eq!(nonzero_tail(&f), ["zero_dist"]);
        assert_eq!(get(&f, "month_may"), 1.0);
        assert_eq!(get(&f, "weekday_fri"), 1.0);
    }

    #[test]
    fn v1_columns_are_v1_but_year() {
        for (dt, p, d) in [("2009-05-01 04:30:00 UTC", TIMES_SQ, LGA), ("2014-12-31 23:59:00 UTC", JFK, WILLIAMSBURG)] {
            let f = one(dt, p, d);
            let batch_v1 = {
                let mut out = vec![0.0; features::N_FEATURES];
                let batch = ride(dt, p, d);
                Featurizer::new().write(&RideColumns::from_batch(&batch, true).unwrap(), 0, &mut out);
                out
            };
            for j in (0..features::N_FEATURES).filter(|&j| j != YEAR) {
                assert_eq!(f[j].to_bits(), batch_v1[j].to_bits(), "column {j}");
            }
            assert_eq!(f[YEAR], (batch_v1[YEAR] * 72.0 / 12.0).floor());
        }
    }
}
