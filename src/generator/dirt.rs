//! The dirt of the real Kaggle file, injected at documented rates (per raw row). The rates are
//! rounded up from what the real `train.csv` shows (e.g. ~1.9 % all-zero coordinates, ~0.35 %
//! zero passengers, a few hundred missing dropoffs in 55 M) so that small test histories still
//! exercise every cleaning rule.

use super::rng::Rng;
use super::trips::Ride;

/// All four coordinates zero.
pub const ZERO_COORDS: f64 = 0.019;
/// Latitude and longitude swapped.
pub const SWAPPED: f64 = 0.0005;
/// A point far outside New York.
pub const FAR_AWAY: f64 = 0.002;
/// A zero or negative fare.
pub const NONPOSITIVE_FARE: f64 = 0.0005;
/// Zero passengers.
pub const ZERO_PASSENGERS: f64 = 0.0035;
/// More than six passengers (9, or the absurd 208).
pub const TOO_MANY_PASSENGERS: f64 = 0.0002;
/// Missing dropoff coordinates.
pub const MISSING: f64 = 0.0003;
/// The previous row again, key included.
pub const DUPLICATE: f64 = 0.0005;
/// A mis-keyed fare (clean for cleaning's rules, but off the meter).
pub const FARE_NOISE: f64 = 0.005;

/// A raw row as written to the history.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// Pickup instant.
    pub ts: i64,
    /// Sequence number in the month (makes the key unique).
    pub seq: u64,
    /// Fare, possibly absurd or missing.
    pub fare: Option<f64>,
    /// Pickup lon, pickup lat, dropoff lon, dropoff lat.
    pub coords: [Option<f64>; 4],
    /// Passengers.
    pub passengers: i64,
    /// Whether the row is free of injected dirt (fare noise aside).
    pub clean: bool,
    /// The ride's expected fare.
    pub expected_fare: f64,
}

/// Turns a clean ride into a raw row, soiling it with the rates above.
pub fn soil(rng: &mut Rng, ride: Ride, seq: u64) -> Row {
    let mut row = Row {
        ts: ride.ts,
        seq,
        fare: Some(ride.fare),
        coords: [Some(ride.pickup.lon), Some(ride.pickup.lat), Some(ride.dropoff.lon), Some(ride.dropoff.lat)],
        passengers: ride.passengers,
        clean: false,
        expected_fare: ride.expected_fare,
    };
    let u = rng.uniform();
    let mut edge = ZERO_COORDS;
    if u < edge {
        row.coords = [Some(0.0); 4];
        return row;
    }
    edge += SWAPPED;
    if u < edge {
        row.coords = [row.coords[1], row.coords[0], row.coords[3], row.coords[2]];
        return row;
    }
    edge += FAR_AWAY;
    if u < edge {
        let which = rng.below(4) as usize;
        row.coords[which] = row.coords[which].map(|v| v + if rng.chance(0.5) { 3.0 + 40.0 * rng.uniform() } else { -3.0 });
        return row;
    }
    edge += NONPOSITIVE_FARE;
    if u < edge {
        row.fare = Some(if rng.chance(0.3) { 0.0 } else { -(2.5 + (rng.below(40) as f64) * 0.5) });
        return row;
    }
    edge += ZERO_PASSENGERS;
    if u < edge {
        row.passengers = 0;
        return row;
    }
    edge += TOO_MANY_PASSENGERS;
    if u < edge {
        row.passengers = if rng.chance(0.2) { 208 } else { 9 };
        return row;
    }
    edge += MISSING;
    if u < edge {
        row.coords[2] = None;
        row.coords[3] = None;
        return row;
    }
    row.clean = true;
    edge += FARE_NOISE;
    if u < edge {
        let f = ride.fare + (rng.uniform() * 20.0 - 5.0);
        row.fare = Some((f.max(2.5) * 10.0).round() / 10.0);
    }
    row
}
