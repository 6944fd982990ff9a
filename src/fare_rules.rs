//! NYC TLC yellow-cab fare rules (standard metered rate), as of the ride's date.
//!
//! Sources: TLC rate card history. Initial charge $2.50; one unit = 1/5 mile while the cab moves
//! at 12 mph or more, or 60 s below; $0.40 a unit until 2012-09-03, $0.50 from 2012-09-04 (meters
//! re-calibrated over about a month); $0.50 night surcharge 20:00–06:00; $1.00 weekday peak
//! surcharge 16:00–20:00; $0.50 MTA tax from 2009-11-01; JFK ↔ Manhattan flat fare $45, $52 from
//! 2012-09-04 (plus a $4.50 weekday-peak surcharge from then); Newark: metered plus $15, $17.50
//! from 2012-09-04. Tolls are passed through (Kaggle's `fare_amount` includes them).

use crate::calendar::LocalTime;

/// 2012-09-04 00:00 New York time, when the 2012 rate change took effect.
pub const RATE_CHANGE: i64 = 1_346_731_200;
/// 2012-10-04 00:00 New York time, by when every meter was re-calibrated.
pub const RATE_CHANGE_DONE: i64 = RATE_CHANGE + 30 * 86_400;
/// 2009-11-01 00:00 New York time: the MTA tax starts.
pub const MTA_TAX_START: i64 = 1_257_048_000;

/// The local hour the night surcharge starts (it runs to [`NIGHT_UNTIL_HOUR`] the next morning).
pub const NIGHT_FROM_HOUR: i64 = 20;
/// The local hour the night surcharge ends.
pub const NIGHT_UNTIL_HOUR: i64 = 6;
/// The weekday peak surcharge applies in local hours `[PEAK_FROM_HOUR, PEAK_UNTIL_HOUR)`.
pub const PEAK_FROM_HOUR: i64 = 16;
/// The end of the weekday peak surcharge (excluded).
pub const PEAK_UNTIL_HOUR: i64 = 20;
/// The first weekend day (0 = Monday): the peak surcharge applies on days before it.
pub const SATURDAY: u32 = 5;
/// The JFK ↔ Manhattan flat fare: before 2012-09-04, and from then.
pub const JFK_FLAT_FARE: (f64, f64) = (45.0, 52.0);
/// The weekday-peak surcharge on the JFK flat fare (from 2012-09-04 only).
pub const JFK_PEAK_SURCHARGE: f64 = 4.50;
/// The Newark surcharge: before 2012-09-04, and from then.
pub const NEWARK_SURCHARGE: (f64, f64) = (15.00, 17.50);
/// How much more a unit costs at the 2012 rate than at the 2009 one ($0.50 / $0.40 − 1).
pub const METER_RATE_RISE: f64 = 0.25;
/// The tunnel toll of [`tunnel_toll`]: `(from, amount)` in time order, the first from always.
pub const TUNNEL_TOLLS: [(i64, f64); 3] = [
    (i64::MIN, 5.00),
    // 2010-12-30 05:00 UTC and 2015-03-22 04:00 UTC (checked by a test).
    (1_293_685_200, 5.33),
    (1_426_996_800, 5.54),
];

/// Probability that a ride's meter already charges the 2012-09-04 rate.
#[must_use]
pub fn new_meter_share(ts: i64) -> f64 {
    ((ts - RATE_CHANGE) as f64 / (RATE_CHANGE_DONE - RATE_CHANGE) as f64).clamp(0.0, 1.0)
}

/// Whether the flat fares and surcharges of 2012-09-04 apply (they did not depend on meters).
#[must_use]
pub fn new_rules(ts: i64) -> bool {
    ts >= RATE_CHANGE
}

/// Whether `local` falls in the night surcharge window.
#[must_use]
pub fn is_night(local: &LocalTime) -> bool {
    let h = local.second_of_day / 3600;
    !(NIGHT_UNTIL_HOUR..NIGHT_FROM_HOUR).contains(&h)
}

/// Whether `local` falls in the weekday peak surcharge window.
#[must_use]
pub fn is_peak(local: &LocalTime) -> bool {
    let h = local.second_of_day / 3600;
    local.weekday < SATURDAY && (PEAK_FROM_HOUR..PEAK_UNTIL_HOUR).contains(&h)
}

/// A bridge or tunnel toll of the date (Queens-Midtown / Brooklyn-Battery tunnels, cash).
#[must_use]
pub fn tunnel_toll(ts: i64) -> f64 {
    TUNNEL_TOLLS.iter().rev().find(|&&(from, _)| ts >= from).map_or(TUNNEL_TOLLS[0].1, |&(_, toll)| toll)
}

/// The Hudson crossing toll paid on Newark trips.
pub const NEWARK_TOLL: f64 = 10.50;

/// What kind of fare applies to a trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FareKind {
    /// Metered, standard rate.
    Metered,
    /// JFK ↔ Manhattan flat fare.
    JfkFlat,
    /// Metered plus the Newark surcharge.
    Newark,
}

/// The physical trip the meter sees.
#[derive(Clone, Copy, Debug)]
pub struct MeterTrip {
    /// Distance driven, miles.
    pub miles: f64,
    /// Time taken, minutes.
    pub minutes: f64,
}

/// Units charged: distance units while cruising, time units while crawling. The trip is split
/// into a cruising part at 20 mph and a crawling part at 3 mph that together match its distance
/// and duration.
#[must_use]
pub fn meter_units(trip: MeterTrip, continuous: bool) -> f64 {
    const FAST: f64 = 20.0 / 60.0;
    const SLOW: f64 = 3.0 / 60.0;
    let t = trip.minutes.max(0.0);
    let fast_minutes = ((trip.miles - SLOW * t) / (FAST - SLOW)).clamp(0.0, t);
    let fast_miles = if fast_minutes >= t { trip.miles } else { fast_minutes * FAST };
    let (dist_units, time_units) = (fast_miles * 5.0, t - fast_minutes);
    if continuous {
        dist_units + time_units
    } else {
        dist_units.floor() + time_units.floor()
    }
}

/// The fare of a trip. `new_meter` is whether this cab's meter charges the 2012 rate;
/// `continuous` drops the meter's rounding (used for the expected fare).
#[must_use]
pub fn fare(kind: FareKind, trip: MeterTrip, ts: i64, local: &LocalTime, new_meter: f64, tolls: f64, continuous: bool) -> f64 {
    let new = new_rules(ts);
    let mta = if ts >= MTA_TAX_START { 0.50 } else { 0.0 };
    if kind == FareKind::JfkFlat {
        let peak = if new && is_peak(local) { JFK_PEAK_SURCHARGE } else { 0.0 };
        return if new { JFK_FLAT_FARE.1 } else { JFK_FLAT_FARE.0 } + peak + mta + tolls;
    }
    let rate = 0.40 + 0.10 * new_meter;
    let mut f = 2.50 + rate * meter_units(trip, continuous) + mta + tolls;
    if is_night(local) {
        f += 0.50;
    }
    if is_peak(local) {
        f += 1.00;
    }
    if kind == FareKind::Newark {
        f += if new { NEWARK_SURCHARGE.1 } else { NEWARK_SURCHARGE.0 };
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{timestamp, NyClock};

    fn local(ts: i64) -> LocalTime {
        NyClock::default().local(ts)
    }

    #[test]
    fn constants_are_new_york_midnights() {
        assert_eq!(RATE_CHANGE, timestamp(2012, 9, 4, 4, 0, 0));
        assert_eq!(MTA_TAX_START, timestamp(2009, 11, 1, 4, 0, 0));
        assert_eq!(TUNNEL_TOLLS[1].0, timestamp(2010, 12, 30, 5, 0, 0));
        assert_eq!(TUNNEL_TOLLS[2].0, timestamp(2015, 3, 22, 4, 0, 0));
        assert!((0.40 * (1.0 + METER_RATE_RISE) - 0.50).abs() < 1e-12);
    }

    #[test]
    fn tunnel_toll_changes_at_its_dates() {
        for (from, toll) in TUNNEL_TOLLS.into_iter().skip(1) {
            assert_eq!(tunnel_toll(from), toll);
            assert!(tunnel_toll(from - 1) < toll);
        }
        assert_eq!(tunnel_toll(0), 5.00);
    }

    #[test]
    fn jfk_flat_fare_after_the_change() {
        // Monday 2012-10-15, 13:05 local: $52 + $0.50 MTA tax, no peak surcharge at that hour.
        let ts = timestamp(2012, 10, 15, 17, 5, 0);
        let trip = MeterTrip { miles: 17.0, minutes: 45.0 };
        assert_eq!(fare(FareKind::JfkFlat, trip, ts, &local(ts), 1.0, 0.0, false), 52.50);
        // 17:30 local the same day adds the $4.50 peak surcharge.
        let ts = timestamp(2012, 10, 15, 21, 30, 0);
        assert_eq!(fare(FareKind::JfkFlat, trip, ts, &local(ts), 1.0, 0.0, false), 57.0);
        let ts = timestamp(2011, 10, 17, 17, 5, 0);
        assert_eq!(fare(FareKind::JfkFlat, trip, ts, &local(ts), 0.0, 0.0, false), 45.50);
    }

    #[test]
    fn per_mile_slope_changes_at_2012_09_04() {
        // A fast trip: 2 miles = 10 units.
        let trip = MeterTrip { miles: 2.0, minutes: 4.0 };
        let before = timestamp(2012, 9, 3, 15, 0, 0);
        let after = timestamp(2012, 10, 10, 15, 0, 0);
        let f_old = fare(FareKind::Metered, trip, before, &local(before), new_meter_share(before), 0.0, false);
        let f_new = fare(FareKind::Metered, trip, after, &local(after), new_meter_share(after), 0.0, false);
        assert!((f_old - (2.5 + 4.0 + 0.5)).abs() < 1e-9, "{f_old}");
        assert!((f_new - (2.5 + 5.0 + 0.5)).abs() < 1e-9, "{f_new}");
        assert!((new_meter_share(timestamp(2012, 9, 19, 4, 0, 0)) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn slow_traffic_charges_time() {
        let fast = meter_units(MeterTrip { miles: 2.0, minutes: 6.0 }, true);
        let slow = meter_units(MeterTrip { miles: 2.0, minutes: 30.0 }, true);
        assert!((fast - 10.0).abs() < 1e-9 && slow > fast, "{fast} {slow}");
    }

    #[test]
    fn surcharges() {
        let trip = MeterTrip { miles: 1.0, minutes: 3.0 };
        // 2009-06-01 is a Monday; 21:00 local is night, 17:00 local is peak, no MTA tax yet.
        let night = timestamp(2009, 6, 2, 1, 0, 0);
        let peak = timestamp(2009, 6, 1, 21, 0, 0);
        assert!((fare(FareKind::Metered, trip, night, &local(night), 0.0, 0.0, false) - 5.0).abs() < 1e-9);
        assert!((fare(FareKind::Metered, trip, peak, &local(peak), 0.0, 0.0, false) - 5.5).abs() < 1e-9);
        let newark = fare(FareKind::Newark, trip, peak, &local(peak), 0.0, NEWARK_TOLL, false);
        assert!((newark - (5.5 + 15.0 + NEWARK_TOLL)).abs() < 1e-9);
    }
}
