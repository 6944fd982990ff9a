//! Where and when rides happen: zones, trip types, traffic speed and volume seasonality.

use super::rng::Rng;
use crate::calendar::{LocalTime, NyClock};
use crate::fare_rules::{self, FareKind, MeterTrip};
use crate::geo::{self, Point};

/// A clean ride with what the meter saw and what it is expected to cost.
#[derive(Clone, Copy, Debug)]
pub struct Ride {
    /// Pickup instant, Unix seconds UTC.
    pub ts: i64,
    /// Pickup point.
    pub pickup: Point,
    /// Dropoff point.
    pub dropoff: Point,
    /// Passengers.
    pub passengers: i64,
    /// Fare charged, tolls included.
    pub fare: f64,
    /// The fare the rules give at the hour's typical speed and route: E[fare | what a model sees].
    pub expected_fare: f64,
}

#[derive(Clone, Copy)]
enum Area {
    Manhattan,
    Brooklyn,
    Queens,
    Airport(Point),
}

/// Trip types with their shares of all rides.
const TRIP_TYPES: [(Area, Area, f64); 9] = [
    (Area::Manhattan, Area::Manhattan, 80.0),
    (Area::Manhattan, Area::Brooklyn, 6.0),
    (Area::Manhattan, Area::Queens, 3.0),
    (Area::Manhattan, Area::Airport(geo::LGA), 3.5),
    (Area::Manhattan, Area::Airport(geo::JFK), 3.0),
    (Area::Manhattan, Area::Airport(geo::EWR), 0.5),
    (Area::Brooklyn, Area::Brooklyn, 2.0),
    (Area::Brooklyn, Area::Queens, 1.0),
    (Area::Queens, Area::Airport(geo::JFK), 1.0),
];

const MANHATTAN_SOUTH: Point = Point { lat: 40.707, lon: -74.011 };
const MANHATTAN_NORTH: Point = Point { lat: 40.868, lon: -73.921 };

fn km_to_deg_lat(km: f64) -> f64 {
    km / 111.2
}
fn km_to_deg_lon(km: f64) -> f64 {
    km / (111.2 * 40.75_f64.to_radians().cos())
}

fn around(rng: &mut Rng, c: Point, sigma_km: f64) -> Point {
    Point { lat: c.lat + km_to_deg_lat(sigma_km * rng.normal()), lon: c.lon + km_to_deg_lon(sigma_km * rng.normal()) }
}

/// A point on Manhattan's spine at fraction `t` (0 = Battery, 1 = Inwood) with a lateral offset.
fn manhattan_at(rng: &mut Rng, t: f64) -> Point {
    let t = t.clamp(0.0, 1.0);
    let c = Point {
        lat: MANHATTAN_SOUTH.lat + t * (MANHATTAN_NORTH.lat - MANHATTAN_SOUTH.lat),
        lon: MANHATTAN_SOUTH.lon + t * (MANHATTAN_NORTH.lon - MANHATTAN_SOUTH.lon),
    };
    // Perpendicular to the spine (which runs NNE), about 0.5 km either side.
    let off = 0.45 * rng.normal().clamp(-2.2, 2.2);
    Point { lat: c.lat - km_to_deg_lat(off * 0.45), lon: c.lon + km_to_deg_lon(off * 0.89) }
}

/// Where along Manhattan pickups happen: mostly Midtown and below.
fn manhattan_t(rng: &mut Rng) -> f64 {
    (0.33 + 0.17 * rng.normal()).clamp(0.0, 1.0)
}

fn sample(rng: &mut Rng, area: Area, t: f64) -> Point {
    match area {
        Area::Manhattan => manhattan_at(rng, t),
        Area::Brooklyn => around(rng, Point { lat: 40.684, lon: -73.975 }, 2.2),
        Area::Queens => around(rng, Point { lat: 40.745, lon: -73.905 }, 2.5),
        Area::Airport(p) => around(rng, p, 0.35),
    }
}

/// Typical traffic speed (mph) at a local time: rush hours are slow, nights fast.
#[must_use]
pub fn typical_mph(local: &LocalTime) -> f64 {
    let h = local.second_of_day / 3600;
    if local.weekday < 5 {
        match h {
            0..=5 => 20.0,
            6 => 15.0,
            7..=9 => 9.0,
            10..=15 => 11.0,
            16..=19 => 8.5,
            _ => 14.0,
        }
    } else {
        match h {
            0..=5 => 19.0,
            6..=10 => 16.0,
            11..=19 => 12.0,
            _ => 15.0,
        }
    }
}

/// Relative ride volume of a local hour of the week (daily and weekly seasonality).
#[must_use]
pub fn volume_weight(weekday: u32, hour: i64) -> f64 {
    const HOURLY: [f64; 24] = [
        0.55, 0.40, 0.30, 0.22, 0.17, 0.17, 0.35, 0.62, 0.80, 0.82, 0.78, 0.80, 0.86, 0.86, 0.88, 0.86, 0.80, 0.92,
        1.10, 1.18, 1.12, 1.06, 1.02, 0.85,
    ];
    let day = [0.90, 0.97, 1.02, 1.06, 1.12, 1.10, 0.92][weekday as usize];
    // Weekend nights stay busy after midnight.
    let late = if weekday >= 5 && hour < 4 { 1.8 } else { 1.0 };
    HOURLY[hour as usize] * day * late
}

const ROAD_FACTOR: f64 = 1.3;

fn passengers(rng: &mut Rng) -> i64 {
    const CUM: [f64; 6] = [69.0, 84.0, 88.4, 90.5, 97.5, 99.6];
    rng.pick(&CUM) as i64 + 1
}

/// Draws one clean ride starting at `ts`.
pub fn ride(rng: &mut Rng, clock: &mut NyClock, ts: i64) -> Ride {
    let cum: [f64; 9] = {
        let mut acc = 0.0;
        TRIP_TYPES.map(|(_, _, w)| {
            acc += w;
            acc
        })
    };
    let (a, b, _) = TRIP_TYPES[rng.pick(&cum)];
    let t0 = manhattan_t(rng);
    // Heavy-tailed trip lengths along Manhattan: median ~1.6 km.
    let hop = (1.6_f64.ln() + 0.75 * rng.normal()).exp() / 19.5;
    let t1 = if rng.chance(0.5) { t0 + hop } else { t0 - hop };
    let (mut pickup, mut dropoff) = (sample(rng, a, t0), sample(rng, b, t1));
    if rng.chance(0.5) {
        std::mem::swap(&mut pickup, &mut dropoff);
    }
    let local = clock.local(ts);
    let straight_miles = geo::haversine_km(pickup, dropoff) / 1.609_344;
    let airport = matches!(a, Area::Airport(_)) || matches!(b, Area::Airport(_));
    let highway = if airport { 1.6 } else { 1.0 };
    let typical_speed = typical_mph(&local) * highway;
    let route = ROAD_FACTOR * (0.08 * rng.normal()).exp();
    let speed = typical_speed * (0.25 * rng.normal()).exp();
    let miles = straight_miles * route + 0.05;
    let trip = MeterTrip { miles, minutes: miles / speed * 60.0 };
    let typical = MeterTrip { miles: straight_miles * ROAD_FACTOR + 0.05, minutes: (straight_miles * ROAD_FACTOR + 0.05) / typical_speed * 60.0 };

    let manhattan_jfk = (geo::near(pickup, geo::JFK) && geo::in_manhattan(dropoff))
        || (geo::near(dropoff, geo::JFK) && geo::in_manhattan(pickup));
    let newark = geo::near(pickup, geo::EWR) || geo::near(dropoff, geo::EWR);
    let kind = if manhattan_jfk {
        FareKind::JfkFlat
    } else if newark {
        FareKind::Newark
    } else {
        FareKind::Metered
    };
    let crosses_river = geo::in_manhattan(pickup) != geo::in_manhattan(dropoff);
    let (toll_p, toll) = match kind {
        FareKind::Newark => (1.0, fare_rules::NEWARK_TOLL),
        _ if crosses_river => (0.3, fare_rules::tunnel_toll(ts)),
        _ => (0.0, 0.0),
    };
    let share = fare_rules::new_meter_share(ts);
    let new_meter = if rng.chance(share) { 1.0 } else { 0.0 };
    let paid_toll = if rng.chance(toll_p) { toll } else { 0.0 };
    let fare = fare_rules::fare(kind, trip, ts, &local, new_meter, paid_toll, false);
    // The meter rounds down to whole units: half a unit on average.
    let rounding = if kind == FareKind::JfkFlat { 0.0 } else { (0.40 + 0.10 * share) * 0.5 * 2.0 };
    let expected_fare = fare_rules::fare(kind, typical, ts, &local, share, toll_p * toll, true) - rounding;
    Ride { ts, pickup, dropoff, passengers: passengers(rng), fare: (fare * 100.0).round() / 100.0, expected_fare }
}
