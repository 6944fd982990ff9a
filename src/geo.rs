//! New York geography shared by the generator and the features: distances, the airports,
//! Manhattan, and geohash cells.

/// Mean Earth radius in km.
const EARTH_KM: f64 = 6371.0088;

/// A point in degrees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Latitude, degrees north.
    pub lat: f64,
    /// Longitude, degrees east.
    pub lon: f64,
}

/// JFK airport terminal area.
pub const JFK: Point = Point { lat: 40.6413, lon: -73.7781 };
/// LaGuardia airport.
pub const LGA: Point = Point { lat: 40.7769, lon: -73.8740 };
/// Newark Liberty airport.
pub const EWR: Point = Point { lat: 40.6895, lon: -74.1745 };
/// The airports, in the order features and rules refer to them.
pub const AIRPORTS: [Point; 3] = [JFK, LGA, EWR];
/// Within this many km of an airport a ride counts as an airport ride.
pub const AIRPORT_RADIUS_KM: f64 = 2.0;

/// The NYC box outside of which rides are dropped by cleaning.
pub const NYC_LAT: (f64, f64) = (40.5, 40.9);
/// Longitude bounds of the NYC box.
pub const NYC_LON: (f64, f64) = (-74.3, -73.7);

/// Great-circle distance in km.
#[must_use]
pub fn haversine_km(a: Point, b: Point) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_KM * h.sqrt().asin()
}

/// L1 distance in km, with the longitude difference scaled by cos(mean latitude) so that a
/// degree east counts its true length.
#[must_use]
pub fn manhattan_km(a: Point, b: Point) -> f64 {
    let km_per_deg = EARTH_KM.to_radians();
    let coslat = ((a.lat + b.lat) / 2.0).to_radians().cos();
    km_per_deg * ((b.lat - a.lat).abs() + (b.lon - a.lon).abs() * coslat)
}

/// Whether a point lies within [`AIRPORT_RADIUS_KM`] of an airport.
#[must_use]
pub fn near(p: Point, airport: Point) -> bool {
    // 2 km is under 0.02° of latitude and 0.03° of longitude here: most rides stop at this test.
    if (p.lat - airport.lat).abs() > 0.02 || (p.lon - airport.lon).abs() > 0.03 {
        return false;
    }
    haversine_km(p, airport) < AIRPORT_RADIUS_KM
}

/// Manhattan as the band within 1.5 km of its spine from the Battery to Inwood: close enough
/// for the JFK flat-fare rule, which only asks "Manhattan or not".
#[must_use]
pub fn in_manhattan(p: Point) -> bool {
    const A: Point = Point { lat: 40.703, lon: -74.014 };
    const B: Point = Point { lat: 40.872, lon: -73.918 };
    let coslat = 40.79_f64.to_radians().cos();
    let (bx, by) = ((B.lon - A.lon) * coslat, B.lat - A.lat);
    let (px, py) = ((p.lon - A.lon) * coslat, p.lat - A.lat);
    let t = ((px * bx + py * by) / (bx * bx + by * by)).clamp(0.0, 1.0);
    let (dx, dy) = (px - t * bx, py - t * by);
    (dx * dx + dy * dy).sqrt() * EARTH_KM.to_radians() < 1.5
}

/// Whether a point lies inside the NYC box.
#[must_use]
pub fn in_nyc(p: Point) -> bool {
    (NYC_LAT.0..=NYC_LAT.1).contains(&p.lat) && (NYC_LON.0..=NYC_LON.1).contains(&p.lon)
}

const BASE32: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";

/// The 25-bit integer code of the 5-character geohash cell holding a point.
#[must_use]
pub fn geohash5(p: Point) -> u32 {
    let (mut lat, mut lon) = ((-90.0_f64, 90.0_f64), (-180.0_f64, 180.0_f64));
    let mut code = 0u32;
    for bit in 0..25 {
        let range = if bit % 2 == 0 { &mut lon } else { &mut lat };
        let v = if bit % 2 == 0 { p.lon } else { p.lat };
        let mid = (range.0 + range.1) / 2.0;
        code <<= 1;
        if v >= mid {
            code |= 1;
            range.0 = mid;
        } else {
            range.1 = mid;
        }
    }
    code
}

/// The integer code of a 5-character geohash string; `None` if it is not one.
#[must_use]
pub fn geohash5_code(s: &str) -> Option<u32> {
    if s.len() != 5 {
        return None;
    }
    s.bytes().try_fold(0u32, |acc, c| BASE32.iter().position(|&b| b == c).map(|i| (acc << 5) | i as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        let d = haversine_km(JFK, LGA);
        assert!((d - 17.0).abs() < 0.5, "{d}");
        let times_square = Point { lat: 40.758, lon: -73.9855 };
        assert!(manhattan_km(times_square, JFK) > haversine_km(times_square, JFK));
        assert!(in_manhattan(times_square));
        assert!(!in_manhattan(JFK) && !in_manhattan(Point { lat: 40.6782, lon: -73.9442 }));
        assert!(near(Point { lat: 40.645, lon: -73.78 }, JFK));
    }

    #[test]
    fn geohash_of_times_square() {
        // Times Square is in cell dr5ru.
        assert_eq!(geohash5(Point { lat: 40.758, lon: -73.9855 }), geohash5_code("dr5ru").unwrap());
        assert_eq!(geohash5_code("dr5r"), None);
    }
}
